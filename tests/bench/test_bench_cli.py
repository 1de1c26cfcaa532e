"""`python -m infra bench` end to end against tests/bench/server.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from infra.cli import main
from infra.core.paths import REPO_ROOT
from tests.bench.server import Ok, Status

BASE = ["bench", "--model", "m", "--input-tokens", "16", "--output-tokens", "4"]


def test_json_report_with_every_request(fake_openai, tmp_path, capsys):
    server = fake_openai(ttft_s=0.02, itl_s=0.002, behaviour=lambda i: Status(503, 3) if i == 1 else Ok())
    out = tmp_path / "run.json"
    assert main([*BASE, "--url", server.url, "--concurrency", "2", "--requests", "5", "--per-request",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "TTFT" in text and "failures: 503: 1" in text
    doc = json.loads(out.read_text())
    assert doc["driver"] == "openai" and doc["url_host"] == "127.0.0.1" and doc["server_version"] == "0.18.0"
    assert doc["requests"] == {"sent": 5, "ok": 4, "failed": 1} and doc["errors"] == {"503": 1}
    assert set(doc) >= {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "output_tokens_per_s", "requests_per_s"}
    assert set(doc["ttft_ms"]) == {"mean", "p50", "p95", "p99"}
    failed = [r for r in doc["per_request"] if r["outcome"] != "ok"]
    assert failed[0]["http_status"] == 503 and failed[0]["retry_after_s"] == 3 and failed[0]["ttft_s"] is None
    assert "attainment_pct" not in doc  # no --stack: no SLOs to attain


def test_with_a_stack_it_reports_attainment_and_the_predictions(fake_openai, capsys):
    server = fake_openai(ttft_s=0.01, itl_s=0.002)
    assert main(["bench", "--url", server.url, "--stack", "prod", "--output-tokens", "4", "--concurrency", "2",
                 "--requests", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "llama-3.3-70b-instruct"  # the plan's served name
    assert doc["attainment_pct"] == 100.0 and doc["attainment_target_pct"] == 95.0
    assert doc["slo_ms"] == {"ttft": 600, "tpot": 40, "e2e": 4000}
    c = doc["configuration"]
    assert (c["model"], c["engine"], c["engine_version"]) == ("llama-3.3-70b", "vllm", "0.18.0") and c["plan_digest"]
    p = doc["predicted"]
    assert p["replicas"] == c["replicas_baseline"] and p["per_replica"] == {"concurrency": 1}
    assert p["busy_replicas"] == 2  # two clients keep two replicas busy, not the fleet
    assert p["simulator"]["ttft_ms"]["p50"] > 0 and p["plan"]["ttft_ms"]["p95"] > 0
    sim = doc["ratios"]["simulator"]
    assert sim["ttft_ms.p50"] == pytest.approx(doc["ttft_ms"]["p50"] / p["simulator"]["ttft_ms"]["p50"], rel=1e-3)
    assert doc["ratios"]["plan"]["ttft_ms.p50"] is None  # the closed form states no median


def test_every_request_failing_exits_4(fake_openai, capsys):
    server = fake_openai(behaviour=lambda i: Status(503, 1))
    assert main([*BASE, "--url", server.url, "--concurrency", "1", "--requests", "2"]) == 4
    assert "no request succeeded (503: 2)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, field", [
    ([], "--concurrency/--rate/--trace"),
    (["--concurrency", "1", "--rate", "2"], "--concurrency/--rate"),
    (["--concurrency", "1", "--api-key-env", "LLM_FLEET_NO_SUCH_VAR"], "--api-key-env"),
    (["--concurrency", "1", "--replicas", "2"], "--replicas"),
])
def test_bad_flags_exit_2_naming_the_flag(capsys, extra, field):
    assert main([*BASE, "--url", "http://127.0.0.1:9", *extra]) == 2
    assert field in capsys.readouterr().err


def test_the_key_comes_from_the_named_variable(fake_openai, monkeypatch, capsys):
    server = fake_openai(ttft_s=0.001, itl_s=0.001)
    monkeypatch.setenv("TENANT_JWT", "eyJ.tenant.jwt")
    assert main([*BASE, "--url", server.url + "/v1", "--rate", "50", "--requests", "2",
                 "--api-key-env", "TENANT_JWT", "--json"]) == 0
    assert {s.headers["authorization"] for s in server.sent} == {"Bearer eyJ.tenant.jwt"}


def test_ctrl_c_reports_what_finished_and_exits_130(fake_openai, tmp_path):
    server = fake_openai(ttft_s=0.02, itl_s=0.002)
    out = tmp_path / "partial.json"
    proc = subprocess.Popen([sys.executable, "-m", "infra", *BASE, "--url", server.url, "--concurrency", "2",
                             "--duration-s", "60", "--json", str(out)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    deadline = time.monotonic() + 20
    while len(server.sent) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr.decode()
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["requests"]["ok"] >= 3
    assert "(interrupted)" in stdout.decode() and "before Ctrl-C" in stderr.decode()


def test_a_trace_sets_arrivals_and_lengths(fake_openai, tmp_path, capsys):
    server = fake_openai(ttft_s=0.001, itl_s=0.001)
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,12,3\n1,20,5\n2,7,2\n")
    assert main(["bench", "--url", server.url, "--model", "m", "--trace", str(trace), "--trace-rate", "40",
                 "--requests", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["load"]["kind"] == "trace" and doc["requests"]["ok"] == 3
    sent = sorted((len(s.body["prompt"]), s.body["max_tokens"]) for s in server.sent)
    assert sent == [(7, 2), (12, 3), (20, 5)]
