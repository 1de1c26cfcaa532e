"""Golden files for the prod plan: the resource inventory (types, names, AZs, parents, key
inputs) and the human output of `python -m infra plan`. Regenerate with UPDATE_GOLDEN=1 (the diff is shown)."""
from __future__ import annotations

import io
import json
from pathlib import Path

from infra.cli.plan import render_text
from tests.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"

# Per type, the inputs worth pinning ("a.b" paths; "#x" = length of list x).
KEY_INPUTS = {
    "aws:ec2/vpc:Vpc": ["cidrBlock", "enableDnsHostnames", "enableDnsSupport"],
    "aws:ec2/subnet:Subnet": ["availabilityZone", "cidrBlock", "mapPublicIpOnLaunch"],
    "aws:ec2/natGateway:NatGateway": ["connectivityType"],
    "aws:ec2/eip:Eip": ["domain"],
    "aws:ec2/route:Route": ["destinationCidrBlock"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["serviceName", "vpcEndpointType", "#routeTableIds"],
    "aws:ec2/securityGroup:SecurityGroup": ["description"],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ["ipProtocol"],
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ["ipProtocol"],
    "aws:ec2/placementGroup:PlacementGroup": ["strategy"],
    "aws:ec2/launchTemplate:LaunchTemplate": [
        "metadataOptions.httpTokens", "metadataOptions.httpPutResponseHopLimit", "blockDeviceMappings.0.ebs",
        "#networkInterfaces", "placement", "instanceType", "instanceMarketOptions", "capacityReservationSpecification",
    ],
    "aws:eks/cluster:Cluster": [
        "name", "version", "vpcConfig.endpointPrivateAccess", "vpcConfig.endpointPublicAccess",
        "enabledClusterLogTypes", "encryptionConfig.resources", "accessConfig", "upgradePolicy", "deletionProtection",
    ],
    "aws:eks/nodeGroup:NodeGroup": [
        "nodeGroupName", "nodeGroupNamePrefix", "version", "amiType", "instanceTypes", "capacityType", "scalingConfig",
        "warmPoolConfig", "taints", "labels", "#subnetIds", "nodeRepairConfig",
    ],
    "aws:eks/addon:Addon": ["addonName", "resolveConflictsOnCreate", "podIdentityAssociations.0.serviceAccount"],
    "aws:eks/accessEntry:AccessEntry": ["principalArn", "type"],
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": ["policyArn", "accessScope"],
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": ["namespace", "serviceAccount"],
    "aws:kms/key:Key": ["enableKeyRotation", "deletionWindowInDays"],
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": ["ecrRepositoryPrefix", "upstreamRegistryUrl"],
    "aws:ecr/repository:Repository": ["name", "imageTagMutability", "forceDelete"],
    "aws:secretsmanager/secret:Secret": ["namePrefix"],
    "aws:kms/alias:Alias": ["name"],
    "aws:iam/role:Role": ["assumeRolePolicy"],
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ["policyArn"],
    "aws:cloudwatch/logGroup:LogGroup": ["name", "retentionInDays"],
    "aws:s3/bucket:Bucket": ["bucket", "forceDestroy"],
    "aws:s3/bucketVersioning:BucketVersioning": ["versioningConfiguration"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": [
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm", "rules.0.bucketKeyEnabled",
    ],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": [
        "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets",
    ],
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ["rule"],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ["rules"],
}


def _get(inputs, path):
    if path.startswith("#"):
        value = _get(inputs, path[1:])
        return None if value is None else len(value)
    cur = inputs
    for part in path.split("."):
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    if path == "assumeRolePolicy":  # the trusted services are the part worth pinning
        return sorted({s["Principal"]["Service"] for s in json.loads(cur)["Statement"]})
    return cur


def inventory(run) -> list[dict]:
    urns = run.by_urn()
    rows = []
    for r in run.resources:
        parent = urns.get(r.parent)
        key = {p: v for p in KEY_INPUTS.get(r.type, []) if (v := _get(r.inputs, p)) is not None}
        rows.append({
            "project": r.project,
            "type": r.type,
            "name": r.name,
            "az": run.az_of(r),
            "parent": f"{parent.type}::{parent.name}" if parent else None,
            "inputs": key,
        })
    return rows


def test_prod_inventory_golden(prod_run):
    rows = inventory(prod_run)
    assert len(rows) == len(prod_run.resources)
    check_golden(GOLDEN / "prod_inventory.json", json.dumps(rows, indent=2, sort_keys=True) + "\n")


def test_prod_plan_text_golden(prod_run):
    buf = io.StringIO()
    render_text(prod_run, buf)
    check_golden(GOLDEN / "prod_plan.txt", buf.getvalue())
