"""The chart catalog: one row per chart with source and date, read by a pure lookup."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.core.catalog.charts import chart, image, load_chart_catalog, parse_chart_catalog
from infra.core.errors import InputError


def test_every_row_has_version_source_and_date():
    catalog = load_chart_catalog()
    assert set(catalog.charts) >= {"vllm-stack", "keda", "gateway-helm", "nvidia-device-plugin", "dcgm-exporter",
                                   "aws-efa-k8s-device-plugin", "cluster-autoscaler", "kube-prometheus-stack"}
    for ref in catalog.charts.values():
        assert ref.version and ref.source and ref.date.startswith("20"), ref


def test_reference_versions():
    # ../shared/REFERENCE.md's table.
    assert chart("vllm-stack").version == "0.1.12"
    assert chart("keda").version == "2.20.2"
    assert chart("gateway-helm").version == "v1.9.0"
    assert chart("nvidia-device-plugin").version == "0.20.0"
    assert chart("dcgm-exporter").version == "4.8.2"
    assert chart("kube-prometheus-stack").version.startswith("82.")


def test_oci_and_https_charts():
    eg = chart("gateway-helm")
    assert eg.is_oci and eg.release_chart == "oci://docker.io/envoyproxy/gateway-helm" and eg.repository_url is None
    keda = chart("keda")
    assert not keda.is_oci and keda.release_chart == "keda" and keda.repository_url == "https://kedacore.github.io/charts"


def test_images():
    assert image("vllm").ref == "docker.io/vllm/vllm-openai:v0.18.0"
    ca = image("cluster-autoscaler")
    assert ca.tag_for_kubernetes("1.33") == "v1.33.1" and ca.tag_for_kubernetes("1.33.4") == "v1.33.1"
    with pytest.raises(InputError, match="1.29"):
        ca.tag_for_kubernetes("1.29")
    with pytest.raises(InputError, match="a tag"):
        _ = ca.ref


@pytest.mark.parametrize("doc, message", [
    ({"charts": {"x": {"repository": "https://a", "chart": "x", "version": "1"}}}, "missing source, date"),
    ({"charts": {"x": {"repository": "http://a", "chart": "x", "version": "1", "source": "s", "date": "d"}}}, "https://"),
    ({"images": {"y": {"repository": "r", "tag": "latest", "source": "s", "date": "d"}}}, "latest"),
    ({"images": {"y": {"repository": "r", "source": "s", "date": "d"}}}, "exactly one"),
])
def test_bad_rows_are_refused(doc, message):
    with pytest.raises(InputError, match=message):
        parse_chart_catalog(doc)


def test_unknown_key_names_the_choices():
    with pytest.raises(InputError, match="keda"):
        chart("kedaa")


def test_lookup_is_pure():
    code = "import sys, infra.core.catalog.charts; print(','.join(m for m in ('pulumi', 'boto3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# --- vllm-stack 0.1.12 rendered by Helm's library (tests/serving/chart_render.py) --------------

def _render(spec, values=None):
    from infra.program.serving import vllm

    from . import chart_render

    values = vllm.vllm_stack_values(spec) if values is None else values
    return chart_render.render(values, spec.defaults.vllm_release, spec.namespace)


def test_the_chart_renders_our_scaled_object_and_a_deployment_without_replicas(any_spec):
    """One owner of the replica count: the HPA of the ScaledObject the chart renders from
    `modelSpec.keda`; the Deployment then has no `replicas`."""
    from infra.program.serving import autoscaling

    from . import chart_render, schema_check

    rendered = _render(any_spec)
    kinds = sorted(o["kind"] for docs in rendered.values() for o in docs)
    assert kinds == ["Deployment", "ScaledObject", "Secret", "Service"], kinds
    (deployment,) = rendered[chart_render.DEPLOYMENT_TEMPLATE]
    assert deployment["metadata"]["name"] == any_spec.deployment_name
    assert "replicas" not in deployment["spec"]
    (so,) = rendered["vllm-stack/templates/scaledobject-vllm.yaml"]
    expected = autoscaling.scaled_object(any_spec)
    assert so["spec"] == expected["spec"]
    assert {k: so["metadata"][k] for k in ("name", "namespace")} == expected["metadata"]
    assert schema_check.validate({k: so[k] for k in ("apiVersion", "kind", "metadata", "spec")}) == []


def test_an_upgrade_during_a_burst_keeps_the_hpas_count(any_spec):
    """`pulumi up` (a Helm upgrade) while the HPA holds more than the baseline leaves the count;
    the chart's default handling (replicaCount, no keda) would write the baseline back."""
    from infra.program.serving import vllm

    from . import chart_render

    plan, release, ns = any_spec.plan, any_spec.defaults.vllm_release, any_spec.namespace
    values = vllm.vllm_stack_values(any_spec)
    burst = plan.replicas_max + 6  # any count the HPA holds
    assert chart_render.upgrade_replicas(values, release, ns, burst) == burst
    (model,) = values["servingEngineSpec"]["modelSpec"]
    legacy = {k: v for k, v in model.items() if k != "keda"} | {"replicaCount": plan.replicas_baseline}
    values["servingEngineSpec"]["modelSpec"] = [legacy]
    assert chart_render.upgrade_replicas(values, release, ns, burst) == plan.replicas_baseline != burst


