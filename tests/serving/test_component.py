"""The Serving component under the offline plan's mocks: structure, provider, charts, outputs."""
from __future__ import annotations

import pytest

from infra.core.catalog.charts import load_chart_catalog
from infra.program.serving import gpu_plumbing
from infra.program.serving.spec import ServingSpec

SUB_COMPONENTS = {"GpuPlumbing", "WeightsTier", "VllmServing", "Ingress", "Autoscaling", "WarmPool", "Observability",
                  "NetworkPolicies"}


def test_component_tree(serving_run):
    by_urn = {r.urn: r for r in serving_run.resources}
    (root,) = serving_run.of_type("llm-fleet:serving:Serving")
    children = {r.type.rsplit(":", 1)[1] for r in serving_run.resources
                if r.parent == root.urn and r.type.startswith("llm-fleet:serving:")}
    assert children == SUB_COMPONENTS
    # Every resource but the provider hangs under Serving.
    for r in serving_run.resources:
        if r.type.startswith("pulumi:providers:") or r is root:
            continue
        node = r
        while node.parent and node.parent in by_urn:
            node = by_urn[node.parent]
        assert node is root, f"{r.type} {r.name} is not under Serving"


def test_every_kubernetes_resource_uses_the_cluster_provider(serving_run):
    (provider,) = serving_run.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["enableServerSideApply"] in (True, "true")  # provider config travels as strings
    k8s_resources = [r for r in serving_run.resources if r.type.startswith("kubernetes:")]
    assert len(k8s_resources) > 25
    for r in k8s_resources:
        ref = serving_run.providers.get(r.urn, "")
        assert ref.startswith(provider.urn + "::"), f"{r.type} {r.name} uses {ref or 'the default provider'}"


def test_every_release_is_pinned_from_the_catalog(serving_run):
    catalog = load_chart_catalog()
    by_chart = {c.release_chart: c for c in catalog.charts.values()}
    releases = serving_run.releases()
    assert set(releases) == {"vllm", "nvidia-device-plugin", "aws-efa-k8s-device-plugin", "dcgm-exporter",
                             "eg", "keda", "cluster-autoscaler", "kps"}
    used = set()
    for name, rel in releases.items():
        ref = by_chart[rel.inputs["chart"]]
        used.add(ref.key)
        assert rel.inputs["version"] == ref.version, name
        if ref.repository_url:
            assert rel.inputs["repositoryOpts"] == {"repo": ref.repository_url}, name
        else:
            assert "repositoryOpts" not in rel.inputs, name
        assert rel.inputs["values"], name
    assert used == set(catalog.charts)  # no stale rows in charts.yaml


def test_gpu_plumbing_values(serving_run, prod_spec: ServingSpec):
    rels = serving_run.releases()
    assert rels["nvidia-device-plugin"].inputs["values"] == gpu_plumbing.nvidia_device_plugin_values(prod_spec)
    assert rels["aws-efa-k8s-device-plugin"].inputs["values"] == gpu_plumbing.efa_device_plugin_values(prod_spec)
    assert rels["dcgm-exporter"].inputs["values"] == gpu_plumbing.dcgm_exporter_values(prod_spec)
    for name in ("nvidia-device-plugin", "aws-efa-k8s-device-plugin", "dcgm-exporter"):
        assert rels[name].inputs["namespace"] == prod_spec.defaults.gpu_namespace
        values = rels[name].inputs["values"]
        assert values["nodeSelector"]["llm-fleet/role"] == "gpu"
        assert any(t["key"] == "nvidia.com/gpu" for t in values["tolerations"])
        assert "runtimeClassName" not in values  # no RuntimeClass anywhere (gpu_plumbing.py)


def test_namespaces_and_weights_tier(serving_run, prod_spec: ServingSpec):
    names = {r.inputs["metadata"]["name"] for r in serving_run.of_type("kubernetes:core/v1:Namespace")}
    assert names == {prod_spec.namespace, "gpu-system", "keda", "envoy-gateway-system", "monitoring"}
    ds = serving_run.one("kubernetes:apps/v1:DaemonSet")
    assert ds.inputs["metadata"]["namespace"] == prod_spec.config.weights.hydrator_namespace
    pod = ds.inputs["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == prod_spec.config.weights.hydrator_service_account
    assert pod["nodeSelector"] == {"llm-fleet/role": "gpu"}
    sa = serving_run.one("kubernetes:core/v1:ServiceAccount", "-weights-sa")
    assert "annotations" not in sa.inputs["metadata"]  # Pod Identity, not IRSA
    assert ds.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_component_outputs(serving_run, prod_spec: ServingSpec):
    serving = serving_run.result
    assert serving.spec is not None and serving.spec.deployment_name == prod_spec.deployment_name


@pytest.mark.parametrize("variant", ["8b-tp1"])
def test_variant_registers_cleanly(variant):
    from .support import run_serving, spec_for

    run = run_serving(spec_for(variant))
    placeholders = run.one("kubernetes:apps/v1:Deployment", "-placeholders")
    assert placeholders.inputs["spec"]["replicas"] == 0  # no warm spares in this plan
    (model,) = run.releases()["vllm"].inputs["values"]["servingEngineSpec"]["modelSpec"]
    assert model["requestGPU"] == 1 and "--quantization" not in model["vllmConfig"]["extraArgs"]
