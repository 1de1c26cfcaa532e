"""Validate the objects the serving layer authors against the vendored upstream schemas
(schemas/README.md, schemas/MANIFEST.json: verbatim copies at our pinned versions).

Two checks per object:
  * JSON Schema validation (types, enums, required fields, bounds) with jsonschema;
  * a strict unknown-field walk: structural CRD schemas rarely say `additionalProperties:
    false`, so any key not listed in a level's `properties` is reported, which turns a misspelt
    field name into a failing test instead of a field the API server silently drops.

CRDs are read from their CustomResourceDefinition documents: the `openAPIV3Schema` of the
version the object's apiVersion names (it must be served). CEL rules (`x-kubernetes-validations`)
are not evaluated here.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"
MANIFEST_FILE = SCHEMAS / "MANIFEST.json"
K8S_SCHEMA_FILE = SCHEMAS / "kubernetes" / "_definitions.json"

# apiVersion/kind -> definition in the Kubernetes OpenAPI.
K8S_DEFINITIONS = {
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("apps/v1", "DaemonSet"): "io.k8s.api.apps.v1.DaemonSet",
    ("batch/v1", "Job"): "io.k8s.api.batch.v1.Job",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
    ("scheduling.k8s.io/v1", "PriorityClass"): "io.k8s.api.scheduling.v1.PriorityClass",
    ("storage.k8s.io/v1", "StorageClass"): "io.k8s.api.storage.v1.StorageClass",
    ("networking.k8s.io/v1", "NetworkPolicy"): "io.k8s.api.networking.v1.NetworkPolicy",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("v1", "Namespace"): "io.k8s.api.core.v1.Namespace",
    ("v1", "ServiceAccount"): "io.k8s.api.core.v1.ServiceAccount",
    ("v1", "Secret"): "io.k8s.api.core.v1.Secret",
}
CLUSTER_SCOPED = {"PriorityClass", "Namespace", "GatewayClass", "StorageClass"}


@functools.lru_cache(maxsize=1)
def manifest() -> list[dict]:
    return json.loads(MANIFEST_FILE.read_text())


@functools.lru_cache(maxsize=1)
def _k8s_defs() -> dict:
    return json.loads(K8S_SCHEMA_FILE.read_text())


def _crd_documents(path: Path) -> list[dict]:
    """The CustomResourceDefinitions of a vendored file. Chart-templated CRDs (KEDA's) carry
    Helm directives on lines of their own in metadata: those lines are skipped when reading."""
    text = "\n".join(line for line in path.read_text().splitlines() if "{{" not in line)
    return [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "CustomResourceDefinition"]


@functools.lru_cache(maxsize=1)
def crd_kinds() -> dict[str, dict]:
    """kind -> {apiVersion (the storage version's), versions: {name: spec schema}, file}."""
    kinds: dict[str, dict] = {}
    for path in sorted((SCHEMAS / "crds").rglob("*.yaml")):
        for crd in _crd_documents(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            served = {v["name"]: v["schema"]["openAPIV3Schema"]["properties"]["spec"]
                      for v in crd["spec"]["versions"] if v.get("served")}
            storage = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
            kinds[kind] = {"group": group, "apiVersion": f"{group}/{storage}", "versions": served,
                           "file": path.relative_to(SCHEMAS).as_posix()}
    return kinds


@functools.lru_cache(maxsize=4)
def chart_values_schema(chart: str) -> dict:
    return json.loads((SCHEMAS / "charts" / chart / "values.schema.json").read_text())


def chart_file(chart: str, path: str) -> str:
    return (SCHEMAS / "charts" / chart / path).read_text()


def _resolve(schema: dict, defs: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def unknown_fields(instance: Any, schema: dict, path: str = "", defs: dict | None = None) -> list[str]:
    """Keys not declared at their level. `$ref`s point into `defs` (the Kubernetes
    definitions by default; CRD and chart schemas are self-contained)."""
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
    """A built-in kind against the strict Kubernetes v1.35 OpenAPI (or one `definition` of it)."""
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
        return [f"{kind}: no vendored CRD (add one to schemas/vendor.py)"]
    entry = kinds[kind]
    group, _, version = str(obj.get("apiVersion")).rpartition("/")
    if group != entry["group"] or version not in entry["versions"]:
        return [f"{kind}.apiVersion: {obj.get('apiVersion')!r}, the CRD serves "
                f"{sorted(entry['group'] + '/' + v for v in entry['versions'])}"]
    problems = []
    extra = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        problems.append(f"{kind}: unexpected top-level keys {sorted(extra)}")
    problems += _metadata_problems(obj)
    schema = entry["versions"][version]
    problems += _schema_errors(obj.get("spec"), schema, f"{kind}.spec")
    problems += unknown_fields(obj.get("spec"), schema, f"{kind}.spec", defs={})
    return problems


# Chart values the vllm-stack template copies with `toYaml` into a Kubernetes field, where the
# chart's schema lists less than Kubernetes accepts: validated as that Kubernetes type instead
# (path in the values -> definition; the template line is checked by test_charts.py).
CHART_PASSTHROUGH = {
    "vllm-stack": {
        ("servingEngineSpec", "containerSecurityContext"): "io.k8s.api.core.v1.SecurityContext",
        ("servingEngineSpec", "securityContext"): "io.k8s.api.core.v1.PodSecurityContext",
    },
}
# Values a chart template reads that its schema does not list (path -> the template text that
# reads it, checked by test_charts.py against the vendored template).
CHART_TEMPLATE_ONLY = {
    "vllm-stack": {
        ("servingEngineSpec", probe, "timeoutSeconds"): ("templates/_helpers.tpl", "{{- if .timeoutSeconds }}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    },
}


# Per-model values whose schema entry is not what the chart accepts: `modelSpec[].keda` is the
# ScaledObject's spec, which the template copies key by key (triggers as a list, although the
# schema, which Helm never sees, says object); the rendered ScaledObject is validated against
# KEDA's CRD instead (test_charts.py).
CHART_MODEL_RENDERED = {"vllm-stack": ("keda",)}


def _pop(values: dict, path: tuple[str, ...]) -> tuple[dict, Any]:
    node = values
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            return values, None
        node = node[key]
    return values, node.pop(path[-1], None)


def validate_chart_values(chart: str, values: dict) -> list[str]:
    import copy

    values = copy.deepcopy(values)
    problems: list[str] = []
    for path, definition in CHART_PASSTHROUGH.get(chart, {}).items():
        _, sub = _pop(values, path)
        if sub is not None:
            problems += [f"{chart}.{'.'.join(path)}: {p}" for p in validate_k8s(sub, definition)]
    for path in CHART_TEMPLATE_ONLY.get(chart, {}):
        _pop(values, path)
    for model in (values.get("servingEngineSpec") or {}).get("modelSpec") or []:
        for key in CHART_MODEL_RENDERED.get(chart, ()):
            model.pop(key, None)
    schema = chart_values_schema(chart)
    return problems + _schema_errors(values, schema, chart) + unknown_fields(values, schema, chart, defs={})


def validate(obj: dict) -> list[str]:
    if (obj.get("apiVersion"), obj.get("kind")) in K8S_DEFINITIONS:
        return validate_k8s(obj)
    return validate_crd(obj)
