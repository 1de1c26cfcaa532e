"""Every rule fails on a fabricated bad resource and passes on a good one (pulumi-policy-aws style)."""
import base64
import copy
import json

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from pulumi_policy.proxy import unknown_checking_proxy

from tests.cost import fixtures as F
from policies import POLICIES
from policies.offline import evaluate

BY_NAME = {p.name: p for p in POLICIES}
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
TAGS = dict(F.TAGS)
NG = "aws:eks/nodeGroup:NodeGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
SPEND = {"monthly_budget_usd": 250000, "region": "us-east-1"}


R53 = "aws:route53/record:Record"


def record(**inputs):
    return {"zoneId": "Z1", "name": "llm.example.com", "type": "A",
            "aliases": [{"name": "x.elb.us-east-1.amazonaws.com", "zoneId": "Z2", "evaluateTargetHealth": True}], **inputs}


def doc(statements):
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def gpu_group(max_size=4, types=("p5.48xlarge",), pool=1, pool_state="STOPPED"):
    """A GPU group of (2+pool)/(2+pool)/max_size nodes in service, `pool` of them warm spares."""
    props = F.gpu_node_group_inputs(types[0], "us-east-1a", {"min": 2 + pool, "desired": 2 + pool, "max": max_size},
                                    pool, pool_state)
    props["instanceTypes"] = list(types)
    return props


def lt(**meta):
    props = F.launch_template_inputs(200)
    props["metadataOptions"].update(meta)
    return props


def irsa(sub_op="StringEquals", sub="system:serviceaccount:llm:hydrator", aud=True):
    cond = {sub_op: {"oidc.eks.us-east-1.amazonaws.com/id/ABC:sub": sub}}
    if aud:
        cond.setdefault("StringEquals", {})["oidc.eks.us-east-1.amazonaws.com/id/ABC:aud"] = "sts.amazonaws.com"
    return {"assumeRolePolicy": doc([{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Condition": cond,
        "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"}}])}


