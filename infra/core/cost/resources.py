"""One normalised resource list from either source the cost model and the policies read.

Two documents describe a stack:

* the offline plan (`python -m infra plan --stack S --json FILE`):
  `{"stack", "region", "plan": FleetPlan.to_dict(), "resources": [{"urn", "type", "name",
  "parent", "inputs"}], ...}`;
* a real `pulumi preview --json`: `{"config", "steps": [{"op", "urn", "newState": {"type",
  "inputs", "parent"}, ...}], ...}`.

Both become a `Document` whose `resources` are plain dicts `{"urn", "type", "name", "parent",
"inputs"}` with the inputs as the engine sees them (camelCase keys, pulumi-aws 7 tokens).
Pure: no pulumi, no boto3.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from infra.core.errors import InputError
from infra.core.files import read_json_file

# What `pulumi preview --json` prints for a value not known until apply (pkg/display/json.go)
# and for a secret.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET = "[secret]"

# Steps whose resource is gone after the update: not part of the stack's future cost.
_GONE_OPS = {"delete", "delete-replaced", "discard", "discard-replaced", "read-discard", "remove-pending-replace"}

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
        return int(d) if d == d.to_integral_value() else None
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


def stack_of_urn(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<type chain>::<name>
    parts = urn.split("::")
    head = parts[0].split(":") if parts else []
    return head[2] if len(head) >= 3 else ""


def name_of_urn(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


def type_of_urn(urn: str) -> str:
    parts = urn.split("::")
    if len(parts) < 4:
        return ""
    return parts[2].rsplit("$", 1)[-1]


@dataclass(frozen=True)
class Document:
    """A stack described by an offline plan or a preview digest."""

    kind: str  # "plan" | "preview"
    stack: str
    region: str | None
    resources: tuple[dict, ...]
    plan: dict | None = None  # FleetPlan.to_dict() when the document is an offline plan
    policy: dict | None = None  # the plan's own policy verdict, when present
    path: str = ""
    extras: dict = field(default_factory=dict)

    def of_type(self, *types: str) -> list[dict]:
        return [r for r in self.resources if r["type"] in types]


def _resource(urn: str, rtype: str, name: str, parent: Any, inputs: Any) -> dict:
    return {
        "urn": urn,
        "type": rtype or type_of_urn(urn),
        "name": name or name_of_urn(urn),
        "parent": parent if isinstance(parent, str) else None,
        "inputs": to_plain(inputs) if isinstance(inputs, Mapping) else {},
    }


def _is_internal(rtype: str) -> bool:
    return rtype == "pulumi:pulumi:Stack"


def resources_from_plan(doc: Mapping[str, Any], where: str = "plan") -> list[dict]:
    raw = doc.get("resources")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InputError(f"{where}.resources", type(raw).__name__, "a list of {urn, type, name, parent, inputs}")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping) or not isinstance(r.get("urn", ""), str):
            raise InputError(f"{where}.resources[{i}]", r, "an object with urn, type, name, parent, inputs")
        rtype = str(r.get("type") or type_of_urn(r.get("urn", "")))
        if _is_internal(rtype):
            continue
        out.append(_resource(str(r.get("urn", "")), rtype, str(r.get("name") or ""), r.get("parent"), r.get("inputs") or {}))
    return out


def resources_from_preview(doc: Mapping[str, Any], where: str = "preview") -> list[dict]:
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
        if not rtype or _is_internal(rtype):
            continue
        out.append(_resource(urn, rtype, "", state.get("parent"), state.get("inputs") or {}))
    return out


def _config_value(value: Any) -> Any:
    if isinstance(value, Mapping) and "value" in value:
        return value["value"]
    return value


def _region_from_resources(resources: Iterable[dict]) -> str | None:
    for r in resources:
        if r["type"] == "pulumi:providers:aws":
            region = r["inputs"].get("region")
            if isinstance(region, str) and not is_unknown(region):
                return region
    return None


def normalise(doc: Any, path: str = "") -> Document:
    """An offline plan or a preview digest as a Document (InputError when it is neither)."""
    where = path or "document"
    if not isinstance(doc, Mapping):
        raise InputError(where, type(doc).__name__, "a JSON object: an offline plan or `pulumi preview --json` output")
    if "steps" in doc:
        resources = resources_from_preview(doc, where)
        config = doc.get("config") if isinstance(doc.get("config"), Mapping) else {}
        region = _config_value(config.get("aws:region")) if config else None
        region = region if isinstance(region, str) and not is_unknown(region) else _region_from_resources(resources)
        stack = next((stack_of_urn(r["urn"]) for r in resources if r["urn"]), "")
        stack = str(doc.get("stack") or stack)
        return Document("preview", stack, region, tuple(resources), None, None, path)
    if "plan" in doc or "resources" in doc:
        plan = doc.get("plan")
        if plan is not None and not isinstance(plan, Mapping):
            raise InputError(f"{where}.plan", type(plan).__name__, "the FleetPlan object (`size --json`)")
        resources = resources_from_plan(doc, where)
        region = doc.get("region") or (plan or {}).get("region") or _region_from_resources(resources)
        stack = doc.get("stack") or next((stack_of_urn(r["urn"]) for r in resources if r["urn"]), "")
        policy = doc.get("policy") if isinstance(doc.get("policy"), Mapping) else None
        extras = {k: v for k, v in doc.items() if k in ("cost", "budget")}
        return Document(
            "plan", str(stack), str(region) if region else None, tuple(resources),
            dict(plan) if plan else None, dict(policy) if policy else None, path, extras,
        )
    raise InputError(
        where, "(object without plan, resources or steps)",
        "an offline plan ({stack, region, plan, resources}) or `pulumi preview --json` output ({steps})",
    )


def load_document(path: str | Path) -> Document:
    return normalise(read_json_file(path, "file", "plan JSON or preview JSON file"), str(path))


def load_documents(path: str | Path) -> dict[str, Document]:
    """A file (one stack) or a directory of `*.json` files (one per stack), keyed by stack."""
    p = Path(path)
    if p.is_dir():
        docs = [load_document(f) for f in sorted(p.glob("*.json"))]
    elif p.exists():
        docs = [load_document(p)]
    else:
        raise InputError("path", str(path), "an existing plan/preview JSON file or a directory of them")
    out: dict[str, Document] = {}
    for d in docs:
        key = d.stack or Path(d.path).stem
        if key in out:
            raise InputError("path", d.path, f"one document per stack; stack {key!r} appears twice")
        out[key] = d
    return out


# --- helpers shared by the cost model and the policies -------------------------------------

_AZ_RE = re.compile(
    r"\b((?:us|eu|ap|sa|ca|me|af|il|mx)-(?:gov-|iso-|isob-)?"
    r"(?:north|south|east|west|central|northeast|southeast|northwest|southwest)-\d+[a-z])\b"
)
_AZ_ID_RE = re.compile(r"\b([a-z]{2,4}\d-az\d+)\b")
_ZONE_KEYS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone", "llm-fleet/az", "llm-fleet:az",
              "zone", "az", "availability-zone", "availability_zone")


def az_of(resource: Mapping[str, Any]) -> str | None:
    """The availability zone a resource lives in, from its inputs, labels, tags or name."""
    inputs = resource.get("inputs") or {}
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
    name = str(resource.get("name") or "")
    m = _AZ_RE.search(name) or _AZ_ID_RE.search(name)
    return m.group(1) if m else None


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


def listify(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or isinstance(value, Mapping):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    return [value]
