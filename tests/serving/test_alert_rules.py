"""The alert rules we render, run by Prometheus' own rule evaluator (`promtool test rules`):
each alert fires on a synthetic bad series and stays silent on a healthy one.

promtool comes from Debian's `prometheus` package (`.ci/run` installs it; the `promtool`
fixture installs it with apt-get where it is missing and it can, else the test fails and says
how to install it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.core import metrics
from infra.program.serving import observability
from infra.program.serving.spec import ServingSpec

from .support import spec_for

INTERVAL = "15s"  # input series step and evaluation interval (the rules' group interval)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:  # no package lists yet
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
        path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (Debian), as .ci/run does")
    return path


def _rules(spec: ServingSpec) -> dict[str, dict]:
    return {r["alert"]: r for r in observability.alert_rules(spec)}


def _expected(rule: dict, **labels: str) -> list[dict]:
    return [{"exp_labels": {**rule["labels"], **labels}, "exp_annotations": rule["annotations"]}]


def _histogram(metric: str, served: str, target_s: float, bad: bool) -> list[dict]:
    """Requests per step all in the bucket above the target (bad) or below half of it (healthy)."""
    edges = [target_s / 2, target_s, target_s * 1.5]
    hit = 2 if bad else 0
    series = []
    for i, le in enumerate([*map(repr, edges), "+Inf"]):
        per_step = 10 if i >= hit else 0
        series.append({"series": f'{metric}_bucket{{model_name="{served}",le="{le}"}}', "values": f"0+{per_step}x120"})
    return series


def _cases(spec: ServingSpec) -> dict[str, tuple[dict, list[dict], list[dict], str, list[dict]]]:
    """alert -> (rule, bad series, healthy series, eval time, labels the alert carries)."""
    r, served, w = _rules(spec), spec.served_name, spec.config.workload
    c = spec.plan.control
    waiting = max(1, c.admission_limit_per_replica - c.max_num_seqs)
    sel = f'model_name="{served}"'
    node = [{"series": f'{metrics.KSM_NODE_LABELS}{{node="n1",{metrics.ksm_label(observability.GPU_ROLE_KEY)}='
                       f'"{observability.GPU_ROLE_VALUE}"}}', "values": "1x120"}]
    return {
        "VllmTtftP95AboveSlo": (r["VllmTtftP95AboveSlo"], _histogram(metrics.VLLM_TTFT, served, w.ttft_p95_ms / 1e3, True),
                                _histogram(metrics.VLLM_TTFT, served, w.ttft_p95_ms / 1e3, False), "25m", [{}]),
        "VllmTpotP95AboveSlo": (r["VllmTpotP95AboveSlo"], _histogram(metrics.VLLM_ITL, served, w.tpot_p95_ms / 1e3, True),
                                _histogram(metrics.VLLM_ITL, served, w.tpot_p95_ms / 1e3, False), "25m", [{}]),
        "VllmQueueSustained": (
            r["VllmQueueSustained"],
            [{"series": f'{metrics.VLLM_REQUESTS_WAITING}{{{sel},pod="p{i}"}}', "values": f"{waiting + 3}x120"}
             for i in range(2)],
            [{"series": f'{metrics.VLLM_REQUESTS_WAITING}{{{sel},pod="p{i}"}}', "values": f"{waiting}x120"}
             for i in range(2)], "25m", [{}]),
        "VllmKvCacheNearlyFull": (
            r["VllmKvCacheNearlyFull"],
            [{"series": f'{metrics.VLLM_KV_CACHE_USAGE}{{{sel},pod="p0"}}', "values": "0.97x120"}],
            [{"series": f'{metrics.VLLM_KV_CACHE_USAGE}{{{sel},pod="p0"}}', "values": "0.6x120"}], "25m",
            [{"pod": "p0"}]),
        "VllmMetricsAbsent": (
            r["VllmMetricsAbsent"], [{"series": 'up{job="other"}', "values": "1x120"}],
            [{"series": f'{metrics.VLLM_REQUESTS_RUNNING}{{{sel},pod="p0"}}', "values": "5x120"}], "25m",
            [{"model_name": served}]),
        "GpuNodeNotReady": (
            r["GpuNodeNotReady"],
            [{"series": f'{metrics.KSM_NODE_CONDITION}{{condition="Ready",status="true",node="n1"}}', "values": "0x120"},
             *node],
            [{"series": f'{metrics.KSM_NODE_CONDITION}{{condition="Ready",status="true",node="n1"}}', "values": "1x120"},
             *node], "25m", [{"node": "n1", "condition": "Ready", "status": "true"}]),
    }


def _run(promtool: str, tmp_path: Path, spec: ServingSpec, tests: list[dict]) -> subprocess.CompletedProcess:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": observability.prometheus_rule(spec)["spec"]["groups"]}))
    doc = tmp_path / "tests.yaml"
    doc.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": INTERVAL, "tests": tests}))
    return subprocess.run([promtool, "test", "rules", doc.name], cwd=tmp_path, capture_output=True, text=True)


def test_every_alert_has_a_case():
    assert set(_cases(spec_for("prod"))) | {"GpuXidError"} == set(_rules(spec_for("prod")))


@pytest.mark.parametrize("variant", ["prod", "8b-tp1"])
@pytest.mark.parametrize("alert", sorted(_cases(spec_for("prod"))))
def test_each_slo_alert_fires_on_bad_series_and_not_on_healthy_ones(promtool, tmp_path, variant, alert):
    spec = spec_for(variant)
    rule, bad, healthy, at, labels = _cases(spec)[alert]
    tests = [
        {"interval": INTERVAL, "input_series": bad,
         "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": _expected(rule, **labels[0])}]},
        {"interval": INTERVAL, "input_series": healthy,
         "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": []}]},
    ]
    out = _run(promtool, tmp_path, spec, tests)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("host_label", [metrics.DCGM_HOST_LABEL_OLD, metrics.DCGM_HOST_LABEL])
def test_a_new_xid_fires_once_and_a_standing_one_stays_silent(promtool, tmp_path, host_label):
    """DCGM_FI_DEV_XID_ERRORS holds the last Xid code: a change is the event. The alert fires
    after its for-window, resolves once the change leaves the window, never fires on a code
    that was already there, and carries `hostname` with either exporter label."""
    spec = spec_for("prod")
    rule = _rules(spec)["GpuXidError"]
    series = f'{metrics.DCGM_XID_ERRORS}{{{host_label}="ip-10-0-1-5",gpu="3"}}'
    fired = _expected(rule, hostname="ip-10-0-1-5", gpu="3")
    tests = [
        # A new Xid 79 at 5 min: firing at 7 min, resolved by 20 min.
        {"interval": INTERVAL, "input_series": [{"series": series, "values": "0x19 79x100"}],
         "alert_rule_test": [{"eval_time": "5m", "alertname": "GpuXidError", "exp_alerts": []},
                             {"eval_time": "7m", "alertname": "GpuXidError", "exp_alerts": fired},
                             {"eval_time": "20m", "alertname": "GpuXidError", "exp_alerts": []}]},
        # An old Xid the gauge still reports: silent (the previous rule fired on it forever).
        {"interval": INTERVAL, "input_series": [{"series": series, "values": "13x120"}],
         "alert_rule_test": [{"eval_time": "25m", "alertname": "GpuXidError", "exp_alerts": []}]},
    ]
    out = _run(promtool, tmp_path, spec, tests)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_rules_pass_promtools_checks(promtool, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": observability.prometheus_rule(spec_for("prod"))["spec"]["groups"]}))
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
