"""The resource graph: one type for every reader of a stack's resources (cost, policies, the
plan renderers), built from the offline plan's mocked run or from `pulumi preview --json`.

Two documents describe a stack:

* the offline plan (`python -m infra plan --stack S --json FILE`): `{"stack", "region",
  "plan": FleetPlan.to_dict(), "resources": [{"urn", "type", "name", "parent", "inputs",
  "id", "propertyDependencies"}], ...}`;
* a real `pulumi preview --json`: `{"config", "steps": [{"op", "urn", "newState": {"type",
  "id", "inputs", "parent", "propertyDependencies"}, ...}], ...}` (newState is Pulumi's
  apitype.ResourceV3).

Inputs are as the engine sees them (camelCase keys, pulumi-aws 7 tokens). References between
resources (a node group's launch template) are resolved once, here: through the engine's
property dependencies, else by id or name. Pure: no pulumi, no boto3.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from infra.core.errors import InputError
from infra.core.files import read_json_file
from infra.core.labels import AZ_LABEL, AZ_TAG, ZONE_LABEL
from infra.core.patterns import AZ_ID_IN_TEXT, AZ_IN_TEXT

# What `pulumi preview --json` prints for a value not known until apply (pkg/display/json.go)
# and for a secret.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET = "[secret]"

# Steps whose resource is gone after the update: not part of the stack's future.
_GONE_OPS = {"delete", "delete-replaced", "discard", "discard-replaced", "read-discard", "remove-pending-replace"}

STACK_TYPE = "pulumi:pulumi:Stack"
AWS_PROVIDER = "pulumi:providers:aws"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CLUSTER = "aws:eks/cluster:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
KMS_KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
K8S_SERVICE = "kubernetes:core/v1:Service"
# Envoy Gateway provisions its data-plane Service (the NLB) from this resource, not from a Service we create.
ENVOY_PROXY = "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"
ROUTE53_ZONE = "aws:route53/zone:Zone"
ROUTE53_RECORD = "aws:route53/record:Record"
ROUTE53_HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"

_ZONE_KEYS = (ZONE_LABEL, "failure-domain.beta.kubernetes.io/zone", AZ_LABEL, AZ_TAG,
              "zone", "az", "availability-zone", "availability_zone")


# --- values as the engine hands them ----------------------------------------------------------


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value == UNKNOWN


def to_plain(value: Any) -> Any:
    """Deep-copy Mapping/Sequence proxies (the policy engine's props) into dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(value[k]) for k in value}
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, Sequence):
        return [to_plain(value[i]) for i in range(len(value))]
    return value


def as_int(value: Any) -> int | None:
    """An integer input (mocks deliver integers as floats); None when absent or unknown."""
    if value is None or isinstance(value, bool) or is_unknown(value):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value == int(value) else None
    if isinstance(value, str):
        try:
            d = Decimal(value)
        except InvalidOperation:
            return None
        return int(d) if d.is_finite() and d == d.to_integral_value() else None
    return None


def as_decimal(value: Any) -> Decimal | None:
    """A number as Decimal via its shortest text (floats never leak binary noise)."""
    if value is None or isinstance(value, bool) or is_unknown(value):
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def as_bool(value: Any) -> bool | None:
    """pulumi-aws types some booleans as strings ("true"/"false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def listify(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or isinstance(value, Mapping):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    return [value]


def json_document(value: Any) -> Any:
    """An IAM/bucket policy given as a JSON string or an object; None when unknown/invalid."""
    if isinstance(value, Mapping):
        return to_plain(value)
    if isinstance(value, str) and value and not is_unknown(value) and value != SECRET:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return None


def mapping_at(inputs: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    """The mapping at `path` inside `inputs`, or {} when any step is missing or not a mapping."""
    cur: Any = inputs
    for key in path:
        cur = cur.get(key) if isinstance(cur, Mapping) else None
    return cur if isinstance(cur, Mapping) else {}


# --- URNs -------------------------------------------------------------------------------------
# urn:pulumi:<stack>::<project>::<type chain>::<name>


def stack_of_urn(urn: str) -> str:
    head = urn.split("::")[0].split(":") if urn else []
    return head[2] if len(head) >= 3 else ""


def project_of_urn(urn: str) -> str:
    parts = urn.split("::")
    return parts[1] if len(parts) >= 4 else ""


def name_of_urn(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


def type_of_urn(urn: str) -> str:
    """The resource's own type token (the last of a `Parent$Child` chain), or ''."""
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""


