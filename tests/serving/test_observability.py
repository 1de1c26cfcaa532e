"""Alerts carry the declared SLOs; scrapes find vLLM and DCGM; the dashboard ships with the repo."""
from __future__ import annotations

import json
import re

from infra.core import metrics
from infra.program.serving import observability
from infra.program.serving.gpu_plumbing import dcgm_exporter_values
from infra.program.serving.spec import ServingSpec

from .support import prod_config


def _rules(spec: ServingSpec) -> dict[str, dict]:
    return {r["alert"]: r for r in observability.alert_rules(spec)}


def test_latency_alerts_use_the_declared_slos_in_seconds(any_spec: ServingSpec):
    rules, w, name = _rules(any_spec), any_spec.config.workload, any_spec.served_name
    assert rules["VllmTtftP95AboveSlo"]["expr"] == (
        f'histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{model_name="{name}"}}[5m]))) '
        f"> {w.ttft_p95_ms / 1000:g}")
    assert rules["VllmTpotP95AboveSlo"]["expr"] == (
        f'histogram_quantile(0.95, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{{model_name="{name}"}}[5m]))) '
        f"> {w.tpot_p95_ms / 1000:g}")


def test_prod_thresholds_are_the_seed_slos():
    spec_cfg = prod_config()
    assert spec_cfg.workload.ttft_p95_ms == 600 and spec_cfg.workload.tpot_p95_ms == 40
    from .support import spec_for

    rules = _rules(spec_for("prod"))
    assert rules["VllmTtftP95AboveSlo"]["expr"].endswith("> 0.6")
    assert rules["VllmTpotP95AboveSlo"]["expr"].endswith("> 0.04")


def test_queue_kv_xid_and_node_alerts(any_spec: ServingSpec):
    rules, name = _rules(any_spec), any_spec.served_name
    sel = f'{{model_name="{name}"}}'
    assert rules["VllmQueueSustained"]["expr"] == (
        f"sum(vllm:num_requests_waiting{sel}) / clamp_min(count(vllm:num_requests_waiting{sel}), 1) "
        f"> {any_spec.plan.control.admission_limit_per_replica - any_spec.plan.control.max_num_seqs}")
    assert rules["VllmQueueSustained"]["for"] == "15m"
    assert rules["VllmKvCacheNearlyFull"]["expr"] == f"max by (pod) (vllm:kv_cache_usage_perc{sel}) > 0.9"
    assert rules["GpuXidError"]["expr"] == (
        'max by (hostname, gpu) (label_replace(changes(DCGM_FI_DEV_XID_ERRORS[10m]), "hostname", "$1", '
        '"Hostname", "(.+)")) > 0')
    assert rules["GpuXidError"]["for"] == "1m"  # test_alert_rules.py runs it
    assert rules["GpuNodeNotReady"]["expr"] == (
        '(kube_node_status_condition{condition="Ready",status="true"} == 0) '
        'and on (node) kube_node_labels{label_llm_fleet_role="gpu"}')
    assert all(r["labels"]["model_name"] == name for r in rules.values())


