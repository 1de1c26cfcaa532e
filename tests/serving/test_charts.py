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
