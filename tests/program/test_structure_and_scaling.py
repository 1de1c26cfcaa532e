"""Parent/child structure, component tokens, outputs, and how the plan drives the node groups."""
from __future__ import annotations

import json

import pytest

from infra.program.offline import run_mocked
from tests.program.support import (
    NAT, NODE_GROUP, SUBNET, gpu_args_defaults, gpu_node_groups, gpu_nodes_total, make_plan, run_variant,
)

COMPONENTS = {
    "llm-fleet": {
        "llm-fleet:network:Network": {"network"},
        "llm-fleet:cluster:Cluster": {"cluster"},
        "llm-fleet:gpu:GpuNodeGroup": {"gpu-us-east-1a", "gpu-us-east-1b", "gpu-us-east-1c"},
        "llm-fleet:weights:WeightStore": {"weights"},
        "llm-fleet:serving:ClusterAutoscalerIdentity": {"cluster-autoscaler"},
        "llm-fleet:deployer:Deployer": {"deployer"},
        "llm-fleet:alerts:AlertPublisher": {"alerts"},
        "llm-fleet:images:ImageRegistry": {"images"},
    },
    "llm-fleet-workloads": {"llm-fleet:serving:Serving": {"serving"}},
}
# Custom resources at the top of a project: the cluster-bound Kubernetes provider and the base's StackReference.
TOP_LEVEL = {"llm-fleet": set(), "llm-fleet-workloads": {"pulumi:providers:kubernetes", "pulumi:pulumi:StackReference"}}


@pytest.mark.parametrize("project", sorted(COMPONENTS))
def test_components_are_top_level_and_every_resource_has_a_component_parent(prod_run, project):
    stack_urn = f"urn:pulumi:prod::{project}::pulumi:pulumi:Stack::{project}-prod"
    run = prod_run.project(project)
    urns = run.by_urn()
    found, top = {}, set()
    for r in run.resources:
        assert r.project == project, r.urn
        parent = urns.get(r.parent)
        if not r.custom:
            if r.parent == stack_urn:
                found.setdefault(r.type, set()).add(r.name)
            else:  # serving's concerns are components nested in Serving
                assert r.type.startswith("llm-fleet:serving:") and parent is not None and not parent.custom, r.name
        elif r.parent == stack_urn:
            top.add(r.type)
        else:
            assert parent is not None and not parent.custom, f"{r.type} {r.name} is not parented to a component"
            assert r.type.startswith(("aws:", "kubernetes:")), r.type
            # children are named after their component, so names stay unique across instances
            assert r.name.startswith(parent.name), (r.name, parent.name)
    assert found == COMPONENTS[project]
    assert top == TOP_LEVEL[project]


@pytest.mark.parametrize(
    "component, expected_types",
    [
        ("network", {"aws:ec2/vpc:Vpc", SUBNET, NAT, "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/securityGroup:SecurityGroup"}),
        ("cluster", {"aws:eks/cluster:Cluster", "aws:kms/key:Key", NODE_GROUP, "aws:eks/addon:Addon"}),
        ("gpu-us-east-1a", {"aws:ec2/launchTemplate:LaunchTemplate", NODE_GROUP}),
        ("weights", {"aws:s3/bucket:Bucket", "aws:iam/role:Role", "aws:eks/podIdentityAssociation:PodIdentityAssociation"}),
    ],
)
def test_children_of_each_component(prod_run, component, expected_types):
    parent = next(r for r in prod_run.resources if not r.custom and r.name == component)
    child_types = {r.type for r in prod_run.resources if r.parent == parent.urn}
    assert expected_types <= child_types