def short_type(token: str) -> str:
    """`aws:ec2/vpc:Vpc` -> `aws:ec2:Vpc` (how `pulumi preview` shows types)."""
    package, _, rest = token.partition(":")
    module, _, name = rest.partition(":")
    return f"{package}:{module.split('/')[0]}:{name}" if name else token


def urn_label(urn: str) -> str:
    """A resource as a person reads it: `gpu-us-east-1a (aws:eks:NodeGroup)`; '' for no URN."""
    if not urn:
        return ""
    typ = type_of_urn(urn)
    return f"{name_of_urn(urn)} ({short_type(typ)})" if typ else name_of_urn(urn)


# --- the graph ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One resource: what the engine registers, as every reader sees it."""

    urn: str
    type: str
    name: str
    parent: str | None
    inputs: Mapping[str, Any]
    id: str | None = None
    custom: bool = True
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Resource options the engine would see (recorded by the mocked run; not in the JSON).
    depends_on: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    provider: str | None = None  # "<provider urn>::<id>" for custom resources bound to a provider

    @property
    def project(self) -> str:
        return project_of_urn(self.urn)

    def to_dict(self) -> dict[str, Any]:
        """The plan JSON's resource entry."""
        out: dict[str, Any] = {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
                               "inputs": self.inputs}
        if self.id:
            out["id"] = self.id
        if self.property_dependencies:
            out["propertyDependencies"] = {k: list(v) for k, v in sorted(self.property_dependencies.items())}
        return out


def own_az(node: Node) -> str | None:
    """The AZ a resource names itself (inputs, labels, tags or name); its parents are not asked."""
    inputs = node.inputs
    for key in ("availabilityZone", "availabilityZoneId"):
        v = inputs.get(key)
        if isinstance(v, str) and v and not is_unknown(v):
            return v
    for bag in (inputs.get("labels"), inputs.get("tags")):
        if isinstance(bag, Mapping):
            for key in _ZONE_KEYS:
                v = bag.get(key)
                if isinstance(v, str) and v and not is_unknown(v):
                    return v
    m = AZ_IN_TEXT.search(node.name) or AZ_ID_IN_TEXT.search(node.name)
    return m.group(1) if m else None


