"""The node labels and taint serving pods rely on are the ones the node-group components set.

The label maps are built inline in gpu_node_group.py and cluster.py; running those components
under mocks and reading back their node groups keeps both sides honest.
"""
from __future__ import annotations

import pytest

from infra.program.components.common import AwsContext
from infra.core.labels import gpu_taint_eks
GPU_TAINT = gpu_taint_eks()
from infra.program.serving.spec import EFA_NODE_SELECTOR, GPU_NODE_SELECTOR, SYSTEM_NODE_SELECTOR, gpu_toleration

from tests.program.support import cluster_args_defaults, gpu_args_defaults

from . import mockrun

NG = "aws:eks/nodeGroup:NodeGroup"


@pytest.fixture(scope="module")
def node_groups():
    from infra.program.components.cluster import Cluster, ClusterArgs
    from infra.program.components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs

    def build():
        cluster = Cluster("cluster", ClusterArgs(
            cluster_name="llm-fleet-test", aws=AwsContext("123456789012", "us-east-1"), kubernetes_version="1.33",
            vpc_id="vpc-123", subnet_ids=["subnet-a"], **cluster_args_defaults(),
        ))
        GpuNodeGroup("gpu-us-east-1a", GpuNodeGroupArgs(
            cluster_name=cluster.eks.name, node_group_name="llm-fleet-test-gpu-us-east-1a", az="us-east-1a",
            subnet_id="subnet-a", node_role_arn=cluster.node_role.arn, security_group_ids=["sg-1"],
            instance_type="p5.48xlarge", efa_interfaces=32, gpu="H100-SXM-80GB",
            nodes_min=3, nodes_desired=3, nodes_max=5, warm_spares=1, **gpu_args_defaults(),
        ))

    return mockrun.run(build)


def _labels(run, suffix: str) -> dict:
    return run.one(NG, suffix).inputs["labels"]


def test_gpu_nodes_carry_the_selectors(node_groups):
    labels = _labels(node_groups, "gpu-us-east-1a")
    assert GPU_NODE_SELECTOR.items() <= labels.items()
    assert EFA_NODE_SELECTOR.items() <= labels.items()
    assert labels.get("nvidia.com/gpu.present") == "true"  # the device plugin chart's own affinity


def test_gpu_nodes_taint_matches_the_toleration(node_groups):
    (taint,) = node_groups.one(NG, "gpu-us-east-1a").inputs["taints"]
    assert taint == GPU_TAINT
    tol = gpu_toleration()
    assert (tol["key"], tol["value"], tol["operator"]) == (taint["key"], taint["value"], "Equal")


def test_system_nodes_carry_the_system_selector(node_groups):
    labels = _labels(node_groups, "cluster-system")
    assert SYSTEM_NODE_SELECTOR.items() <= labels.items()
    assert not GPU_NODE_SELECTOR.items() <= labels.items()