def test_outputs(prod_run):
    out = prod_run.outputs
    assert out["cluster_name"] == "llm-fleet-prod"
    assert out["cluster_endpoint"].startswith("https://") and out["cluster_endpoint"].endswith(".eks.amazonaws.com")
    assert prod_run.secret_outputs == ("kubeconfig",)
    kubeconfig = json.loads(out["kubeconfig"])
    (user,) = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "llm-fleet-prod"]
    assert kubeconfig["clusters"][0]["cluster"]["server"] == out["cluster_endpoint"]
    assert "token" not in json.dumps(kubeconfig["users"][0]["user"]).replace("get-token", "")  # no static credential
    assert out["weights_bucket"] == "llm-fleet-prod-weights-123456789012-us-east-1"
    assert set(out["gpu_node_groups"]) == {"us-east-1a", "us-east-1b", "us-east-1c"}
    # On-demand groups get a generated suffix (a replacement comes up beside the old group).
    assert {ng.inputs["nodeGroupNamePrefix"] for ng in gpu_node_groups(prod_run)} == {
        f"llm-fleet-prod-gpu-{az}-" for az in out["gpu_node_groups"]}
    assert out["availability_zones"] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    plan = prod_run.plan
    assert out["fleet_plan"]["instance_type"] == plan.instance_type == "p5.48xlarge"
    assert out["fleet_plan"]["nodes_per_az"] == {"min": plan.nodes_per_az.min, "desired": plan.nodes_per_az.desired,
                                                 "max": plan.nodes_per_az.max}


def test_node_groups_hold_exactly_the_plans_nodes(prod_run):
    plan = prod_run.plan
    for ng in gpu_node_groups(prod_run):
        sc, pool = ng.inputs["scalingConfig"], ng.inputs.get("warmPoolConfig") or {}
        spares = plan.warm_spares_per_az
        # Warm spares are in service (held by placeholder pods); the STOPPED pool prepares the burst.
        assert sc == {"minSize": plan.nodes_per_az.min, "desiredSize": plan.nodes_per_az.desired,
                      "maxSize": plan.nodes_per_az.max}
        headroom = plan.nodes_per_az.max > plan.nodes_per_az.min or spares > 0
        assert pool == ({"minSize": spares, "maxGroupPreparedCapacity": plan.nodes_per_az.max,
                         "poolState": "STOPPED", "reuseOnScaleIn": True} if headroom else {})
    assert gpu_nodes_total(prod_run) == plan.nodes_per_az.min * plan.azs


def test_more_users_means_more_p5_nodes(prod_run):
    bigger = run_variant(workload__concurrent_requests=400, workload__output_tokens_per_s=10000)
    assert bigger.plan.instance_type == prod_run.plan.instance_type == "p5.48xlarge"
    assert gpu_nodes_total(bigger) > gpu_nodes_total(prod_run)
    assert gpu_nodes_total(bigger, "maxSize") > gpu_nodes_total(prod_run, "maxSize")


def test_two_azs_gives_two_of_everything_per_az(prod_run):
    two = run_variant(fleet__azs=2)
    assert [ng.name for ng in gpu_node_groups(two)] == ["gpu-us-east-1a", "gpu-us-east-1b"]
    assert len(two.of_type(SUBNET)) == 4 and len(prod_run.of_type(SUBNET)) == 6
    assert len(two.of_type(NAT)) == 2 and len(prod_run.of_type(NAT)) == 3
    assert len(two.of_type("aws:eks/nodeGroup:NodeGroup")) == 3  # 2 GPU + system
    assert len(two.one("aws:eks/cluster:Cluster", "cluster").inputs["vpcConfig"]["subnetIds"]) == 2
    # with one of two AZs lost, each AZ must carry the whole load: more per AZ than with 3 AZs
    assert two.plan.replicas_per_az >= prod_run.plan.replicas_per_az


def test_named_azs_and_capacity_block_reservations():
    ids = {"us-east-1b": "cr-0123456789abcdef0", "us-east-1d": "cr-0fedcba9876543210"}
    run = run_variant(fleet__azs=2, fleet__capacity_type="capacity-block", gpu_nodes__capacity_reservation_ids=ids)
    groups = gpu_node_groups(run)
    assert [g.name for g in groups] == ["gpu-us-east-1b", "gpu-us-east-1d"]
    for g in groups:
        az = g.name.removeprefix("gpu-")
        assert g.inputs["capacityType"] == "CAPACITY_BLOCK"
        lt = run.one("aws:ec2/launchTemplate:LaunchTemplate", f"gpu-{az}-lt").inputs
        assert lt["instanceMarketOptions"] == {"marketType": "capacity-block"}
        assert lt["capacityReservationSpecification"] == {
            "capacityReservationTarget": {"capacityReservationId": ids[az]}
        }
    assert run.outputs["availability_zones"] == ["us-east-1b", "us-east-1d"]