def test_helm_does_not_validate_against_the_charts_stale_values_schema():
    """vllm-stack 0.1.12's values.schema.json types `modelSpec.keda.triggers` as an object (a list
    in 0.1.9 and 0.1.10), which would refuse the list KEDA reads; but the chart's .helmignore
    leaves that file out, so the chart Helm loads (and packages) has no schema."""
    from . import chart_render

    assert "values.schema.json" in chart_render.template(".helmignore").splitlines()
    assert chart_render.chart().schema is None
    schema = json.loads(chart_render.template("values.schema.json"))
    keda = schema["properties"]["servingEngineSpec"]["properties"]["modelSpec"]["items"]["properties"]["keda"]
    assert keda["properties"]["triggers"]["type"] == "object"


def test_engine_selector_labels_are_clean(any_spec):
    """The Deployment's selector (immutable) carries no chart example labels and no key twice
    (chart_render's YAML loader refuses duplicates), and the labels our PDB, PodMonitor,
    NetworkPolicy and spread select on."""
    import yaml

    from infra.program.serving import vllm

    from . import chart_render

    (deployment,) = _render(any_spec)[chart_render.DEPLOYMENT_TEMPLATE]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not {"environment", "release"} & set(selector)
    assert any_spec.vllm_pod_labels.items() <= selector.items()
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # The chart's example labels are there without our nulls, and our old labels rendered twice.
    values = vllm.vllm_stack_values(any_spec)
    values["servingEngineSpec"]["labels"] = {}
    (bare,) = _render(any_spec, values)[chart_render.DEPLOYMENT_TEMPLATE]
    assert {"environment", "release"} <= set(bare["spec"]["selector"]["matchLabels"])
    values["servingEngineSpec"]["labels"] = {"app.kubernetes.io/part-of": "llm-fleet"}
    with pytest.raises(yaml.constructor.ConstructorError, match="rendered twice"):
        _render(any_spec, values)


def test_chart_values_outside_the_charts_schema_are_read_by_its_templates():
    """schema_check validates some values as Kubernetes types or lets them pass because the
    chart's template copies or reads them although its schema does not list them."""
    from . import chart_render, schema_check

    for path, (template, text) in schema_check.CHART_TEMPLATE_ONLY["vllm-stack"].items():
        assert text in chart_render.template(template), path
    deployment = chart_render.template("templates/deployment-vllm-multi.yaml")
    for path in schema_check.CHART_PASSTHROUGH["vllm-stack"]:
        assert f"toYaml .Values.{'.'.join(path)}" in deployment, path


def test_the_rendered_engine_deployment_validates(any_spec):
    from infra.program.serving import vllm

    from . import chart_render, schema_check

    deployment = chart_render.engine_deployment(vllm.vllm_stack_values(any_spec), vllm.deployment_patch(any_spec),
                                                any_spec.defaults.vllm_release, any_spec.namespace)
    assert schema_check.validate(deployment) == []
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    for c in pod["initContainers"] + pod["containers"]:
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert c["resources"]["requests"].items() >= {k: v for k, v in c["resources"]["limits"].items()
                                                      if k in ("cpu", "memory")}.items(), c["name"]
        assert {k: str(v) for k, v in c["resources"]["requests"].items() if k in ("cpu", "memory")} == {
            k: str(v) for k, v in c["resources"]["limits"].items() if k in ("cpu", "memory")}, c["name"]
