"""Two projects over one stack, and the in-VPC deployer the base creates for a private cluster.

Mocks accept anything; these tests encode what AWS and EKS require, each citing its source.
"""
from __future__ import annotations

import json

import pytest
import yaml

from infra.core import deploy
from infra.core.labels import PROJECT, WORKLOADS_PROJECT
from tests.program.support import CLUSTER, ROLE, SUBNET, run_variant

PROJECT_TYPE = "aws:codebuild/project:Project"
PUBLIC = dict(cluster__endpoint_public_access=True, cluster__public_access_cidrs=["203.0.113.0/24"])


def _base(run):
    return run.project(PROJECT)


def test_private_cluster_base_has_no_kubernetes_resources_and_the_deployer(prod_run):
    """EKS user guide, "Cluster API server endpoint": with only the private endpoint, "there is no
    public access to your API server from the internet. Any kubectl commands must come from within
    the VPC or a connected network." So nothing of the base may talk to the API server, and the
    deployer that does runs in the VPC's private subnets."""
    base = _base(prod_run)
    assert not [r for r in base.resources if r.type.startswith(("kubernetes:", "pulumi:providers:kubernetes"))]
    (project,) = base.of_type(PROJECT_TYPE)
    private = {r.id for r in base.of_type(SUBNET) if r.inputs.get("mapPublicIpOnLaunch") is False}
    cluster_subnets = set(base.one(CLUSTER, "cluster").inputs["vpcConfig"]["subnetIds"])
    vpc_config = project.inputs["vpcConfig"]
    assert set(vpc_config["subnets"]) == cluster_subnets and cluster_subnets <= private
    assert vpc_config["vpcId"] == base.one("aws:ec2/vpc:Vpc", "network-vpc").id
    assert vpc_config["securityGroupIds"] == [base.one("aws:ec2/securityGroup:SecurityGroup", "deployer-sg").id]


def test_workloads_project_holds_only_kubernetes_and_reads_the_base(prod_run):
    """IAM, Pod Identity and ECR stay in the base: the deployer's role cannot create them."""
    work = prod_run.project(WORKLOADS_PROJECT)
    kinds = {r.type.split(":")[0] for r in work.resources if r.custom}
    assert kinds == {"kubernetes", "pulumi"}
    (ref,) = work.of_type("pulumi:pulumi:StackReference")
    assert ref.inputs["name"] == f"organization/{PROJECT}/prod"
    assert work.outputs["weights_bucket"] == _base(prod_run).outputs["weights_bucket"]
    assert all(n.urn.split("::")[1] == WORKLOADS_PROJECT for n in work.resources)
    assert all(n.urn.split("::")[1] == PROJECT for n in _base(prod_run).resources)


def test_endpoint_admits_the_deployer_on_443(prod_run):
    """EKS user guide, "Amazon EKS security group requirements": the cluster security group lets
    only its own members in; the control plane's endpoint interfaces carry it, so the builds'
    group needs an ingress rule on TCP 443 there."""
    base = _base(prod_run)
    rule = base.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "deployer-to-cluster-api").inputs
    cluster_sg = base.outputs["cluster_security_group_id"]
    assert rule["securityGroupId"] == cluster_sg
    assert rule["referencedSecurityGroupId"] == base.one("aws:ec2/securityGroup:SecurityGroup", "deployer-sg").id
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443)
    egress = base.one("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "deployer-egress-https").inputs
    assert (egress["ipProtocol"], egress["fromPort"], egress["toPort"]) == ("tcp", 443, 443)


def test_build_role_is_least_privilege(prod_run):
    """CodeBuild user guide, "Use CodeBuild with Amazon VPC": a VPC build's service role needs the
    EC2 network-interface actions, with CreateNetworkInterfacePermission scoped to the subnets and
    `ec2:AuthorizedService` codebuild.amazonaws.com; the rest is its log group, its source and
    cache prefixes, the Pulumi token secret and DescribeCluster. Nothing that creates IAM, Pod
    Identity or ECR resources."""
    base = _base(prod_run)
    role = base.one(ROLE, "deployer-role")
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "codebuild.amazonaws.com"}
    project = base.one(PROJECT_TYPE, "deployer-project")
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"].endswith(f":project/{project.inputs['name']}")
    doc = json.loads(base.one("aws:iam/rolePolicy:RolePolicy", "deployer-policy").inputs["policy"])
    actions = {a for s in doc["Statement"] for a in s["Action"]}
    assert not {a for a in actions if a.split(":")[0] in ("iam", "ecr", "kms")} and "eks:CreatePodIdentityAssociation" not in actions
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    cond = by_sid["VpcNetworkInterfacePermission"]["Condition"]
    assert cond["StringEquals"] == {"ec2:AuthorizedService": "codebuild.amazonaws.com"}
    subnets = project.inputs["vpcConfig"]["subnets"]
    assert sorted(a.rsplit("/", 1)[1] for a in cond["ArnEquals"]["ec2:Subnet"]) == sorted(subnets)
    cfg_secret = prod_run.resolved.config.deployer.access_token_secret_arn
    assert by_sid["PulumiAccessToken"]["Resource"] == [cfg_secret]
    log_group = base.one("aws:cloudwatch/logGroup:LogGroup", "deployer-logs")
    assert by_sid["BuildLogs"]["Resource"][0].endswith(f":log-group:{log_group.inputs['name']}")
    # EKS access entry: cluster-admin, because charts create CRDs and RBAC (Kubernetes RBAC
    # "privilege escalation prevention": a role can only be granted by who holds its permissions).
    assoc = base.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", "deployer-access-admin").inputs
    assert assoc["policyArn"].endswith("/AmazonEKSClusterAdminPolicy") and assoc["accessScope"] == {"type": "cluster"}


