"""Validate the objects the serving layer authors against vendored schemas (schemas/README.md).

Two checks per object:
  * JSON Schema validation (types, enums, required fields, bounds) with jsonschema;
  * a strict unknown-field walk: structural CRD schemas rarely say `additionalProperties:
    false`, so any key not listed in a level's `properties` is reported, which turns a misspelt
    field name into a failing test instead of a field the API server silently drops.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S_SCHEMA_FILE = SCHEMAS / "kubernetes-v1.33-strict.json"

# apiVersion/kind -> definition in the Kubernetes OpenAPI.
K8S_DEFINITIONS = {
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("apps/v1", "DaemonSet"): "io.k8s.api.apps.v1.DaemonSet",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
    ("scheduling.k8s.io/v1", "PriorityClass"): "io.k8s.api.scheduling.v1.PriorityClass",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("v1", "Namespace"): "io.k8s.api.core.v1.Namespace",
    ("v1", "ServiceAccount"): "io.k8s.api.core.v1.ServiceAccount",
}
CLUSTER_SCOPED = {"PriorityClass", "Namespace", "GatewayClass"}


@functools.lru_cache(maxsize=1)
def _k8s_defs() -> dict:
    return json.loads(K8S_SCHEMA_FILE.read_text())


@functools.lru_cache(maxsize=1)
def crd_kinds() -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    for path in sorted((SCHEMAS / "crds").glob("*.yaml")):
        for kind, entry in (yaml.safe_load(path.read_text())["kinds"]).items():
            kinds[kind] = {**entry, "file": path.name}
    return kinds


@functools.lru_cache(maxsize=4)
def chart_values_schema(chart: str) -> dict:
    return yaml.safe_load((SCHEMAS / "charts" / f"{chart}.yaml").read_text())["schema"]


def _resolve(schema: dict, defs: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def unknown_fields(instance: Any, schema: dict, path: str = "", defs: dict | None = None) -> list[str]:
    """Keys not declared at their level. `$ref`s point into the Kubernetes definitions (CRDs
    embed core types such as TopologySpreadConstraint; the trimmed copies reference them)."""
    problems: list[str] = []
    defs = defs if defs is not None else _k8s_defs()["$defs"]
    schema = _resolve(schema, defs)
    if not isinstance(schema, dict):
        return problems
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        problems += unknown_fields(instance, branch, path, defs)
    if isinstance(instance, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is not None:
            for key, value in instance.items():
                if key in props:
                    problems += unknown_fields(value, props[key], f"{path}.{key}", defs)
                elif isinstance(extra, dict):
                    problems += unknown_fields(value, extra, f"{path}.{key}", defs)
                elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                    continue
                else:
                    problems.append(f"{path}.{key}: unknown field (known here: {', '.join(sorted(props))})")
        elif isinstance(extra, dict):
            for key, value in instance.items():
                problems += unknown_fields(value, extra, f"{path}.{key}", defs)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            problems += unknown_fields(item, schema["items"], f"{path}[{i}]", defs)
    return problems


def _schema_errors(instance: Any, schema: dict, path: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{path}{'.' if e.absolute_path else ''}{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]


def _metadata_problems(obj: dict) -> list[str]:
    meta = obj.get("metadata") or {}
    problems = []
    if not meta.get("name"):
        problems.append("metadata.name: missing")
    if obj.get("kind") not in CLUSTER_SCOPED and not meta.get("namespace"):
        problems.append("metadata.namespace: missing (namespaced kind)")
    if obj.get("kind") in CLUSTER_SCOPED and meta.get("namespace"):
        problems.append("metadata.namespace: set on a cluster-scoped kind")
    return problems


def validate_k8s(obj: dict, definition: str | None = None) -> list[str]:
    """A built-in kind against the strict Kubernetes v1.33 OpenAPI (or one `definition` of it)."""
    doc = _k8s_defs()
    name = definition or K8S_DEFINITIONS[(obj["apiVersion"], obj["kind"])]
    schema = {"$schema": doc["$schema"], "$defs": doc["$defs"], "$ref": f"#/$defs/{name}"}
    problems = _schema_errors(obj, schema, obj.get("kind", name))
    if definition is None:
        problems += _metadata_problems(obj)
    return problems


def validate_crd(obj: dict) -> list[str]:
    kinds = crd_kinds()
    kind = obj.get("kind")
    if kind not in kinds:
        return [f"{kind}: no vendored schema (add one under schemas/crds/)"]
    entry = kinds[kind]
    problems = []
    if obj.get("apiVersion") != entry["apiVersion"]:
        problems.append(f"{kind}.apiVersion: {obj.get('apiVersion')!r}, the CRD serves {entry['apiVersion']!r}")
    extra = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        problems.append(f"{kind}: unexpected top-level keys {sorted(extra)}")
    problems += _metadata_problems(obj)
    k8s = _k8s_defs()
    schema = {**entry["spec"], "$schema": k8s["$schema"], "$defs": k8s["$defs"]}
    problems += _schema_errors(obj.get("spec"), schema, f"{kind}.spec")
    problems += unknown_fields(obj.get("spec"), entry["spec"], f"{kind}.spec")
    return problems


def validate_chart_values(chart: str, values: dict) -> list[str]:
    schema = chart_values_schema(chart)
    return _schema_errors(values, schema, chart) + unknown_fields(values, schema, chart)


def validate(obj: dict) -> list[str]:
    if (obj.get("apiVersion"), obj.get("kind")) in K8S_DEFINITIONS:
        return validate_k8s(obj)
    return validate_crd(obj)
