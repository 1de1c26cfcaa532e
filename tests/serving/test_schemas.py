"""Every Kubernetes object the serving layer authors validates against its published schema,
and a misspelt field name fails (the strict unknown-field walk)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from infra.program.serving import (
    autoscaling,
    ingress,
    namespace_manifests,
    network,
    observability,
    vllm,
    warm_pool,
    weights_tier,
)
from infra.program.serving.spec import ServingSpec

from . import schema_check
from .support import TAGS, spec_for

BUILDERS = {
    "serving-priority-class": lambda s: vllm.serving_priority_class(s),
    "pod-disruption-budget": lambda s: vllm.pod_disruption_budget(s),
    "placeholder-priority-class": lambda s: warm_pool.placeholder_priority_class(s),
    "placeholder-deployment": lambda s: warm_pool.placeholder_deployment(s),
    "scaled-object": lambda s: autoscaling.scaled_object(s),
    "envoy-proxy": lambda s: ingress.envoy_proxy(s, TAGS),
    "gateway-class": lambda s: ingress.gateway_class(s),
    "gateway": lambda s: ingress.gateway(s),
    "http-route": lambda s: ingress.http_route(s),
    "security-policy": lambda s: ingress.security_policy(s),
    "backend-traffic-policy": lambda s: ingress.backend_traffic_policy(s),
    "client-traffic-policy": lambda s: ingress.client_traffic_policy(s),
    "health-route": lambda s: ingress.health_route(s),
    "health-traffic-policy": lambda s: ingress.health_traffic_policy(s),
    "pod-monitor": lambda s: observability.vllm_pod_monitor(s),
    "service-monitor": lambda s: observability.dcgm_service_monitor(s),
    "prometheus-rule": lambda s: observability.prometheus_rule(s),
    "dashboard-config-map": lambda s: observability.dashboard_config_map(s),
    "hydrator-service-account": lambda s: weights_tier.hydrator_manifests(s)[0],
    "hydrator-daemonset": lambda s: weights_tier.hydrator_manifests(s)[1],
    **{f"network-policy-{i}": (lambda s, i=i: network.network_policies(s)[i]) for i in range(5)},
}


@pytest.mark.parametrize("variant", ["prod", "8b-tp1"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_object_validates(name: str, variant: str):
    obj = BUILDERS[name](spec_for(variant))
    assert schema_check.validate(obj) == []


def test_namespaces_validate(prod_spec: ServingSpec):
    for ns in namespace_manifests(prod_spec):
        assert schema_check.validate(ns) == []


def test_deployment_patch_is_a_valid_pod_spec(any_spec: ServingSpec):
    patch = vllm.deployment_patch(any_spec)
    assert schema_check.validate_k8s(patch["spec"]["template"]["spec"], "io.k8s.api.core.v1.PodSpec") == []
    assert set(patch["spec"]) == {"template"} and set(patch["spec"]["template"]) == {"spec"}


def test_vllm_chart_values_validate(any_spec: ServingSpec):
    assert schema_check.validate_chart_values("vllm-stack", vllm.vllm_stack_values(any_spec)) == []


def _deepest_key_path(obj, path=()):
    """The longest path to a dict key whose value is a scalar (a field name we can misspell)."""
    best = ()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("labels", "annotations", "matchLabels", "data", "nodeSelector", "metadata") or "/" in k:
                continue
            here = path + (k,)
            leaf = not isinstance(v, (dict, list)) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            if leaf and len(here) > len(best):
                best = here
            deeper = _deepest_key_path(v, here)
            if len(deeper) > len(best):
                best = deeper
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            deeper = _deepest_key_path(v, path + (i,))
            if len(deeper) > len(best):
                best = deeper
    return best


def _misspell(obj: dict, path: tuple) -> dict:
    out = copy.deepcopy(obj)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1] + "Typo"] = node.pop(path[-1])
    return out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_misspelt_field_fails(name: str):
    obj = BUILDERS[name](spec_for("prod"))
    target = obj.get("spec", obj) if isinstance(obj.get("spec"), dict) else obj
    path = _deepest_key_path(target)
    assert path, f"{name}: no field to misspell"
    full = (("spec",) if target is not obj else ()) + path
    problems = schema_check.validate(_misspell(obj, full))
    assert problems, f"{name}: renaming {'.'.join(map(str, full))} went unnoticed"


def test_misspelt_chart_value_fails(prod_spec: ServingSpec):
    values = vllm.vllm_stack_values(prod_spec)
    bad = copy.deepcopy(values)
    bad["servingEngineSpec"]["modelSpec"][0]["vllmConfig"]["tensorParalelSize"] = 8
    assert any("tensorParalelSize" in p for p in schema_check.validate_chart_values("vllm-stack", bad))


def test_vendored_files_are_the_upstream_copies_recorded_in_the_manifest():
    """Every vendored schema, CRD and chart file is byte for byte the upstream file the manifest
    names (repository, tag, path, sha256): never hand-edited."""
    import hashlib

    entries = {e["file"]: e for e in schema_check.manifest()}
    ours = {"README.md", "MANIFEST.json", "vendor.py"}
    on_disk = {rel for rel in (p.relative_to(schema_check.SCHEMAS).as_posix() for p in schema_check.SCHEMAS.rglob("*")
                               if p.is_file() and "__pycache__" not in p.parts)
               if rel not in ours and not rel.startswith("vllm/")}
    assert on_disk == set(entries)
    for name, e in entries.items():
        assert hashlib.sha256((schema_check.SCHEMAS / name).read_bytes()).hexdigest() == e["sha256"], name
        assert e["repository"] and e["ref"] and e["path"], name
    readme = (schema_check.SCHEMAS / "README.md").read_text()
    assert all(f"`{e['repository']}`" in readme and e["ref"] in readme for e in entries.values())


def test_the_pinned_versions_are_the_vendored_ones():
    from infra.core.catalog.charts import chart, image

    refs = {e["repository"]: e["ref"] for e in schema_check.manifest()}
    assert refs["kedacore/charts"] == "v" + chart("keda").version
    assert refs["envoyproxy/gateway"] == chart("gateway-helm").version
    assert refs["vllm-project/production-stack"] == f"vllm-stack-{chart('vllm-stack').version}"
    assert refs["prometheus-community/helm-charts"] == f"kube-prometheus-stack-{chart('kube-prometheus-stack').version}"
    flags = json.loads((schema_check.SCHEMAS / "vllm" / f"flags-{image('vllm').tag.lstrip('v')}.json").read_text())
    assert flags["vllm"] == image("vllm").tag.lstrip("v")


def test_retry_after_uses_the_field_envoy_gateway_has():
    """`responseOverride[].response.header` is the v1.9.0 field (an HTTPHeaderFilter); the
    `responseHeaderModifier` the old hand-edited schema accepted is pruned by the API server."""
    obj = ingress.backend_traffic_policy(spec_for("prod"))
    assert schema_check.validate(obj) == []
    bad = copy.deepcopy(obj)
    for override in bad["spec"]["responseOverride"]:
        override["response"]["responseHeaderModifier"] = override["response"].pop("header")
    assert any("responseHeaderModifier: unknown field" in p for p in schema_check.validate(bad))


def test_every_custom_resource_registered_validates(serving_run):
    """What `plan --stack prod` registers (the mocked Serving): each custom resource's inputs
    against its CRD, each built-in kind's against the Kubernetes OpenAPI."""
    checked = 0
    for r in serving_run.resources:
        api, kind = r.inputs.get("apiVersion"), r.inputs.get("kind")
        if not (r.type.startswith("kubernetes:") and api and kind) or r.type.endswith("Patch"):
            continue
        builtin = (api, kind) in schema_check.K8S_DEFINITIONS
        if not builtin and kind not in schema_check.crd_kinds():
            continue
        obj = dict(r.inputs) if builtin else {k: r.inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")
                                              if k in r.inputs}
        assert schema_check.validate(obj) == [], (kind, obj["metadata"].get("name"))
        checked += 1
    assert checked >= 12


def test_every_crd_kind_we_write_has_a_schema(serving_run):
    kinds = {r.type.rsplit(":", 1)[1] for r in serving_run.resources
             if r.type.startswith("kubernetes:") and r.custom and "/" in r.type.split(":")[1]
             and r.type.split(":")[1].split("/")[0].count(".") >= 1 and not r.type.startswith("kubernetes:helm.sh")}
    builtin = {"Deployment", "DaemonSet", "DeploymentPatch", "PodDisruptionBudget", "PriorityClass", "StorageClass",
               "NetworkPolicy"}
    assert kinds - builtin <= set(schema_check.crd_kinds()), kinds - builtin - set(schema_check.crd_kinds())
    assert Path(schema_check.K8S_SCHEMA_FILE).is_file()