def test_project_pins_its_image_and_keeps_secrets_out_of_plain_variables(prod_run):
    """CodeBuild API `EnvironmentVariable.type`: PLAINTEXT values are visible to anyone who can read
    the project; SECRETS_MANAGER takes a secret id and resolves it at build time."""
    cfg = prod_run.resolved.config.deployer
    project = _base(prod_run).one(PROJECT_TYPE, "deployer-project").inputs
    env = project["environment"]
    assert env["image"] == cfg.build_image == "aws/codebuild/amazonlinux-x86_64-standard:5.0"
    assert env["privilegedMode"] is False
    variables = {v["name"]: v for v in env["environmentVariables"]}
    assert variables["PULUMI_ACCESS_TOKEN"] == {"name": "PULUMI_ACCESS_TOKEN", "type": "SECRETS_MANAGER",
                                                "value": cfg.access_token_secret_arn}
    assert {v["type"] for n, v in variables.items() if n != "PULUMI_ACCESS_TOKEN"} == {"PLAINTEXT"}
    assert project["logsConfig"]["cloudwatchLogs"]["groupName"] == "/aws/codebuild/llm-fleet-prod-deployer"
    log_group = _base(prod_run).one("aws:cloudwatch/logGroup:LogGroup", "deployer-logs").inputs
    assert log_group["retentionInDays"] == cfg.log_retention_days
    assert project["buildTimeout"] == cfg.build_timeout_minutes and project["concurrentBuildLimit"] == 1


def test_buildspec_runs_the_workloads_project_with_the_policy_pack(prod_run):
    """Buildspec reference (version 0.2): `runtime-versions` in install, commands run in one shell
    per phase, and a non-zero exit fails the build; the `pulumi` CLI is pinned and its tarball
    checked against the release's checksum file."""
    cfg = prod_run.resolved.config.deployer
    spec = yaml.safe_load(_base(prod_run).one(PROJECT_TYPE, "deployer-project").inputs["source"]["buildspec"])
    assert spec["version"] == 0.2 and spec["env"]["variables"]["PULUMI_VERSION"] == cfg.pulumi_version
    install = " ".join(spec["phases"]["install"]["commands"])
    assert "sha256sum -c" in install and "requirements.txt" in install
    (run,) = spec["phases"]["build"]["commands"]
    up = next(line for line in run.splitlines() if line.strip().startswith(f"{deploy.UP})"))
    assert "pulumi --cwd workloads" in up and "up --yes" in up and '--stack "$LLM_FLEET_STACK"' in up
    assert '--policy-pack "$CODEBUILD_SRC_DIR/policies"' in up
    assert 'config.$LLM_FLEET_STACK.json' in up
    assert all(f"  {action})" in run for action in deploy.ACTIONS)
    assert "PULUMI_ACCESS_TOKEN" not in json.dumps(spec)  # only the project's SECRETS_MANAGER variable holds it


def test_public_endpoint_has_no_deployer():
    """With public access restricted to known CIDRs, `deploy` runs both projects locally."""
    run = run_variant(**PUBLIC)
    assert not _base(run).of_type(PROJECT_TYPE)
    assert deploy.OUT_DEPLOYER not in _base(run).outputs
    assert not [r for r in _base(run).resources if r.name.startswith("deployer")]


