"""Pulumi mocks with region-realistic AWS answers: the fake AWS world of the offline plan.

Resources get realistic ids and ARNs (account 123456789012, the stack's region); the invokes
the program makes (AZs, instance type offerings, caller identity, partition) get answers a
typical account would see. An invoke with no answer raises, naming the token. A StackReference
is answered with the outputs of the referenced stack's own mocked run (`stack_outputs`); one
the mocks do not know raises, naming the stack.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from infra.core.labels import PROJECT
from infra.program.components.common import short_hash

MOCK_ACCOUNT_ID = "123456789012"
MOCK_ORGANIZATION = "organization"  # what self-managed backends call every stack's organization
STACK_REFERENCE = "pulumi:pulumi:StackReference"


@dataclass(frozen=True)
class StackOutputs:
    """A referenced stack's outputs, as the engine hands them to a StackReference."""

    outputs: Mapping[str, Any]
    secret_names: tuple[str, ...] = ()

# AZ letters per region (what a typical account sees); unknown regions get a, b, c.
REGION_AZ_LETTERS = {
    "us-east-1": "abcdef",
    "us-east-2": "abc",
    "us-west-1": "ac",
    "us-west-2": "abcd",
    "ca-central-1": "abd",
    "eu-west-1": "abc",
    "eu-west-2": "abc",
    "eu-west-3": "abc",
    "eu-central-1": "abc",
    "eu-north-1": "abc",
    "ap-northeast-1": "acd",
    "ap-northeast-2": "abcd",
    "ap-south-1": "abc",
    "ap-southeast-1": "abc",
    "ap-southeast-2": "abc",
    "sa-east-1": "abc",
}
_DIRECTIONS = {
    "east": "e", "west": "w", "north": "n", "south": "s", "central": "c",
    "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw",
}


def region_azs(region: str) -> list[tuple[str, str]]:
    """(name, zone id) pairs for a region, e.g. ("us-east-1a", "use1-az1")."""
    parts = region.split("-")
    short = parts[0] + "".join(_DIRECTIONS.get(p, p[:1]) for p in parts[1:-1]) + parts[-1]
    letters = REGION_AZ_LETTERS.get(region, "abc")
    return [(f"{region}{letter}", f"{short}-az{i + 1}") for i, letter in enumerate(letters)]


def partition_of(region: str) -> tuple[str, str]:
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/route:Route": "r-rtb",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
}