@dataclass(frozen=True)
class ResourceGraph:
    """A stack's resources, their parents and the references between them."""

    kind: str  # "plan" | "preview"
    stack: str
    region: str | None
    nodes: tuple[Node, ...]
    plan: Mapping[str, Any] | None = None  # FleetPlan.to_dict() when the document is an offline plan
    policy: Mapping[str, Any] | None = None  # the plan's own policy verdict, when present
    path: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def by_urn(self) -> Mapping[str, Node]:
        return {n.urn: n for n in self.nodes}

    def of_type(self, *types: str) -> list[Node]:
        return [n for n in self.nodes if n.type in types]

    def one(self, type_: str, name: str) -> Node:
        found = [n for n in self.nodes if n.type == type_ and n.name == name]
        if len(found) != 1:
            raise KeyError(f"{type_} {name}: found {len(found)}")
        return found[0]

    def parent(self, node: Node) -> Node | None:
        return self.by_urn.get(node.parent or "")

    def children(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if n.parent == node.urn]

    def az_of(self, node: Node) -> str | None:
        """The AZ a resource lives in: its own inputs, labels, tags or name, else its parent's."""
        current: Node | None = node
        seen: set[str] = set()
        while current is not None and current.urn not in seen:
            seen.add(current.urn)
            az = own_az(current)
            if az:
                return az
            current = self.parent(current)
        return None

    def ref(self, node: Node, prop: str, type_: str) -> Node | None:
        """The `type_` resource that property `prop` of `node` refers to.

        The engine's property dependencies say it exactly; without them (a hand-written
        document) an id or name inside the property is matched against the resources.
        """
        for urn in node.property_dependencies.get(prop, ()):
            target = self.by_urn.get(urn)
            if target is not None and target.type == type_:
                return target
        value = node.inputs.get(prop)
        wanted = {v for v in (listify(value) if not isinstance(value, Mapping) else
                              [value.get("id"), value.get("name"), value.get("arn")])
                  if isinstance(v, str) and v and not is_unknown(v)}
        for candidate in self.of_type(type_):
            names = {candidate.id, candidate.urn, candidate.inputs.get("name"), candidate.inputs.get("arn")}
            if wanted & {n for n in names if isinstance(n, str) and n}:
                return candidate
        return None

    def resources(self) -> list[dict[str, Any]]:
        """The nodes as plain dicts (the plan JSON's `resources`)."""
        return [n.to_dict() for n in self.nodes]

    @property
    def projects(self) -> tuple[str, ...]:
        """The Pulumi projects the nodes' URNs name, in order of first appearance."""
        return tuple(dict.fromkeys(n.project for n in self.nodes if n.project))

    def of_project(self, project: str) -> "ResourceGraph":
        """One project's nodes as its own `pulumi preview` sees them: no fleet plan, no verdict."""
        return ResourceGraph(self.kind, self.stack, self.region, tuple(n for n in self.nodes if n.project == project),
                             None, None, self.path)


