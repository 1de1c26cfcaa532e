"""The offline plan: run the real Pulumi program (`__main__.py`) under Pulumi mocks.

`run_program` executes the program exactly as `pulumi up` would (same file, same config keys)
but against `FleetMocks` instead of the engine and AWS: resources get realistic ids and ARNs
(account 123456789012, the stack's region), and the invokes the program makes (AZs, instance
type offerings, caller identity, partition) get region-realistic answers. It runs with
`preview=False` so every `apply` callback runs, waits for all outstanding RPCs and outputs, and
returns every registered resource with its inputs as the engine sees them (camelCase keys;
numbers arrive as floats and are turned back into ints where integral).

Runs are isolated in-process: each one gets a fresh `contextvars` context (Pulumi keeps its
settings, root resource and config in context variables), a fresh mock monitor and a fresh
event loop, so tests can call it many times in one process (about 0.4 s a run once pulumi_aws
is imported, against ~2.8 s for a subprocess that imports everything again).
"""
from __future__ import annotations

import asyncio
import contextvars
import copy
import gc
import importlib
import json
import logging
import re
import runpy
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from infra.components.common import short_hash
from infra.config import PROJECT, parse_stack_config, stack_file_entries

PROJECT_DIR = Path(__file__).resolve().parent.parent
MOCK_ACCOUNT_ID = "123456789012"
STACK_TYPE = "pulumi:pulumi:Stack"

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


# ----------------------------------------------------------------------------------------------
# Mocks
# ----------------------------------------------------------------------------------------------

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

    def __init__(self, region: str, account_id: str = MOCK_ACCOUNT_ID) -> None:
        self.region = region
        self.account_id = account_id
        self.partition, self.dns_suffix = partition_of(region)

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
        out = self._outputs(typ, name, inputs)
        rid = out.pop("__id")
        return rid, {**inputs, **out}

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
        # The program called a data source the mocks do not answer: a bug in this file, loudly.
        raise LookupError(f"offline plan: no mock answer for invoke {token}; add one to infra/preview.py")


def _as_pulumi_mocks(mocks: FleetMocks) -> Any:
    import pulumi

    class _Adapter(pulumi.runtime.Mocks):
        def new_resource(self, args):  # type: ignore[override]
            return mocks.new_resource(args)

        def call(self, args):  # type: ignore[override]
            return mocks.call(args)

    return _Adapter()


# ----------------------------------------------------------------------------------------------
# Lean imports of pulumi_aws (speed only)
# ----------------------------------------------------------------------------------------------

# `pulumi_aws.ec2` and friends import every resource module of the package on first use (ec2
# alone has ~500: about 1 s); the program needs a dozen. For the offline plan, each of these
# sub-packages is replaced, before first use, by a module that imports the one file a name
# lives in (`LaunchTemplate` -> `launch_template.py`) and falls back to running the package's
# real `__init__` for anything else. Classes and functions are the very same objects; only
# import order changes. `pulumi up` never goes through this.
LEAN_AWS_PACKAGES = ("ec2", "eks", "s3", "iam", "kms", "cloudwatch", "vpc")
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


