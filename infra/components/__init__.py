"""Pulumi ComponentResources, one file per concern. Importing registers nothing.

Tokens are `llm-fleet:<module>:<Type>`; every child is parented to its component.
"""
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.common import AwsContext
from infra.components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs
from infra.components.network import Network, NetworkArgs, select_azs, subnet_plan
from infra.components.weight_store import WeightStore, WeightStoreArgs

__all__ = [
    "AwsContext",
    "Cluster",
    "ClusterArgs",
    "GpuNodeGroup",
    "GpuNodeGroupArgs",
    "Network",
    "NetworkArgs",
    "WeightStore",
    "WeightStoreArgs",
    "select_azs",
    "subnet_plan",
]
