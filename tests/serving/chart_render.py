"""The parts of vllm-stack 0.1.12's templates our values reach, rendered from the vendored
templates (schemas/charts/vllm-stack/). No helm binary exists here and `helm-python-sdk`
(Helm's library through a shared object) was not used: every rule below is read from the
vendored template text (the keys a template copies, the guard around `replicas`, the labels a
define emits), so a template that changes upstream changes what is rendered here.

Helm's values merge (chartutil.CoalesceValues): user maps merge over the chart's defaults key
by key, and a user `null` deletes the default key.
"""
from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from . import schema_check

CHART = "vllm-stack"
# The guards that decide which engine objects the chart renders (verbatim template lines).
DEPLOYMENT_GUARD = ("templates/deployment-vllm-multi.yaml",
                    '{{- if not (and (hasKey $modelSpec "raySpec") $modelSpec.raySpec.enabled) }}')
REPLICA_GUARD = ("templates/deployment-vllm-multi.yaml",
                 "{{- if not (and $modelSpec.keda $modelSpec.keda.enabled) }}\n  replicas: {{ $modelSpec.replicaCount }}")
SCALED_OBJECT_GUARD = ("templates/scaledobject-vllm.yaml",
                       '{{- if and (hasKey $modelSpec "keda") $modelSpec.keda.enabled }}\n'
                       '{{- if not (hasKey $modelSpec "raySpec") }}')
RAY_GUARD = ("templates/ray-cluster.yaml", '{{- if and (hasKey $modelSpec "raySpec") $modelSpec.raySpec.enabled }}')


def template(path: str) -> str:
    return schema_check.chart_file(CHART, path)


def chart_defaults() -> dict:
    return yaml.safe_load(template("values.yaml"))


def coalesce(user: Any, default: Any) -> Any:
    """Helm's merge of user values over chart defaults (nulls delete)."""
    if isinstance(user, dict) and isinstance(default, dict):
        out = copy.deepcopy(default)
        for key, value in user.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = coalesce(value, default.get(key))
        return out
    return copy.deepcopy(user)


def merged_values(values: dict) -> dict:
    return coalesce(values, chart_defaults())


def _guard(guard: tuple[str, str]) -> None:
    path, text = guard
    assert text in template(path), f"{path}: the guard {text!r} changed upstream"


def _truthy(node: dict, key: str) -> bool:
    return bool((node.get(key) or {}).get("enabled"))


def engine_objects(model_spec: dict) -> dict[str, bool]:
    """Which of the engine's objects the chart renders for one modelSpec entry, and whether
    the Deployment carries `replicas`."""
    for guard in (DEPLOYMENT_GUARD, REPLICA_GUARD, SCALED_OBJECT_GUARD, RAY_GUARD):
        _guard(guard)
    ray = "raySpec" in model_spec
    return {
        "Deployment": not (ray and _truthy(model_spec, "raySpec")),
        "replicas": not _truthy(model_spec, "keda"),
        "ScaledObject": "keda" in model_spec and _truthy(model_spec, "keda") and not ray,
        "RayCluster": ray and _truthy(model_spec, "raySpec"),
    }


def upgrade_replicas(model_spec: dict, live_replicas: int) -> int:
    """The replica count after `helm upgrade` with these values while the HPA holds
    `live_replicas`: a rendered count is applied by Helm's three-way merge (the live value
    differs from the new manifest), an absent one is left to its owner."""
    # `replicas: {{ .replicaCount }}` with no value renders null: the API server defaults it to 1.
    return (model_spec.get("replicaCount") or 1) if engine_objects(model_spec)["replicas"] else live_replicas


def _define_labels(name: str, **context: str) -> list[tuple[str, str]]:
    """The `key: value` lines a label define of _helpers.tpl emits (includes followed)."""
    text = template("templates/_helpers.tpl")
    body = re.search(r'{{- define "' + re.escape(name) + r'" -}}\n(.*?)\n{{- end -}}', text, re.S).group(1)
    pairs: list[tuple[str, str]] = []
    for line in body.splitlines():
        inc = re.search(r'include "([\w.]+)"', line)
        if inc:
            pairs += _define_labels(inc.group(1), **context)
            continue
        key, _, value = line.partition(": ")
        value = re.sub(r"{{ \.(\w+) }}", lambda m: context[m.group(1)], value.strip())
        pairs.append((key.strip(), value))
    return pairs


def selector_labels(values: dict, release: str) -> list[tuple[str, str]]:
    """The engine Deployment's selector, in render order (a key twice is a duplicate)."""
    v = merged_values(values)["servingEngineSpec"]
    (model,) = v["modelSpec"]
    pairs = [("model", model["name"]), ("helm-release-name", release)]
    pairs += _define_labels("chart.engineStandardLabels", releaseName=release, modelName=model["name"],
                            chartName=CHART)
    pairs += [(k, str(val)) for k, val in (v.get("labels") or {}).items()]  # chart.engineLabels
    return pairs