class FleetMocks:
    """`pulumi.runtime.Mocks` with realistic AWS answers for one account and region."""

    def __init__(self, region: str, account_id: str = MOCK_ACCOUNT_ID,
                 stack_outputs: Mapping[str, StackOutputs] | None = None) -> None:
        self.region = region
        self.account_id = account_id
        self.partition, self.dns_suffix = partition_of(region)
        self.stack_outputs = dict(stack_outputs or {})

    # -- helpers -------------------------------------------------------------------------------
    def _arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    @staticmethod
    def _hex(*parts: str, n: int = 17) -> str:
        return short_hash(*parts, n=n)

    def _uuid(self, *parts: str) -> str:
        h = self._hex(*parts, n=32)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    # -- resources -----------------------------------------------------------------------------
    def new_resource(self, args: Any) -> tuple[str | None, dict]:
        typ, name = args.typ, args.name
        inputs = dict(args.inputs or {})
        if not getattr(args, "custom", True) and typ.startswith(f"{PROJECT}:"):
            return "", {}
        if typ == STACK_REFERENCE:
            return self._stack_reference(str(inputs.get("name") or args.resource_id or name))
        if typ == "kubernetes:core/v1:Service" and getattr(args, "resource_id", None):
            return self._read_service(str(args.resource_id))
        out = self._outputs(typ, name, inputs)
        rid = out.pop("__id")
        return rid, {**inputs, **out}

    def _stack_reference(self, stack: str) -> tuple[str, dict]:
        if stack not in self.stack_outputs:
            raise LookupError(f"offline plan: no mocked run of stack {stack!r} to answer its StackReference "
                              f"(known: {', '.join(sorted(self.stack_outputs)) or 'none'})")
        ref = self.stack_outputs[stack]
        return stack, {"name": stack, "outputs": dict(ref.outputs), "secretOutputNames": list(ref.secret_names)}

    def _read_service(self, service_id: str) -> tuple[str, dict]:
        """A LoadBalancer Service read back (the gateway's): its NLB's DNS name, as the in-tree
        controller names NLBs (`<32 hex>-<16 hex>.elb.<region>.amazonaws.com`)."""
        namespace, _, svc = service_id.rpartition("/")
        host = (f"{self._hex(self.region, service_id, n=32)}-{self._hex(self.region, service_id, 'lb', n=16)}"
                f".elb.{self.region}.{self.dns_suffix}")
        return service_id, {"metadata": {"name": svc, "namespace": namespace or "default"},
                            "status": {"loadBalancer": {"ingress": [{"hostname": host}]}}}

    def _outputs(self, typ: str, name: str, inputs: dict) -> dict:  # noqa: C901 - a lookup table
        h = self._hex(typ, name)
        if typ in _ID_PREFIX:
            rid = f"{_ID_PREFIX[typ]}-{h}"
            out: dict[str, Any] = {"__id": rid}
            if typ == "aws:ec2/launchTemplate:LaunchTemplate":
                out.update(latestVersion=1, defaultVersion=1, arn=self._arn("ec2", f"launch-template/{rid}"))
            elif typ == "aws:ec2/eip:Eip":
                out.update(allocationId=rid, publicIp=f"198.51.100.{int(h[:2], 16) % 254 + 1}")
            elif typ in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/securityGroup:SecurityGroup",
                         "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "aws:ec2/natGateway:NatGateway",
                         "aws:ec2/internetGateway:InternetGateway", "aws:ec2/routeTable:RouteTable",
                         "aws:ec2/vpcEndpoint:VpcEndpoint"):
                kind = typ.split(":")[-1]
                kind = re.sub(r"(?<!^)([A-Z])", r"-\1", kind).lower().replace("default-", "")
                out["arn"] = self._arn("ec2", f"{kind}/{rid}")
            if typ == "aws:ec2/vpc:Vpc":
                out.update(
                    defaultSecurityGroupId=f"sg-{self._hex(name, 'default-sg')}",
                    mainRouteTableId=f"rtb-{self._hex(name, 'main')}",
                    ownerId=self.account_id,
                )
            if typ in ("aws:ec2/securityGroup:SecurityGroup",):
                out["ownerId"] = self.account_id
            return out
        if typ == "aws:ec2/placementGroup:PlacementGroup":
            pg = inputs.get("name") or f"{name}-{h[:7]}"
            return {"__id": pg, "name": pg, "placementGroupId": f"pg-{h}", "arn": self._arn("ec2", f"placement-group/{pg}")}
        if typ == "aws:kms/key:Key":
            key_id = self._uuid(typ, name)
            return {"__id": key_id, "keyId": key_id, "arn": self._arn("kms", f"key/{key_id}")}
        if typ == "aws:kms/alias:Alias":
            alias = inputs.get("name") or f"alias/{name}"
            return {"__id": alias, "arn": self._arn("kms", alias), "targetKeyArn": self._arn("kms", f"key/{inputs.get('targetKeyId', '')}")}
        if typ == "aws:iam/role:Role":
            role = inputs.get("name") or f"{name}-{h[:7]}"
            return {
                "__id": role,
                "name": role,
                "arn": self._arn("iam", f"role/{role}", region=False),
                "uniqueId": "AROA" + self._hex(typ, name, n=17).upper(),
            }
        if typ == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
            return {"__id": f"{inputs.get('role', name)}-{h[:20]}"}
        if typ == "aws:iam/rolePolicy:RolePolicy":
            policy = inputs.get("name") or f"{name}-{h[:7]}"
            return {"__id": f"{inputs.get('role', '')}:{policy}", "name": policy}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            group = inputs.get("name") or f"{name}-{h[:7]}"
            return {"__id": group, "name": group, "arn": self._arn("logs", f"log-group:{group}")}
        if typ == "aws:eks/cluster:Cluster":
            cname = inputs.get("name") or f"{name}-{h[:7]}"
            oidc_id = self._hex(typ, cname, n=32).upper()
            vpc_config = dict(inputs.get("vpcConfig") or {})
            vpc_config.update(
                clusterSecurityGroupId=f"sg-{self._hex(cname, 'cluster-sg')}",
                vpcId=f"vpc-{self._hex('aws:ec2/vpc:Vpc', 'network-vpc')}",
            )
            return {
                "__id": cname,
                "name": cname,
                "arn": self._arn("eks", f"cluster/{cname}"),
                "endpoint": f"https://{oidc_id}.gr7.{self.region}.eks.{self.dns_suffix}",
                "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSU1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.{self.dns_suffix}/id/{oidc_id}"}]}],
                "vpcConfig": vpc_config,
                "status": "ACTIVE",
                "platformVersion": "eks.1",
                "clusterId": self._uuid(typ, cname, "id"),
            }
        if typ == "aws:eks/nodeGroup:NodeGroup":
            cluster = inputs.get("clusterName", "cluster")
            ng = inputs.get("nodeGroupName") or f"{name}-{h[:7]}"
            return {
                "__id": f"{cluster}:{ng}",
                "nodeGroupName": ng,
                "arn": self._arn("eks", f"nodegroup/{cluster}/{ng}/{self._uuid(typ, ng)}"),
                "status": "ACTIVE",
            }
        if typ == "aws:eks/addon:Addon":
            cluster, addon = inputs.get("clusterName", "cluster"), inputs.get("addonName", name)
            return {
                "__id": f"{cluster}:{addon}",
                "arn": self._arn("eks", f"addon/{cluster}/{addon}/{self._uuid(typ, addon)}"),
                "addonVersion": inputs.get("addonVersion") or "v1.0.0-eksbuild.1",
            }
        if typ == "aws:eks/accessEntry:AccessEntry":
            cluster, principal = inputs.get("clusterName", "cluster"), inputs.get("principalArn", "")
            return {"__id": f"{cluster}:{principal}", "accessEntryArn": self._arn("eks", f"access-entry/{cluster}/{h}")}
        if typ == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation":
            return {"__id": f"{inputs.get('clusterName', '')}#{inputs.get('principalArn', '')}#{inputs.get('policyArn', '')}"}
        if typ == "aws:eks/podIdentityAssociation:PodIdentityAssociation":
            aid = f"a-{self._hex(typ, name)}"
            cluster = inputs.get("clusterName", "cluster")
            return {
                "__id": f"{cluster},{aid}",
                "associationId": aid,
                "associationArn": self._arn("eks", f"podidentityassociation/{cluster}/{aid}"),
            }
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-{h[:7]}"
            return {
                "__id": bucket,
                "bucket": bucket,
                "arn": f"arn:{self.partition}:s3:::{bucket}",
                "bucketDomainName": f"{bucket}.s3.{self.dns_suffix}",
                "bucketRegionalDomainName": f"{bucket}.s3.{self.region}.{self.dns_suffix}",
                "region": self.region,
            }
        if typ.startswith("aws:s3/"):
            return {"__id": inputs.get("bucket") or f"{name}-{h[:7]}"}
        if typ == "aws:route53/healthCheck:HealthCheck":
            hc = self._uuid(typ, name)
            return {"__id": hc, "arn": f"arn:{self.partition}:route53:::healthcheck/{hc}"}
        if typ == "aws:route53/record:Record":
            rname, rtype, ident = inputs.get("name", name), inputs.get("type", "A"), inputs.get("setIdentifier")
            return {"__id": "_".join(str(p) for p in (inputs.get("zoneId", ""), rname, rtype, ident) if p),
                    "fqdn": rname}
        return {"__id": f"{name}-{h[:12]}"}

    # -- invokes -------------------------------------------------------------------------------
    def call(self, args: Any) -> tuple[dict, list | None]:
        token, a = args.token, dict(args.args or {})
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = region_azs(self.region)
            return {
                "id": self.region,
                "names": [n for n, _ in zones],
                "zoneIds": [z for _, z in zones],
                "groupNames": [self.region] * len(zones),
                "state": a.get("state", "available"),
                "region": self.region,
            }, []
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            types = [v for f in a.get("filters") or [] if f.get("name") == "instance-type" for v in f.get("values", [])]
            zones = [n for n, _ in region_azs(self.region)]
            locations = [z for z in zones for _ in types]
            return {
                "id": self.region,
                "instanceTypes": [t for _ in zones for t in types],
                "locations": locations,
                "locationTypes": ["availability-zone"] * len(locations),
                "region": self.region,
            }, []
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": self.account_id,
                "accountId": self.account_id,
                "arn": f"arn:{self.partition}:sts::{self.account_id}:assumed-role/llm-fleet-deployer/offline-plan",
                "userId": "AROAMOCKDEPLOYER0000:offline-plan",
            }, []
        if token == "aws:index/getPartition:getPartition":
            return {
                "id": self.partition,
                "partition": self.partition,
                "dnsSuffix": self.dns_suffix,
                "reverseDnsPrefix": "com.amazonaws",
            }, []
        if token == "aws:index/getRegion:getRegion":
            return {"id": self.region, "name": self.region, "region": self.region,
                    "endpoint": f"ec2.{self.region}.{self.dns_suffix}", "description": self.region}, []
        if token == "aws:lb/getHostedZoneId:getHostedZoneId":
            # A canonical hosted zone per region and load balancer type (a fixed table in the provider).
            region = a.get("region") or self.region
            return {"id": "Z" + self._hex(region, str(a.get("loadBalancerType") or "application"), n=13).upper()}, []
        if token == "aws:route53/getZone:getZone":
            zone = str(a.get("name") or "").rstrip(".")
            zone_id = "Z" + self._hex("zone", zone, n=20).upper()
            return {"id": zone_id, "zoneId": zone_id, "name": zone, "privateZone": False,
                    "arn": f"arn:{self.partition}:route53:::hostedzone/{zone_id}",
                    "nameServers": [f"ns-{i}.awsdns-{i:02d}.net" for i in (1, 2, 3, 4)]}, []
        # The program called a data source the mocks do not answer: a bug in this file, loudly.
        raise LookupError(f"offline plan: no mock answer for invoke {token}; add one to infra/program/offline/mocks.py")
