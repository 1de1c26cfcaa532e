"""Every Kubernetes object the serving layer authors validates against its published schema,
and a misspelt field name fails (the strict unknown-field walk)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from infra.program.serving import autoscaling, ingress, namespace_manifests, observability, vllm, warm_pool, weights_tier
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
            if not isinstance(v, (dict, list)) and len(here) > len(best):
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


def test_readme_lists_every_vendored_schema():
    readme = (schema_check.SCHEMAS / "README.md").read_text()
    files = [p.relative_to(schema_check.SCHEMAS).as_posix() for p in schema_check.SCHEMAS.rglob("*")
             if p.is_file() and p.suffix in (".json", ".yaml")]
    assert files and all(f"`{f}`" in readme for f in files), files


def test_every_crd_kind_we_write_has_a_schema(serving_run):
    kinds = {r.type.rsplit(":", 1)[1] for r in serving_run.resources
             if r.type.startswith("kubernetes:") and r.custom and "/" in r.type.split(":")[1]
             and r.type.split(":")[1].split("/")[0].count(".") >= 1 and not r.type.startswith("kubernetes:helm.sh")}
    builtin = {"Deployment", "DaemonSet", "DeploymentPatch", "PodDisruptionBudget", "PriorityClass", "StorageClass"}
    assert kinds - builtin <= set(schema_check.crd_kinds()), kinds - builtin - set(schema_check.crd_kinds())
    assert Path(schema_check.K8S_SCHEMA_FILE).is_file()
