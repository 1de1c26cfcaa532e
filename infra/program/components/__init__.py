"""Pulumi ComponentResources, one file per concern. Importing registers nothing.

Tokens are `llm-fleet:<module>:<Type>`; every child is parented to its component.
"""
from infra.program.components.cluster import Cluster, ClusterArgs
from infra.program.components.common import AwsContext
from infra.program.components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs
from infra.program.components.network import Network, NetworkArgs, select_azs, subnet_plan
from infra.program.components.weight_store import WeightStore, WeightStoreArgs

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