def test_node_role_label_is_exported_by_kube_state_metrics(prod_spec: ServingSpec):
    values = observability.kube_prometheus_stack_values(prod_spec)
    assert values["kube-state-metrics"]["metricLabelsAllowlist"] == ["nodes=[llm-fleet/role]"]
    assert metrics.ksm_label("llm-fleet/role") == "label_llm_fleet_role"
    prom = values["prometheus"]["prometheusSpec"]
    assert prom["podMonitorSelectorNilUsesHelmValues"] is False
    assert prom["ruleSelectorNilUsesHelmValues"] is False
    assert values["grafana"]["adminPassword"] is None  # no well-known default password
    sidecar = values["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == (observability.DASHBOARD_LABEL, "1")


def test_scrape_targets(prod_spec: ServingSpec):
    pm = observability.vllm_pod_monitor(prod_spec)["spec"]
    assert pm["selector"]["matchLabels"] == prod_spec.vllm_pod_labels
    assert pm["podMetricsEndpoints"] == [{"port": "container-port", "path": "/metrics", "interval": "15s"}]
    sm = observability.dcgm_service_monitor(prod_spec)
    assert sm["metadata"]["namespace"] == prod_spec.defaults.gpu_namespace
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert dcgm_exporter_values(prod_spec)["serviceMonitor"] == {"enabled": False}  # ours instead


def test_shipped_dashboard_is_the_generated_one():
    assert observability.DASHBOARD_FILE.read_text() == observability.render_dashboard(), (
        "regenerate: python -c 'from infra.program.serving.observability import write_dashboard as w; w()'")


def test_dashboard_uses_only_known_metrics():
    doc = json.loads(observability.DASHBOARD_FILE.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    names = {m for e in exprs for m in re.findall(r"\b(vllm:[a-z_]+|DCGM_FI_[A-Z_]+|kube_[a-z_]+)", e)}
    names = {n.removesuffix("_bucket") for n in names}
    assert names and names <= metrics.ALL_METRICS, names - metrics.ALL_METRICS
    assert {metrics.VLLM_TTFT, metrics.VLLM_ITL, metrics.VLLM_REQUESTS_WAITING, metrics.VLLM_KV_CACHE_USAGE} <= names


def test_registered_observability(serving_run, prod_spec: ServingSpec):
    rel = serving_run.releases()["kps"]
    assert rel.inputs["chart"] == "kube-prometheus-stack" and rel.inputs["allowNullValues"] is True
    cm = serving_run.one("kubernetes:core/v1:ConfigMap", "-dashboard")
    assert cm.inputs["metadata"]["labels"][observability.DASHBOARD_LABEL] == "1"
    assert json.loads(cm.inputs["data"]["vllm.json"]) == observability.vllm_dashboard()
    rules = serving_run.custom("PrometheusRule")
    assert [r["alert"] for r in rules.inputs["spec"]["groups"][0]["rules"]] == list(_rules(prod_spec))
    for kind in ("PodMonitor", "ServiceMonitor", "PrometheusRule"):
        assert serving_run.depends_on(serving_run.custom(kind), rel)


# --- storage and alert routing ------------------------------------------------------------------


def test_prometheus_keeps_its_tsdb_on_an_encrypted_gp3_volume_sized_from_config(prod_spec: ServingSpec):
    from tests.serving.schema_check import validate_k8s

    o = prod_spec.config.observability
    prom = observability.kube_prometheus_stack_values(prod_spec)["prometheus"]["prometheusSpec"]
    assert prom["retention"] == f"{o.prometheus_retention_days}d" == "15d"
    assert prom["retentionSize"] == f"{int(o.prometheus_volume_gib * 0.85)}GB" == "170GB"
    claim = prom["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "200Gi"
    assert claim["storageClassName"] == prod_spec.defaults.storage_class
    # The claim template is a Kubernetes PersistentVolumeClaimSpec (strict, v1.33 OpenAPI).
    assert validate_k8s(claim, "io.k8s.api.core.v1.PersistentVolumeClaimSpec") == []
    sc = observability.storage_class(prod_spec)
    assert sc["provisioner"] == "ebs.csi.aws.com" and sc["parameters"]["type"] == "gp3"
    assert sc["parameters"]["encrypted"] == "true" and sc["volumeBindingMode"] == "WaitForFirstConsumer"


def test_registered_storage_class_comes_before_the_chart(serving_run):
    rel = serving_run.releases()["kps"]
    (sc,) = serving_run.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    assert sc.inputs["provisioner"] == "ebs.csi.aws.com"
    assert serving_run.depends_on(rel, sc)


def test_alertmanager_routes_to_the_configured_receivers(prod_spec: ServingSpec):
    am = observability.kube_prometheus_stack_values(prod_spec)["alertmanager"]
    cfg = am["config"]
    (sns,) = [r for r in cfg["receivers"] if r["name"] == "sre-oncall"]
    assert sns["sns_configs"] == [{"topic_arn": "arn:aws:sns:us-east-1:123456789012:llm-fleet-prod-alerts",
                                   "sigv4": {"region": "us-east-1"}, "send_resolved": True}]
    assert cfg["route"]["receiver"] == "sre-oncall"
    assert "null" not in {r["name"] for r in cfg["receivers"]}
    watchdog, oncall = cfg["route"]["routes"]
    assert watchdog["receiver"] == observability.SILENT_RECEIVER and "Watchdog" in watchdog["matchers"][0]
    assert oncall == {"receiver": "sre-oncall", "matchers": ['severity=~"critical|warning"'], "continue": True}
    # The service account the base's SNS publisher role is bound to.
    assert am["serviceAccount"] == {"create": True, "name": prod_spec.defaults.alertmanager_service_account}


def test_without_receivers_the_chart_default_stays(prod_spec: ServingSpec):
    import dataclasses

    cfg = prod_spec.config.model_copy(update={"observability": prod_spec.config.observability.model_copy(
        update={"alert_receivers": None})})
    spec = dataclasses.replace(prod_spec, config=cfg)
    assert "config" not in observability.kube_prometheus_stack_values(spec)["alertmanager"]
