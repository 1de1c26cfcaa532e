"""Helpers the rules share: reading props (plain dicts offline, proxies in the engine), tags,
IAM policy documents, config with schema defaults.

In `pulumi preview` the engine hands `args.props` as read-only Mapping/Sequence proxies that
raise `UnknownValueError` on values not known yet; the engine turns that into an advisory
"can't run policy during preview" note, so the rules let it propagate. Offline documents mark
unknowns with `infra.core.graph.UNKNOWN`; the rules treat those as "cannot tell: pass".
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Sequence

from infra.core.graph import as_bool, as_int, is_unknown, json_document, listify, to_plain

__all__ = [
    "as_bool", "as_int", "is_unknown", "json_document", "listify", "to_plain", "get", "mapping", "seq",
    "config_with_defaults", "statements", "actions_of", "resources_of", "principal_services", "is_gpu_type",
    "GPU_FAMILY_RE",
]

# Accelerated instance families: anything here is a GPU/accelerator node group even when the
# catalog does not know the type (a new type must not slip past the allowlist or the cap).
GPU_FAMILY_RE = re.compile(r"^(p\d+[a-z]*|p\d+-[a-z0-9]+|g\d+[a-z]*|gr\d+|trn\d+[a-z]*|inf\d+|dl\d+[a-z]*)\.")


def get(props: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    cur: Any = props
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    return cur


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def seq(value: Any) -> list:
    return listify(value)


def config_with_defaults(schema_properties: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any] | None) -> dict:
    """Policy config over the schema's defaults (the Pulumi CLI applies them the same way)."""
    out = {k: v["default"] for k, v in schema_properties.items() if "default" in v}
    out.update(dict(config or {}))
    return out


def is_gpu_type(instance_type: str, catalog_types: Any = ()) -> bool:
    return instance_type in catalog_types or bool(GPU_FAMILY_RE.match(instance_type))


def statements(document: Any) -> Iterator[Mapping[str, Any]]:
    doc = json_document(document)
    if not isinstance(doc, Mapping):
        return
    for st in listify(doc.get("Statement")):
        if isinstance(st, Mapping):
            yield st


def actions_of(statement: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in listify(statement.get("Action"))]


def resources_of(statement: Mapping[str, Any]) -> list[str]:
    return [str(r) for r in listify(statement.get("Resource"))]


def principal_services(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if isinstance(principal, Mapping):
        return [str(s) for s in listify(principal.get("Service"))]
    return []


def federated_principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if isinstance(principal, Mapping):
        return [str(s) for s in listify(principal.get("Federated"))]
    return []


def condition_values(statement: Mapping[str, Any], operators: Sequence[str], key_suffix: str) -> list[str]:
    """Values of condition keys ending in `key_suffix` under the given operators."""
    out: list[str] = []
    cond = statement.get("Condition")
    if not isinstance(cond, Mapping):
        return out
    for op in operators:
        block = cond.get(op)
        if isinstance(block, Mapping):
            for key, value in block.items():
                if str(key).endswith(key_suffix):
                    out += [str(v) for v in listify(value)]
    return out
