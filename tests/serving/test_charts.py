"""The chart catalog: one row per chart with source and date, read by a pure lookup."""
from __future__ import annotations

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


# --- vllm-stack 0.1.12, rendered from the vendored templates (tests/serving/chart_render.py) -----

def _engine_model(spec) -> dict:
    from infra.program.serving import vllm

    (model,) = vllm.vllm_stack_values(spec)["servingEngineSpec"]["modelSpec"]
    return model


def test_the_chart_renders_the_deployment_without_replicas_and_no_scaled_object(any_spec):
    """One owner of the replica count: our ScaledObject's HPA. The chart renders the engine
    Deployment with no `replicas` and no ScaledObject of its own."""
    from . import chart_render

    assert chart_render.engine_objects(_engine_model(any_spec)) == {
        "Deployment": True, "replicas": False, "ScaledObject": False, "RayCluster": False}


def test_an_upgrade_during_a_burst_keeps_the_hpas_count(any_spec):
    """`pulumi up` (a Helm upgrade) while the HPA holds more than the baseline leaves the count;
    the chart's default handling (replicaCount, no keda) would reset it."""
    from . import chart_render

    model, plan = _engine_model(any_spec), any_spec.plan
    burst = plan.replicas_max + 6  # any count the HPA holds
    assert chart_render.upgrade_replicas(model, burst) == burst
    legacy = {k: v for k, v in model.items() if k not in ("keda", "raySpec")} | {"replicaCount": plan.replicas_baseline}
    assert chart_render.upgrade_replicas(legacy, burst) == plan.replicas_baseline != burst


def test_the_charts_own_scaled_object_cannot_carry_our_trigger():
    """Why the chart's KEDA integration is not used: vllm-stack 0.1.12's values.schema.json types
    `modelSpec.keda.triggers` as an object, and Helm validates values against it, so a list of
    triggers (what KEDA reads) is refused at install."""
    import jsonschema

    from . import schema_check

    schema = schema_check.chart_values_schema("vllm-stack")
    keda = schema["properties"]["servingEngineSpec"]["properties"]["modelSpec"]["items"]["properties"]["keda"]
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'object'"):
        jsonschema.validate([{"type": "prometheus"}], keda["properties"]["triggers"])


def test_engine_selector_labels_are_clean(any_spec):
    """The Deployment's selector (immutable) carries no chart example labels and no key twice,
    and the labels our PDB, PodMonitor and NetworkPolicies select on."""
    from infra.program.serving import vllm

    from . import chart_render

    values, release = vllm.vllm_stack_values(any_spec), any_spec.defaults.vllm_release
    keys = [k for k, _ in chart_render.selector_labels(values, release)]
    assert len(keys) == len(set(keys)), keys
    assert not {"environment", "release"} & set(keys)
    assert any_spec.vllm_pod_labels.items() <= dict(chart_render.selector_labels(values, release)).items()
    # The chart's defaults alone would put its example labels there.
    bare = {"servingEngineSpec": {"modelSpec": [{"name": any_spec.model_key}]}}
    assert {"environment", "release"} <= {k for k, _ in chart_render.selector_labels(bare, release)}


def test_chart_values_outside_the_charts_schema_are_read_by_its_templates():
    """schema_check validates some values as Kubernetes types or lets them pass because the
    chart's template copies or reads them although its schema does not list them."""
    from . import chart_render, schema_check

    for path, (template, text) in schema_check.CHART_TEMPLATE_ONLY["vllm-stack"].items():
        assert text in chart_render.template(template), path
    deployment = chart_render.template("templates/deployment-vllm-multi.yaml")
    for path in schema_check.CHART_PASSTHROUGH["vllm-stack"]:
        assert f"toYaml .Values.{'.'.join(path)}" in deployment, path