class _LeanPackage(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            if name == "__all__":  # `from pkg import *`: make every name available first
                self._load_fully()
            raise AttributeError(name)
        if not self.__dict__.get("_lean_full_load"):
            try:
                module = importlib.import_module(f"{self.__name__}.{_CAMEL_RE.sub('_', name).lower()}")
            except ImportError:
                module = None
            if module is not None:
                # A function shares its module's name (get_ami in get_ami.py); a submodule
                # (outputs, _inputs) is the attribute itself, as after a normal import.
                if hasattr(module, name):
                    value = getattr(module, name)
                elif name.islower() and module.__name__ == f"{self.__name__}.{name}":
                    value = module
                else:
                    value = None
                if value is not None:
                    setattr(self, name, value)
                    return value
            self._load_fully()
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        self._load_fully()
        return list(self.__dict__)

    def _load_fully(self) -> None:
        if self.__dict__.get("_lean_full_load"):
            return
        self.__dict__["_lean_full_load"] = True
        self.__spec__.loader.exec_module(self)  # the package's real __init__, into this module


def use_lean_aws_imports() -> None:
    """Swap not-yet-loaded pulumi_aws sub-packages for lean ones (idempotent)."""
    import importlib.util

    import pulumi_aws

    for pkg in LEAN_AWS_PACKAGES:
        fullname = f"pulumi_aws.{pkg}"
        current = sys.modules.get(fullname)
        if isinstance(current, _LeanPackage):
            continue
        if current is not None and type(current).__name__ != "_LazyModule":
            continue  # already imported for real: nothing to gain
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            continue
        lean = _LeanPackage(fullname)
        lean.__spec__ = spec
        lean.__file__ = spec.origin
        lean.__path__ = list(spec.submodule_search_locations or [])
        lean.__package__ = fullname
        lean.__loader__ = spec.loader
        sys.modules[fullname] = lean
        setattr(pulumi_aws, pkg, lean)


# ----------------------------------------------------------------------------------------------
# Running the program
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRecord:
    urn: str
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    custom: bool
    # Resource options the engine would see (not part of the JSON document).
    ignore_changes: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    provider: str | None = None  # "<provider urn>::<id>" for custom resources bound to a provider

    def to_dict(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs}


@dataclass
class ProgramRun:
    stack: str
    region: str
    plan: Any  # FleetPlan, as issued by infra.sizing.size
    resources: list[ResourceRecord]
    outputs: dict[str, Any]
    secret_outputs: tuple[str, ...] = ()
    diagnostics: list[str] = field(default_factory=list)

    def by_urn(self) -> dict[str, ResourceRecord]:
        return {r.urn: r for r in self.resources}

    def of_type(self, typ: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str) -> ResourceRecord:
        found = [r for r in self.resources if r.type == typ and r.name == name]
        if len(found) != 1:
            raise KeyError(f"{typ} {name}: found {len(found)}")
        return found[0]

    def az_of(self, record: ResourceRecord) -> str | None:
        """The AZ a resource lives in: its own input, its name, or its parent's."""
        zones = [n for n, _ in region_azs(self.region)]
        urns = self.by_urn()
        current: ResourceRecord | None = record
        while current is not None:
            az = current.inputs.get("availabilityZone")
            if isinstance(az, str):
                return az
            for zone in zones:
                if current.name.endswith(zone) or f"-{zone}-" in current.name or f"{zone}-" in current.name:
                    return zone
            current = urns.get(current.parent or "")
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "region": self.region,
            "plan": self.plan.to_dict() if hasattr(self.plan, "to_dict") else self.plan,
            "resources": [r.to_dict() for r in self.resources],
        }


def normalize(value: Any) -> Any:
    """Engine view -> display: integral floats back to ints and keys sorted, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: normalize(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def stack_entries(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The config the engine would hand the program: Pulumi.yaml defaults + Pulumi.<stack>.yaml.

    Validates it first, so a bad config fails here with the loader's message.
    """
    entries = stack_file_entries(stack, project_dir)
    parse_stack_config(entries, source=f"Pulumi.{stack}.yaml")
    return entries


