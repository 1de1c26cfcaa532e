"""Every AWS resource with a fixed name and ForceNew fields replaces cleanly.

A ForceNew field change makes the engine replace the resource; by default it creates the new
one first, which fails with "already exists" when the name (or the identity AWS keys it by) is
fixed. Each such resource is therefore either replaced delete-first (`delete_before_replace`)
or named by the provider (a generated suffix). The table lists, per type, the inputs that fix
its identity, its ForceNew fields (terraform-provider-aws, which pulumi-aws wraps: the schema's
`ForceNew: true` in the file named) and the handling; the test reads both the inputs and the
resource options the program registers, over the prod plan and the variants that add types.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi.runtime.mocks as pulumi_mocks
import pytest

from infra.program.offline import run_program
from tests.program.support import prod_entries, with_changes

DBR, GENERATED, NEW_IDENTITY = "delete-before-replace", "generated-name", "only-identity-forces-new"


@dataclass(frozen=True)
class Rule:
    identity: tuple[str, ...]  # inputs that fix the name or the key AWS identifies it by
    force_new: tuple[str, ...]
    source: str
    handling: str


RULES = {
    "aws:eks/cluster:Cluster": Rule(
        ("name",), ("name", "roleArn", "accessConfig.bootstrapClusterCreatorAdminPermissions",
                    "bootstrapSelfManagedAddons", "kubernetesNetworkConfig"),
        "internal/service/eks/cluster.go", DBR),
    "aws:eks/nodeGroup:NodeGroup": Rule(
        ("nodeGroupName",), ("nodeGroupName", "nodeGroupNamePrefix", "amiType", "capacityType", "instanceTypes",
                             "subnetIds", "nodeRoleArn", "clusterName", "launchTemplate.id", "diskSize"),
        "internal/service/eks/node_group.go", DBR),
    "aws:eks/addon:Addon": Rule(("addonName",), ("addonName", "clusterName"), "internal/service/eks/addon.go", DBR),
    "aws:eks/accessEntry:AccessEntry": Rule(
        ("principalArn",), ("principalArn", "clusterName", "type"), "internal/service/eks/access_entry.go", DBR),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": Rule(
        ("principalArn", "policyArn"), ("principalArn", "policyArn", "clusterName", "accessScope"),
        "internal/service/eks/access_policy_association.go", DBR),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": Rule(
        ("namespace", "serviceAccount"), ("namespace", "serviceAccount", "clusterName"),
        "internal/service/eks/pod_identity_association.go", DBR),
    "aws:cloudwatch/logGroup:LogGroup": Rule(("name",), ("name",), "internal/service/logs/group.go", DBR),
    # One per bucket, keyed by it; the only ForceNew input set is the bucket itself, so a
    # replacement always targets another bucket (expectedBucketOwner, where ForceNew, is unset).
    **{f"aws:s3/{t[0].lower()}{t[1:]}:{t}": Rule(("bucket",), ("bucket", *extra), f"internal/service/s3/{f}.go",
                                                  NEW_IDENTITY)
       for t, f, extra in (("BucketLifecycleConfiguration", "bucket_lifecycle_configuration", ("expectedBucketOwner",)),
                           ("BucketOwnershipControls", "bucket_ownership_controls", ()),
                           ("BucketPublicAccessBlock", "bucket_public_access_block", ()),
                           ("BucketServerSideEncryptionConfiguration", "bucket_server_side_encryption_configuration",
                            ("expectedBucketOwner",)),
                           ("BucketVersioning", "bucket_versioning", ("expectedBucketOwner",)),
                           ("BucketPolicy", "bucket_policy", ()))},
    "aws:kms/alias:Alias": Rule(("name",), ("name",), "internal/service/kms/alias.go", DBR),
    "aws:s3/bucket:Bucket": Rule(("bucket",), ("bucket",), "internal/service/s3/bucket.go", DBR),
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": Rule(
        ("ecrRepositoryPrefix",), ("ecrRepositoryPrefix", "upstreamRegistryUrl"),
        "internal/service/ecr/pull_through_cache_rule.go", DBR),
    "aws:codebuild/project:Project": Rule(("name",), ("name",), "internal/service/codebuild/project.go", DBR),
    "aws:ecr/repository:Repository": Rule(("name",), ("name", "encryptionConfigurations"),
                                          "internal/service/ecr/repository.go", DBR),
    # Named by the provider (no name input): replacements never collide.
    "aws:ec2/placementGroup:PlacementGroup": Rule(("name",), ("name", "strategy"), "internal/service/ec2/vpc_placement_group.go",
                                                  GENERATED),
    "aws:iam/role:Role": Rule(("name",), ("name", "path"), "internal/service/iam/role.go", GENERATED),
    "aws:ec2/launchTemplate:LaunchTemplate": Rule(("name",), ("name",), "internal/service/ec2/ec2_launch_template.go",
                                                  GENERATED),
    "aws:ec2/securityGroup:SecurityGroup": Rule(("name",), ("name", "vpcId", "description"),
                                                "internal/service/ec2/vpc_security_group.go", GENERATED),
    "aws:secretsmanager/secret:Secret": Rule(("name",), ("name",), "internal/service/secretsmanager/secret.go",
                                             GENERATED),
}
# Inputs that name a resource in any type: a type not in RULES must set none of them.
NAME_INPUTS = ("name", "bucket", "nodeGroupName", "addonName", "principalArn", "serviceAccount",
               "ecrRepositoryPrefix", "repositoryName")

VARIANTS = {
    "prod": {},
    # fixed-name GPU groups on reserved capacity; the placement group when configured
    "capacity-block": dict(fleet__azs=2, fleet__capacity_type="capacity-block",
                           gpu_nodes__capacity_reservation_ids={"us-east-1b": "cr-0123456789abcdef0",
                                                                "us-east-1d": "cr-0fedcba9876543210"},
                           gpu_nodes__cluster_placement_group=True,
                           cluster__admin_principal_arns=["arn:aws:iam::123456789012:role/platform-admin"]),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def registered(request):
    """(run, {urn-less key (type, name): deleteBeforeReplace}) of one variant, as the engine sees it."""
    seen: dict[tuple[str, str], bool] = {}
    original = pulumi_mocks.MockMonitor.RegisterResource

    def recording(self, req):
        seen[(req.type, req.name)] = bool(req.deleteBeforeReplace)
        return original(self, req)

    pulumi_mocks.MockMonitor.RegisterResource = recording
    try:
        run = run_program(with_changes(prod_entries(), **VARIANTS[request.param]), stack="prod")
    finally:
        pulumi_mocks.MockMonitor.RegisterResource = original
    return run, seen


def _has(inputs: dict, path: str) -> bool:
    cur = inputs
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def test_every_fixed_name_resource_with_force_new_fields_is_handled(registered):
    run, dbr = registered
    for r in run.resources:
        if not r.custom or not r.type.startswith("aws:"):
            continue
        rule = RULES.get(r.type)
        if rule is None:
            assert not set(NAME_INPUTS) & set(r.inputs), f"{r.type} {r.name} sets a name: add it to RULES"
            continue
        fixed = all(_has(r.inputs, k) for k in rule.identity)
        if rule.handling == NEW_IDENTITY:
            assert {k for k in rule.force_new if _has(r.inputs, k)} <= set(rule.identity), r.name
        elif fixed:
            assert dbr[(r.type, r.name)], f"{r.type} {r.name}: fixed {rule.identity} but not delete-before-replace"
        if rule.handling == GENERATED:
            assert not fixed, f"{r.type} {r.name}: expected a provider-generated name"
        elif r.type == "aws:eks/nodeGroup:NodeGroup" and not fixed:
            # on-demand groups: a generated suffix, so create-before-delete is safe
            assert _has(r.inputs, "nodeGroupNamePrefix") and not dbr[(r.type, r.name)], r.name


def test_gpu_groups_on_reserved_capacity_keep_fixed_names_the_others_a_suffix(registered):
    run, dbr = registered
    groups = [r for r in run.of_type("aws:eks/nodeGroup:NodeGroup") if r.inputs.get("amiType") == "AL2023_x86_64_NVIDIA"]
    assert groups
    for g in groups:
        reserved = g.inputs["capacityType"] == "CAPACITY_BLOCK"
        assert ("nodeGroupName" in g.inputs) is reserved and dbr[(g.type, g.name)] is reserved, g.name


def test_the_table_names_real_inputs_of_the_sdk():
    """Each listed input exists on the pulumi-aws resource (snake_case in the SDK)."""
    import importlib
    import inspect
    import re

    for token, rule in RULES.items():
        module, cls = token.split(":")[1].split("/")[0], token.split(":")[2]
        sdk = getattr(importlib.import_module(f"pulumi_aws.{module}"), cls)
        params = set(inspect.signature(sdk._internal_init).parameters)
        for path in rule.force_new + rule.identity:
            top = re.sub(r"(?<!^)([A-Z])", r"_\1", path.split(".")[0]).lower()
            assert top in params, f"{token}: {path} ({top}) is not an input of {cls}"