def _prop_deps(raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for key, urns in raw.items():
        if isinstance(urns, Mapping):  # the engine's {"urns": [...]} shape
            urns = urns.get("urns")
        vals = tuple(str(u) for u in listify(urns) if isinstance(u, str))
        if vals:
            out[str(key)] = vals
    return out


def node(urn: str, rtype: str = "", name: str = "", parent: Any = None, inputs: Any = None, *,
         id: Any = None, property_dependencies: Any = None, custom: bool = True) -> Node:
    return Node(
        urn=urn,
        type=rtype or type_of_urn(urn),
        name=name or name_of_urn(urn),
        parent=parent if isinstance(parent, str) and parent else None,
        inputs=to_plain(inputs) if isinstance(inputs, Mapping) else {},
        id=str(id) if isinstance(id, str) and id and not is_unknown(id) else None,
        custom=custom,
        property_dependencies=_prop_deps(property_dependencies),
    )


def nodes_from_resources(raw: Any, where: str = "plan") -> list[Node]:
    """The `resources` list of an offline plan (or any list of resource dicts)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InputError(f"{where}.resources", type(raw).__name__, "a list of {urn, type, name, parent, inputs}")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping) or not isinstance(r.get("urn", ""), str):
            raise InputError(f"{where}.resources[{i}]", r, "an object with urn, type, name, parent, inputs")
        rtype = str(r.get("type") or type_of_urn(r.get("urn", "")))
        if rtype == STACK_TYPE:
            continue
        out.append(node(str(r.get("urn", "")), rtype, str(r.get("name") or ""), r.get("parent"),
                        r.get("inputs") or {}, id=r.get("id"),
                        property_dependencies=r.get("propertyDependencies")))
    return out


def nodes_from_preview(doc: Mapping[str, Any], where: str = "preview") -> list[Node]:
    steps = doc.get("steps")
    if not isinstance(steps, list):
        raise InputError(f"{where}.steps", type(steps).__name__, "the steps list of `pulumi preview --json`")
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise InputError(f"{where}.steps[{i}]", step, "an object with op, urn, newState")
        if str(step.get("op", "")) in _GONE_OPS:
            continue
        state = step.get("newState") or {}
        if not isinstance(state, Mapping):
            continue
        urn = str(step.get("urn") or state.get("urn") or "")
        rtype = str(state.get("type") or type_of_urn(urn))
        if not rtype or rtype == STACK_TYPE:
            continue
        out.append(node(urn, rtype, "", state.get("parent"), state.get("inputs") or {}, id=state.get("id"),
                        property_dependencies=state.get("propertyDependencies"),
                        custom=bool(state.get("custom", True))))
    return out


def _config_value(value: Any) -> Any:
    if isinstance(value, Mapping) and "value" in value:
        return value["value"]
    return value


def _region_from_nodes(nodes: Iterable[Node]) -> str | None:
    for n in nodes:
        if n.type == AWS_PROVIDER:
            region = n.inputs.get("region")
            if isinstance(region, str) and not is_unknown(region):
                return region
    return None


def graph_of(doc: Any, path: str = "") -> ResourceGraph:
    """An offline plan or a preview digest as a ResourceGraph (InputError when it is neither)."""
    where = path or "document"
    if not isinstance(doc, Mapping):
        raise InputError(where, type(doc).__name__, "a JSON object: an offline plan or `pulumi preview --json` output")
    if "steps" in doc:
        nodes = nodes_from_preview(doc, where)
        config = doc.get("config") if isinstance(doc.get("config"), Mapping) else {}
        region = _config_value(config.get("aws:region")) if config else None
        region = region if isinstance(region, str) and not is_unknown(region) else _region_from_nodes(nodes)
        stack = str(doc.get("stack") or next((stack_of_urn(n.urn) for n in nodes if n.urn), ""))
        return ResourceGraph("preview", stack, region, tuple(nodes), None, None, path)
    if "plan" in doc or "resources" in doc:
        plan = doc.get("plan")
        if plan is not None and not isinstance(plan, Mapping):
            raise InputError(f"{where}.plan", type(plan).__name__, "the FleetPlan object (`size --json`)")
        nodes = nodes_from_resources(doc.get("resources"), where)
        region = doc.get("region") or (plan or {}).get("region") or _region_from_nodes(nodes)
        stack = doc.get("stack") or next((stack_of_urn(n.urn) for n in nodes if n.urn), "")
        policy = doc.get("policy") if isinstance(doc.get("policy"), Mapping) else None
        extras = {k: v for k, v in doc.items() if k in ("cost", "budget", "project", "tco")}
        return ResourceGraph("plan", str(stack), str(region) if region else None, tuple(nodes),
                             dict(plan) if plan else None, dict(policy) if policy else None, path, extras)
    raise InputError(
        where, "(object without plan, resources or steps)",
        "an offline plan ({stack, region, plan, resources}) or `pulumi preview --json` output ({steps})",
    )


def graph_from_resources(resources: Iterable[Mapping[str, Any]], region: str | None, *,
                         plan: Mapping[str, Any] | None = None, stack: str = "") -> ResourceGraph:
    """A graph of plain resource dicts (what the policy engine hands a stack policy)."""
    nodes = nodes_from_resources([dict(r) for r in resources])
    return ResourceGraph("plan" if plan else "preview", stack, region, tuple(nodes), dict(plan) if plan else None)


def load_graph(path: str | Path) -> ResourceGraph:
    return graph_of(read_json_file(path, "file", "plan JSON or preview JSON file"), str(path))


def json_documents(path: str | Path) -> list[tuple[str, Any]]:
    """(path, parsed JSON) of a file, or of every `*.json` file of a directory, in name order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.json"))
    elif p.exists():
        files = [p]
    else:
        raise InputError("path", str(path), "an existing plan/preview JSON file or a directory of them")
    return [(str(f), read_json_file(f, "file", "plan JSON or preview JSON file")) for f in files]
