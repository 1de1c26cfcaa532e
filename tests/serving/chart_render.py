"""The vllm-stack chart rendered for our values by Helm itself: the vendored 0.1.12 chart
(schemas/charts/vllm-stack/, verbatim) through Helm v4's library (`helm-python-sdk`, ctypes over
libhelm_c: no helm binary, nothing contacted). Pulumi's `helm.v3.Release` runs Helm 3's engine;
the template language and the values merge are the same.
"""
from __future__ import annotations

import functools
from typing import Any

import helm_python as helm
import yaml

from . import schema_check

CHART = "vllm-stack"
CHART_DIR = schema_check.SCHEMAS / "charts" / CHART
DEPLOYMENT_TEMPLATE = f"{CHART}/templates/deployment-vllm-multi.yaml"


@functools.lru_cache(maxsize=1)
def chart() -> helm.Chart:
    return helm.Chart.load(str(CHART_DIR))


def template(path: str) -> str:
    return schema_check.chart_file(CHART, path)


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key twice in one mapping (Kubernetes' decoder does too)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dupes = sorted({k for k in keys if keys.count(k) > 1}, key=str)
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"keys rendered twice: {dupes}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def render(values: dict, release: str, namespace: str, *, upgrade: bool = False) -> dict[str, list[dict]]:
    """template path -> the objects it renders (Helm validates `values` against the chart's
    values.schema.json first, as `helm install` does)."""
    chart().validate_schema(values)
    out = chart().render(values, name=release, namespace=namespace, is_install=not upgrade, is_upgrade=upgrade)
    return {path: [d for d in yaml.load_all(text, Loader=_StrictLoader) if d] for path, text in out.items()}


def objects(values: dict, release: str, namespace: str) -> list[dict]:
    return [obj for docs in render(values, release, namespace).values() for obj in docs]


def _merge_patch(base: Any, patch: Any) -> Any:
    """Server-side apply of our DeploymentPatch onto the rendered Deployment: maps merge,
    containers merge by name (their list-map key)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge_patch(base.get(key), value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        by_name = {x["name"]: x for x in base}
        for x in patch:
            by_name[x["name"]] = _merge_patch(by_name.get(x["name"], {}), x)
        return list(by_name.values())
    return patch


def engine_deployment(values: dict, patch: dict, release: str, namespace: str) -> dict:
    """The engine Deployment as the chart renders it, with our DeploymentPatch applied."""
    (deployment,) = render(values, release, namespace)[DEPLOYMENT_TEMPLATE]
    return _merge_patch(deployment, {"spec": patch["spec"]})


def upgrade_replicas(values: dict, release: str, namespace: str, live_replicas: int) -> int:
    """The replica count after `helm upgrade` with `values` while the HPA holds `live_replicas`.
    Helm's three-way merge patches what the new manifest sets where the live object differs
    (helm pkg/kube client.go, createPatch: a three-way strategic merge of the old manifest, the
    new one and the live object), so a rendered `replicas` is written back; an absent one is
    left to its owner."""
    (deployment,) = render(values, release, namespace, upgrade=True)[DEPLOYMENT_TEMPLATE]
    return deployment["spec"].get("replicas", live_replicas)