def test_named_reservation_is_on_demand_with_a_target():
    ids = {"us-east-1a": "cr-00000000000000001", "us-east-1b": "cr-00000000000000002", "us-east-1c": "cr-00000000000000003"}
    run = run_variant(fleet__capacity_type="reservation", gpu_nodes__capacity_reservation_ids=ids)
    for g in gpu_node_groups(run):
        az = g.name.removeprefix("gpu-")
        assert g.inputs["capacityType"] == "ON_DEMAND"
        lt = run.one("aws:ec2/launchTemplate:LaunchTemplate", f"gpu-{az}-lt").inputs
        assert "instanceMarketOptions" not in lt
        assert lt["capacityReservationSpecification"]["capacityReservationTarget"]["capacityReservationId"] == ids[az]


def test_region_is_carried_everywhere():
    run = run_variant(aws_region="us-west-2", fleet__region="us-west-2", ingress__tls_certificate_arn=(
        "arn:aws:acm:us-west-2:123456789012:certificate/7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"))
    assert run.region == "us-west-2"
    assert run.outputs["availability_zones"] == ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert run.outputs["weights_bucket"].endswith("-us-west-2")
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint", "network-s3-endpoint").inputs
    assert endpoint["serviceName"] == "com.amazonaws.us-west-2.s3"


def test_running_twice_in_one_process_gives_the_same_graph(prod_run):
    from infra.program.offline import plan_stack

    again = plan_stack("prod")
    assert [r.to_dict() for r in again.resources] == [r.to_dict() for r in prod_run.resources]
    assert again.outputs == prod_run.outputs


def test_gpu_node_group_component_alone_with_a_fabricated_plan():
    """The component reads its counts from the plan it is given, not from a search of its own."""
    from infra.program.components import GpuNodeGroup, GpuNodeGroupArgs

    plan = make_plan(nodes_per_az=make_plan().nodes_per_az.__class__(min=4, desired=5, max=9), warm_spares_per_az=2)

    def program():
        GpuNodeGroup("gpu-eu-west-1a", GpuNodeGroupArgs(
            cluster_name="c", node_group_name="c-gpu-eu-west-1a", az="eu-west-1a", subnet_id="subnet-1",
            node_role_arn="arn:aws:iam::123456789012:role/n", security_group_ids=["sg-1"],
            instance_type=plan.instance_type, efa_interfaces=4, gpu=plan.gpu,
            nodes_min=plan.nodes_per_az.min, nodes_desired=plan.nodes_per_az.desired, nodes_max=plan.nodes_per_az.max,
            warm_spares=plan.warm_spares_per_az, **gpu_args_defaults(),
        ))
        return {"plan": plan}

    run = run_mocked(program, stack="test", region="eu-west-1")
    ng = run.one(NODE_GROUP, "gpu-eu-west-1a").inputs
    assert ng["scalingConfig"] == {"minSize": 4, "desiredSize": 5, "maxSize": 9}
    assert ng["warmPoolConfig"]["minSize"] == 2 and ng["warmPoolConfig"]["poolState"] == "STOPPED"
    assert ng["warmPoolConfig"]["maxGroupPreparedCapacity"] == 9
    lt = run.one("aws:ec2/launchTemplate:LaunchTemplate", "gpu-eu-west-1a-lt").inputs
    assert len(lt["networkInterfaces"]) == 4
    assert {r.parent for r in run.resources if r.custom} == {
        next(r.urn for r in run.resources if r.type == "llm-fleet:gpu:GpuNodeGroup")
    }


def test_autoscaled_desired_size_is_not_reset_by_pulumi_up(prod_run):
    for ng in prod_run.of_type(NODE_GROUP):
        assert ng.ignore_changes == ("scalingConfig.desiredSize",), ng.name


def test_ordering_dependencies(prod_run):
    urns = {(r.type, r.name): r.urn for r in prod_run.resources}
    cluster = prod_run.one("aws:eks/cluster:Cluster", "cluster")
    assert urns[("aws:cloudwatch/logGroup:LogGroup", "cluster-log-group")] in cluster.depends_on
    coredns = prod_run.one("aws:eks/addon:Addon", "cluster-addon-coredns")
    assert urns[(NODE_GROUP, "cluster-system")] in coredns.depends_on
    policy = prod_run.one("aws:s3/bucketPolicy:BucketPolicy", "weights-policy")
    assert urns[("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "weights-public-access-block")] in policy.depends_on