def _engine_config(entries: Mapping[str, Any]) -> dict[str, str]:
    """What the engine passes the program: strings, structured values as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()}


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")


_RUN_LOCK = threading.Lock()


def run_program(
    entries: Mapping[str, Any],
    stack: str = "prod",
    project_dir: Path = PROJECT_DIR,
    program: Path | None = None,
) -> ProgramRun:
    """Run `__main__.py` under mocks with the given config entries (full keys -> values)."""
    cfg = parse_stack_config(dict(entries), source=f"stack {stack}")  # fail fast, same messages
    if program is None:
        # A config-only directory (tests, other checkouts) runs this repository's program.
        program = Path(project_dir) / "__main__.py"
        if not program.is_file():
            program = PROJECT_DIR / "__main__.py"
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    path = str(program)
    return run_mocked(lambda: runpy.run_path(path, run_name="__main__"), stack, cfg.region, config=entries)


def run_mocked(
    body: Callable[[], Mapping[str, Any] | None],
    stack: str,
    region: str,
    config: Mapping[str, Any] | None = None,
) -> ProgramRun:
    """Run `body` (a Pulumi program) under mocks; `plan` is taken from what it returns."""
    with _RUN_LOCK:
        # Importing the generated pulumi_aws classes allocates ~10^6 objects; full cyclic-GC
        # passes over them cost seconds and free nothing, so pause the collector for the run.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            ctx = contextvars.copy_context()
            return ctx.run(_run_isolated, body, dict(config or {}), stack, region)
        finally:
            if gc_was_enabled:
                gc.enable()


def _run_isolated(body: Callable[[], Mapping[str, Any] | None], entries: dict[str, Any], stack: str,
                  region: str) -> ProgramRun:
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import rpc, settings
    from pulumi.runtime.stack import wait_for_rpcs

    records: list[ResourceRecord] = []
    records_lock = threading.Lock()

    class _RecordingMonitor(pulumi_mocks.MockMonitor):
        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            response = super().RegisterResource(request)
            if request.type != STACK_TYPE:
                inputs, _ = rpc.deserialize_properties_unwrap_secrets(request.object)
                record = ResourceRecord(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    inputs=normalize(copy.deepcopy(inputs)),
                    custom=bool(request.custom),
                    ignore_changes=tuple(request.ignoreChanges),
                    depends_on=tuple(sorted(request.dependencies)),
                    provider=request.provider or None,
                )
                with records_lock:
                    records.append(record)
            return response

    use_lean_aws_imports()
    handler = _ListHandler()
    logger = logging.getLogger(f"llm-fleet.preview.{stack}")
    logger.propagate = False
    logger.handlers[:] = [handler]

    try:
        previous_loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        previous_loop = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        pulumi.runtime.set_all_config(_engine_config(entries), [])
        monitor = _RecordingMonitor(_as_pulumi_mocks(FleetMocks(region)))
        pulumi.runtime.set_mocks(
            monitor.mocks, project=PROJECT, stack=stack, preview=False, logger=logger, monitor=monitor
        )
        namespace: Mapping[str, Any] = {}
        error: BaseException | None = None
        try:
            namespace = body() or {}
        except BaseException as exc:  # noqa: BLE001 - re-raised after the RPCs drain
            error = exc
        try:
            loop.run_until_complete(wait_for_rpcs())
        except BaseException:  # noqa: BLE001
            if error is None:
                raise
        if error is not None:
            raise error
        root = settings.get_root_resource()
        outputs, secrets = {}, []
        for key, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            outputs[key] = normalize(loop.run_until_complete(out.future()))
            if loop.run_until_complete(out.is_secret()):
                secrets.append(key)
        loop.run_until_complete(wait_for_rpcs())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            asyncio.set_event_loop(previous_loop if previous_loop is not None and not previous_loop.is_closed() else None)
    return ProgramRun(
        stack=stack,
        region=region,
        plan=namespace.get("plan"),
        resources=sorted(records, key=lambda r: r.urn),
        outputs=outputs,
        secret_outputs=tuple(sorted(secrets)),
        diagnostics=handler.messages,
    )


def plan_stack(stack: str = "prod", project_dir: Path = PROJECT_DIR) -> ProgramRun:
    """The offline plan of a stack: its config file, the real program, mocks."""
    return run_program(stack_entries(stack, project_dir), stack=stack, project_dir=project_dir)


__all__ = [
    "FleetMocks",
    "ProgramRun",
    "ResourceRecord",
    "normalize",
    "plan_stack",
    "region_azs",
    "run_mocked",
    "run_program",
    "stack_entries",
]
