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


def test_gpu_nodes_carry_the_cluster_autoscalers_gpu_label(node_groups):
    """cluster-autoscaler's AWS provider treats a node with `k8s.amazonaws.com/accelerator` as
    a GPU node still initialising until the device plugin advertises its GPUs
    (cloudprovider/aws/aws_cloud_provider.go GPULabel), instead of buying another node."""
    from infra.core.labels import ACCELERATOR_LABEL

    assert _labels(node_groups, "gpu-us-east-1a")[ACCELERATOR_LABEL] == "H100-SXM-80GB"
    assert ACCELERATOR_LABEL not in _labels(node_groups, "cluster-system")


def test_the_vpc_cni_enforces_network_policies(node_groups):
    """EKS user guide, "Limit pod traffic with Kubernetes network policies": the VPC CNI add-on
    enforces NetworkPolicies only with the configuration value enableNetworkPolicy "true"."""
    import json

    addon = node_groups.one("aws:eks/addon:Addon", "addon-vpc-cni")
    assert json.loads(addon.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}


# --- zone spread with an AZ lost ------------------------------------------------------------------

def _schedule(constraint: dict, slots: dict[str, int], existing: dict[str, int], pods: int) -> int:
    """How many of `pods` more replicas the scheduler places, one at a time, given free slots per
    AZ (nodes that exist) and the replicas already there. Pod Topology Spread as documented
    (kubernetes.io, "Pod Topology Spread Constraints"): with DoNotSchedule a node passes when
    the count in its domain + 1 - the global minimum <= maxSkew, where the minimum is taken over
    the eligible domains (those with nodes) and is 0 while fewer than minDomains are eligible;
    ScheduleAnyway only scores (prefers the emptiest domain)."""
    counts, free, placed = dict(existing), dict(slots), 0
    for _ in range(pods):
        domains = [az for az in counts if az in free]
        low = min(counts[az] for az in domains)
        if len(domains) < constraint.get("minDomains", 1):
            low = 0
        fits = [az for az in domains if free[az] > 0 and (
            constraint["whenUnsatisfiable"] == "ScheduleAnyway" or counts[az] + 1 - low <= constraint["maxSkew"])]
        if not fits:
            break
        az = min(fits, key=lambda a: counts[a])
        counts[az] += 1
        free[az] -= 1
        placed += 1
    return placed


@pytest.mark.parametrize("variant", ["prod", "8b-tp1", "slow-burst"])
def test_with_an_az_lost_the_planned_replicas_still_schedule(variant):
    """The lost AZ's replicas are re-created in the surviving AZs, up to their node ceilings."""
    from infra.program.serving import vllm

    from .support import spec_for

    spec = spec_for(variant)
    plan = spec.plan
    (spread,) = vllm.zone_spread(spec)
    azs = [f"az-{i}" for i in range(plan.azs)]
    per_az = plan.replicas_baseline // plan.azs
    ceiling = plan.nodes_per_az.max * plan.replicas_per_node
    survivors = {az: per_az for az in azs[1:]}  # azs[0] is lost with its nodes
    free = {az: ceiling - per_az for az in azs[1:]}
    lost = per_az
    wanted = min(lost, sum(free.values()))
    assert _schedule(spread, free, survivors, lost) == wanted
    # The old spread (DoNotSchedule, minDomains = AZs) placed none of them.
    old = {**spread, "whenUnsatisfiable": "DoNotSchedule", "minDomains": plan.azs}
    if wanted:
        assert _schedule(old, free, survivors, lost) == 0
    else:  # no burst headroom: the survivors carry the load (N+1 sizing) and nothing is pending
        assert variant != "slow-burst" and plan.nodes_per_az.max == plan.nodes_per_az.min


def test_the_spread_still_evens_out_across_healthy_azs():
    spread = {"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}
    assert _schedule(spread, {"a": 4, "b": 4, "c": 4}, {"a": 0, "b": 0, "c": 0}, 6) == 6