# (policy, resource type, failing props, passing props, config)
RESOURCE_CASES = [
    ("gpu-spend-cap", NG, gpu_group(max_size=7), gpu_group(max_size=4), SPEND),  # 7 x 40,179.20 > 250k; 4 x fits
    ("gpu-spend-cap", NG, gpu_group(types=("p5e.48xlarge",)), gpu_group(types=("p5e.48xlarge",)),  # unpriced...
     SPEND),  # ...fails; the passing case below sets a capacity-block override
    ("gpu-instance-allowlist", NG, gpu_group(types=("p4d.24xlarge",)), gpu_group(), {"allowed_instance_types": ["p5.48xlarge"]}),
    ("gpu-instance-allowlist", LT, {**lt(), "instanceType": "p6-b200.48xlarge"}, {**lt(), "instanceType": "m7i.xlarge"}, {}),
    ("gpu-node-group-max-size", NG, gpu_group(max_size=40), gpu_group(max_size=32), {}),
    ("required-tags", "aws:s3/bucket:Bucket", {"tags": {"environment": "prod", "owner": ""}}, {"tags": TAGS}, {}),
    ("s3-bucket-encryption", "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
     {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
     {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]}, {}),
    ("s3-bucket-versioning", "aws:s3/bucketVersioning:BucketVersioning",
     {"bucket": "b", "versioningConfiguration": {"status": "Suspended"}},
     {"bucket": "b", "versioningConfiguration": {"status": "Enabled"}}, {}),
    ("s3-public-access-block", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
     {"bucket": "b", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": False},
     {"bucket": "b", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True},
     {}),
    ("s3-tls-only", "aws:s3/bucketPolicy:BucketPolicy",
     {"bucket": "b", "policy": doc([{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:GetObject",
                                     "Resource": "arn:aws:s3:::b/*"}])},
     {"bucket": "b", "policy": doc([{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::b/*"],
                                     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}])}, {}),
    ("eks-endpoint-private", "aws:eks/cluster:Cluster",
     {"vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": True}},
     {"vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}}, {}),
    ("eks-endpoint-private", "aws:eks/cluster:Cluster",
     {"vpcConfig": {"endpointPublicAccess": False}},
     {"vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False}}, {}),
    ("eks-secrets-encryption", "aws:eks/cluster:Cluster", {"encryptionConfig": {"resources": ["secrets"]}},
     {"encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:k"}, "resources": ["secrets"]}}, {}),
    ("eks-control-plane-logging", "aws:eks/cluster:Cluster", {"enabledClusterLogTypes": ["api", "audit"]},
     {"enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"]}, {}),
    ("launch-template-imdsv2", LT, lt(httpTokens="optional"), lt(), {}),
    ("launch-template-hop-limit", LT, lt(httpPutResponseHopLimit=2), lt(), {}),
    ("launch-template-hop-limit", LT, {"metadataOptions": {"httpTokens": "required"}}, lt(httpPutResponseHopLimit=1.0), {}),
    ("launch-template-encrypted-volumes", LT,
     {**lt(), "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 200, "encrypted": "false"}}]}, lt(), {}),
    ("launch-template-no-public-ip", LT, {**lt(), "networkInterfaces": [{"associatePublicIpAddress": "true"}]}, lt(), {}),
    ("launch-template-no-user-data-secrets", LT,
     {**lt(), "userData": base64.b64encode(b"#!/bin/sh\nexport AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP\n").decode()},
     {**lt(), "userData": base64.b64encode(b"apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n").decode()}, {}),
    ("security-group-no-world-ingress", "aws:ec2/securityGroup:SecurityGroup",
     {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]},
     {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]}]}, {}),
    ("security-group-no-world-ingress", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
     {"ipProtocol": "-1", "cidrIpv6": "::/0"},
     {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}, {}),
    ("iam-no-wildcard-action", "aws:iam/policy:Policy",
     {"policy": doc([{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}])},
     {"policy": doc([{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}])}, {}),
    ("iam-no-admin-access", "aws:iam/role:Role",
     {"inlinePolicies": [{"name": "admin", "policy": doc([{"Effect": "Allow", "Action": "*", "Resource": "*"}])}]},
     {"inlinePolicies": [{"name": "read", "policy": doc([{"Effect": "Allow", "Action": "s3:GetObject",
                                                          "Resource": "arn:aws:s3:::b/*"}])}]}, {}),
    ("iam-no-wildcard-resource", "aws:iam/rolePolicy:RolePolicy",
     {"policy": doc([{"Effect": "Allow", "Action": ["s3:GetObject", "ec2:DescribeInstances"], "Resource": "*"}])},
     {"policy": doc([{"Effect": "Allow", "Action": ["ec2:DescribeInstances", "ecr:GetAuthorizationToken"], "Resource": "*"}])},
     {}),
    ("iam-trust-pinned", "aws:iam/role:Role", irsa(sub_op="StringLike", sub="system:serviceaccount:llm:*"), irsa(), {}),
    ("iam-trust-pinned", "aws:iam/role:Role", irsa(aud=False), irsa(), {}),
    ("iam-trust-pinned", "aws:iam/role:Role",
     {"assumeRolePolicy": doc([{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                                "Action": ["sts:AssumeRole", "sts:TagSession"]}])},
     {"assumeRolePolicy": doc([{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                                "Action": ["sts:AssumeRole", "sts:TagSession"],
                                "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}])}, {}),
    ("kms-key-rotation", "aws:kms/key:Key", {"enableKeyRotation": False}, {"enableKeyRotation": True}, {}),
    # A record one of several regions answer (set identifier): a health check or it never fails over.
    ("route53-record-health-check", R53, record(setIdentifier="prod", weightedRoutingPolicies=[{"weight": 60}]),
     record(setIdentifier="prod", weightedRoutingPolicies=[{"weight": 60}], healthCheckId="hc-1"), {}),
    # The configured global hostname, even as a simple record.
    ("route53-record-health-check", R53, record(), record(healthCheckId="hc-1"), {"hostnames": ["llm.example.com."]}),
]
# The unpriced-p5e case passes once a capacity-block price is configured.
PASS_CONFIG = {1: {**SPEND, "usd_per_gpu_hour": 4.916}}


def run_resource(policy_name, rtype, props, config, provider=None, proxied=False):
    policy = BY_NAME[policy_name]
    assert isinstance(policy, ResourceValidationPolicy)
    messages = []
    props = copy.deepcopy(props)
    if proxied:  # what the engine hands a rule: read-only Mapping/Sequence proxies
        props = unknown_checking_proxy(props)
    args = ResourceValidationArgs(rtype, props, f"urn:pulumi:prod::llm-fleet::{rtype}::r", "r", OPTS,
                                  provider, config)
    policy.validate(args, lambda message, urn=None: messages.append(message))
    return messages


@pytest.mark.parametrize("i,case", list(enumerate(RESOURCE_CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(RESOURCE_CASES)])
@pytest.mark.parametrize("proxied", [False, True], ids=["plain", "engine-proxy"])
def test_resource_rule_fails_then_passes(i, case, proxied):
    name, rtype, bad, good, config = case
    failures = run_resource(name, rtype, bad, config, proxied=proxied)
    assert failures, f"{name} should reject {bad}"
    assert all(" must " in m for m in failures), failures
    assert run_resource(name, rtype, good, PASS_CONFIG.get(i, config), proxied=proxied) == []


def test_an_unknown_value_in_the_engine_is_left_to_the_engine():
    from pulumi_policy.proxy import UnknownValueError

    props = lt()
    props["metadataOptions"]["httpTokens"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    with pytest.raises(UnknownValueError):  # the engine turns this into an advisory note
        run_resource("launch-template-imdsv2", LT, props, {}, proxied=True)
    assert run_resource("launch-template-imdsv2", LT, props, {}) == []  # offline: cannot tell, pass


def test_required_tags_count_the_provider_default_tags():
    provider = PolicyProviderResource("pulumi:providers:aws", {"defaultTags": {"tags": TAGS}}, "urn:p", "default")
    assert run_resource("required-tags", "aws:kms/key:Key", {"enableKeyRotation": True}, {}, provider) == []
    assert run_resource("required-tags", "aws:kms/key:Key", {"enableKeyRotation": True}, {})


def test_spend_cap_fails_closed_without_budget_or_region():
    messages = run_resource("gpu-spend-cap", NG, gpu_group(), {})
    assert any("monthly_budget_usd" in m for m in messages) and any("region" in m for m in messages)


def test_spend_cap_message_shows_the_arithmetic():
    [message] = run_resource("gpu-spend-cap", NG, gpu_group(max_size=6, pool_state="RUNNING"), SPEND)
    assert ("(maxSize 6 + RUNNING warm pool 1) x p5.48xlarge at $55.04/h x 730 h = $281,254.40/month "
            "> budget $250,000.00/month") in message


def test_spend_cap_bills_a_stopped_warm_pool_no_instance_hours():
    # 6 x $55.04 x 730 h = $241,075.20 fits $250,000; the stopped spare only costs EBS.
    assert run_resource("gpu-spend-cap", NG, gpu_group(max_size=6), SPEND) == []


def test_a_record_nobody_fails_over_to_needs_no_health_check():
    # One answer for its name and not the configured hostname: a health check would change nothing.
    assert run_resource("route53-record-health-check", R53, record(name="llm.us-east-1.example.com"),
                        {"hostnames": ["llm.example.com"]}) == []


def test_rules_ignore_resources_they_do_not_govern():
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            assert run_resource(policy.name, "aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16", "tags": TAGS}, SPEND) == []


STACK_CASES = {
    "gpu-spend-cap-stack": ({"monthly_budget_usd": 500000, "region": "us-east-1"}, {"monthly_budget_usd": 800000, "region": "us-east-1"}),
    "s3-bucket-controls": None,
}


def stack_violations(policy_name, resources, config):
    return [v.message for v in evaluate(resources, {policy_name: config}, policies=[BY_NAME[policy_name]])]


@pytest.fixture(scope="module")
def prod_resources():
    return F.offline_plan()["resources"]


def test_stack_spend_cap_fails_over_budget_and_passes_under(prod_resources):
    resources = prod_resources
    bad, good = STACK_CASES["gpu-spend-cap-stack"]
    [message] = stack_violations("gpu-spend-cap-stack", resources, bad)
    gpu_nodes = sum(r["inputs"]["scalingConfig"]["maxSize"] for r in resources
                    if r["type"] == "aws:eks/nodeGroup:NodeGroup" and "gpu" in r["name"])
    assert "must keep its worst case within the monthly budget" in message and f"{gpu_nodes} GPU nodes" in message
    assert stack_violations("gpu-spend-cap-stack", resources, good) == []


def engine_resources(resources, property_dependencies=True):
    """PolicyResources as the engine hands a stack policy: parents and property dependencies linked."""
    from pulumi_policy import PolicyResource

    out = [PolicyResource(r["type"], r["inputs"], r["urn"], r["name"], OPTS, None, None, [], {}) for r in resources]
    by_urn = {pr.urn: pr for pr in out}
    for r, pr in zip(resources, out):
        pr.parent = by_urn.get(r.get("parent") or "")
        if property_dependencies:
            pr.property_dependencies = {k: [by_urn[u] for u in urns] for k, urns in (r.get("propertyDependencies") or {}).items()}
    return out


@pytest.mark.parametrize("property_dependencies", [True, False])
def test_stack_spend_cap_finds_launch_templates_through_the_engines_property_dependencies(prod_resources,
                                                                                          property_dependencies):
    from decimal import Decimal

    from infra.core.cost import cost_of_resources

    messages = []
    BY_NAME["gpu-spend-cap-stack"].validate(
        StackValidationArgs(engine_resources(prod_resources, property_dependencies),
                            {"monthly_budget_usd": 100, "region": "us-east-1"}),
        lambda m, urn=None: messages.append(m))
    [message] = messages
    # The graph's worst case: every node group on its launch template's 200/50 GB volumes.
    worst = cost_of_resources(prod_resources, "us-east-1").total_month("worst").quantize(Decimal("0.01"))
    assert (f"${worst:,}/month" in message) is property_dependencies, message


def test_s3_bucket_controls_fail_without_companions_and_pass_with_them(prod_resources):
    resources = prod_resources
    assert stack_violations("s3-bucket-controls", resources, {}) == []
    lonely = [r for r in resources if not r["type"].startswith("aws:s3/bucket") or r["type"] == "aws:s3/bucket:Bucket"]
    messages = stack_violations("s3-bucket-controls", lonely, {})
    buckets = [r for r in resources if r["type"] == "aws:s3/bucket:Bucket"]
    assert len(messages) == len(buckets) == 2  # the weights bucket and the deployer's source bucket
    assert all("must have encryption, versioning, public access block, TLS-only policy" in m for m in messages)


def test_every_policy_has_a_failing_and_a_passing_test():
    covered = {c[0] for c in RESOURCE_CASES} | set(STACK_CASES)
    assert covered == set(BY_NAME), f"untested rules: {set(BY_NAME) - covered}"