def test_nothing_outside_a_gpu_node_group_depends_on_one(prod_run):
    """`deploy` brings the base up first without the GPU node groups (`--exclude` with
    `--exclude-dependents`), so the cluster, the system nodes and the in-cluster layer never wait
    for GPU capacity; that only holds if no other resource depends on a GPU group."""
    base = _base(prod_run)
    groups = {n.urn for n in base.of_type(deploy.GPU_NODE_GROUP_TYPE)}
    inside = {n.urn for n in base.resources if n.urn in groups or _ancestor_in(base, n, groups)}
    for n in base.resources:
        if n.urn in inside:
            continue
        deps = set(n.depends_on) | {u for urns in n.property_dependencies.values() for u in urns}
        assert not deps & inside, f"{n.type} {n.name} depends on a GPU node group"
    assert len(inside) > len(groups)  # the groups' own children go with them


def _ancestor_in(run, node, urns) -> bool:
    seen = set()
    while node.parent and node.parent not in seen:
        if node.parent in urns:
            return True
        seen.add(node.parent)
        node = run.by_urn().get(node.parent)
        if node is None:
            return False
    return False


@pytest.mark.parametrize("stack", ["prod", "prod-us-west-2"])
def test_private_stacks_name_the_token_secret(stack):
    from infra.core.config import load_stack_config
    from infra.core.paths import REPO_ROOT

    cfg = load_stack_config(stack, REPO_ROOT)
    assert cfg.deploys_in_vpc and cfg.deployer.access_token_secret_arn.startswith(f"arn:aws:secretsmanager:{cfg.region}:")


def test_private_endpoint_without_a_token_secret_is_refused():
    from infra.core.config import parse_stack_config
    from infra.core.errors import UserError
    from tests.program.support import DELETE, prod_entries, with_changes

    with pytest.raises(UserError, match="deployer.access_token_secret_arn: required key is missing"):
        parse_stack_config(with_changes(prod_entries(), deployer=DELETE))
    parse_stack_config(with_changes(prod_entries(), deployer=DELETE, **PUBLIC))


def _depends_transitively(run, node, target_urn) -> bool:
    by_urn, seen, todo = run.by_urn(), set(), [node.urn]
    while todo:
        urn = todo.pop()
        if urn == target_urn:
            return True
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        n = by_urn[urn]
        todo += list(n.depends_on) + [u for urns in n.property_dependencies.values() for u in urns]
        todo += [n.parent] if n.parent else []
    return False


def test_destroy_deletes_the_gateway_namespace_last_and_waits_for_it(prod_run):
    """Envoy Gateway creates the Envoy Service (the NLB, behind the service controller's finalizer
    `service.kubernetes.io/load-balancer-cleanup`) in its own namespace by default (Envoy Gateway
    docs, "Deployment Mode": the ControllerNamespace deploy type). That namespace is a Pulumi
    Namespace every ingress object depends on, so `pulumi destroy` deletes it last, and the
    Kubernetes provider waits for a deleted Namespace to be gone (pulumi-kubernetes await logic),
    i.e. until the Service's finalizer has let the NLB go: the workloads' destroy ends only then."""
    from infra.program.serving.defaults import ServingDefaults

    work = prod_run.project(WORKLOADS_PROJECT)
    ns_name = ServingDefaults().gateway_namespace
    (namespace,) = [r for r in work.of_type("kubernetes:core/v1:Namespace") if r.inputs["metadata"]["name"] == ns_name]
    assert "pulumi.com/skipAwait" not in (namespace.inputs["metadata"].get("annotations") or {})
    (release,) = [r for r in work.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "eg"]
    assert release.inputs["namespace"] == ns_name
    # The chart keeps the default deploy type: the Envoy Service lives in the controller's namespace.
    assert "GatewayNamespace" not in json.dumps(release.inputs["values"])
    ingress = [r for r in work.resources if r.type.startswith(("kubernetes:gateway.", "kubernetes:helm.sh"))
               and r.parent and r.parent.endswith("::serving-ingress")]
    assert len(ingress) >= 8
    assert all(_depends_transitively(work, r, namespace.urn) for r in ingress)


def test_the_registered_health_route_has_no_jwt(prod_run):
    work = prod_run.project(WORKLOADS_PROJECT)
    routes = {r.inputs["metadata"]["name"]: r for r in work.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")}
    health = routes["health"].inputs["spec"]
    assert prod_run.resolved.config.regional_hostname in health["hostnames"]
    targets = [t["name"] for r in work.of_type("kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy")
               for t in r.inputs["spec"]["targetRefs"]]
    assert targets == ["openai"]
    assert work.outputs["health_url"] == f"https://{prod_run.resolved.config.regional_hostname}/health"
