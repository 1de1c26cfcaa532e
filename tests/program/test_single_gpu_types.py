"""A small model on single-GPU g-family types: deployed as non-EFA node groups (no EFA interfaces,
no EFA label), while the p5 groups keep their EFA layout. Neither gets a placement group: no
engine of either plan spans nodes."""
from __future__ import annotations

import pytest

from tests.program.support import DELETE, LAUNCH_TEMPLATE, gpu_node_groups, run_variant

PLACEMENT_GROUP = "aws:ec2/placementGroup:PlacementGroup"
EFA_LABEL = "vpc.amazonaws.com/efa.present"
CHATBOT = dict(
    model__name="llama-3.1-8b", model__served_name="llama-3.1-8b-instruct",
    workload__concurrent_requests=64, workload__burst_factor=2, workload__output_tokens_per_s=DELETE,
    workload__ttft_p95_ms=800, workload__tpot_p95_ms=50, workload__e2e_p95_ms=12000,
    fleet__instance_types=["g6e.xlarge"],
)


@pytest.fixture(scope="module")
def g6e_run():
    return run_variant(**CHATBOT)


def test_the_variant_is_sized_onto_one_l40s_per_node(g6e_run):
    plan = g6e_run.plan
    assert (plan.instance_type, plan.gpu, plan.gpus_per_node, plan.tensor_parallel) == ("g6e.xlarge", "L40S-48GB", 1, 1)
    assert [g.inputs["instanceTypes"] for g in gpu_node_groups(g6e_run)] == [["g6e.xlarge"]] * 3


def test_non_efa_groups_have_no_efa_interfaces_placement_group_or_label(g6e_run):
    assert g6e_run.of_type(PLACEMENT_GROUP) == []
    efa_sg = g6e_run.one("aws:ec2/securityGroup:SecurityGroup", "network-efa-sg").id
    for ng in gpu_node_groups(g6e_run):
        az = ng.name.removeprefix("gpu-")
        assert EFA_LABEL not in ng.inputs["labels"] and ng.inputs["labels"]["nvidia.com/gpu.present"] == "true"
        lt = g6e_run.one(LAUNCH_TEMPLATE, f"gpu-{az}-lt").inputs
        assert "networkInterfaces" not in lt and "placement" not in lt
        # The cluster security group only: EFA's self-referencing group serves EFA traffic alone.
        [sg] = lt["vpcSecurityGroupIds"]
        assert sg.startswith("sg-") and sg != efa_sg


def test_p5_groups_keep_efa_interfaces_and_label(prod_run):
    assert prod_run.of_type(PLACEMENT_GROUP) == []
    for ng in gpu_node_groups(prod_run):
        assert ng.inputs["labels"][EFA_LABEL] == "true"
        lt = prod_run.one(LAUNCH_TEMPLATE, f"{ng.name}-lt").inputs
        assert len(lt["networkInterfaces"]) == 32 and "vpcSecurityGroupIds" not in lt


@pytest.mark.parametrize("run_name", ["prod_run", "g6e_run"])
def test_a_launch_template_never_sets_both_interfaces_and_instance_security_groups(request, run_name):
    """EC2 refuses a launch with network interfaces and instance-level security groups together
    (RunInstances: "InvalidParameterCombination: Network interfaces and an instance-level security
    groups may not be specified on the same request"; EC2 API reference, LaunchTemplateData): the
    EFA layout puts the groups on each interface, the non-EFA one on the template."""
    run = request.getfixturevalue(run_name)
    for ng in gpu_node_groups(run):
        lt = run.one(LAUNCH_TEMPLATE, f"{ng.name}-lt").inputs
        assert ("networkInterfaces" in lt) != ("vpcSecurityGroupIds" in lt), ng.name
