"""`simulate` and `size --trace` as a user runs them: JSON contracts, traces, bad rows exit 2."""
from __future__ import annotations

import json

import pytest

from infra.core.errors import InputError
from infra.core.sizing.simulate.trace import read_trace

TRACE = "examples/traces/azure-llm-conv-2023.csv"
REPLICA = ["simulate", "--model", "llama-3.3-70b", "--gpu", "H100-SXM-80GB", "--tp", "8", "--weights", "fp8",
           "--kv", "fp8", "--input-tokens", "500", "--output-tokens", "200"]
LATENCY_KEYS = {"mean", "p50", "p95", "p99"}


@pytest.mark.parametrize("load", [["--concurrency", "32"], ["--rate", "12"]])
def test_replica_json_contract(call, load):
    code, out, err = call(*REPLICA, *load, "--requests", "300", "--json")
    assert code == 0, err
    d = json.loads(out)
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert set(d[key]) == LATENCY_KEYS, key
        assert 0 < d[key]["p50"] <= d[key]["p95"] <= d[key]["p99"], key
    assert d["output_tokens_per_s"] > 0 and d["requests_per_s"] > 0
    assert d["ttft_ms"]["p95"] < d["e2e_ms"]["p50"]


def test_replica_table_and_seed(call, tmp_path):
    code, out, _ = call(*REPLICA, "--rate", "10", "--requests", "200", "--seed", "3")
    assert code == 0 and "TTFT" in out and "end-to-end" in out and "closed form" in out
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        assert call(*REPLICA, "--rate", "10", "--requests", "200", "--seed", "3", "--json", str(path))[0] == 0
    assert json.loads(a.read_text()) == json.loads(b.read_text())


def test_the_example_trace_parses_with_its_published_figures():
    t = read_trace(TRACE)
    assert len(t) == 19366
    assert t.rate_per_s == pytest.approx(5.53, abs=0.01)
    assert (int(sorted(t.input_tokens)[len(t) // 2]), int(sorted(t.output_tokens)[len(t) // 2])) == (1020, 129)
    assert t.scaled(rate=50.0).rate_per_s == pytest.approx(50.0)
    assert t.scaled(factor=2.0).rate_per_s == pytest.approx(2 * t.rate_per_s)


def test_any_csv_with_the_three_columns_is_a_trace(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ContextTokens,GeneratedTokens,TIMESTAMP,extra\n100,10,2.5,x\n200,20,0.5,y\n")
    t = read_trace(p)
    assert t.arrival_s.tolist() == [0.0, 2.0] and t.input_tokens.tolist() == [200, 100]


@pytest.mark.parametrize("body, needle", [
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,ten,5\n", ":3 column ContextTokens: 'ten' is not allowed"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\nyesterday,10,5\n", ":3 column TIMESTAMP: 'yesterday'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,0\n", ":2 column GeneratedTokens: '0' is not allowed"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10\n", ":2 column GeneratedTokens"),
    ("TIMESTAMP,Tokens\n0,10\n", "missing: ContextTokens, GeneratedTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "at least one request row"),
])
def test_bad_trace_rows_exit_2_naming_file_line_column_and_value(call, tmp_path, body, needle):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        read_trace(p)
    code, _, err = call(*REPLICA, "--trace", str(p))
    assert code == 2 and needle in err and str(p) in err and "Traceback" not in err


def test_replica_replays_a_trace(call, tmp_path):
    code, out, err = call(*REPLICA[:-4], "--trace", TRACE, "--trace-rate", "15", "--requests", "400", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["lengths"] == "trace" and d["requests"] == 400 and "trace replay" in d["load"]


@pytest.mark.parametrize("argv, needle", [
    (["--stack", "prod", "--model", "llama-3.3-70b"], "no replica flag with --stack"),
    (["--model", "llama-3.3-70b"], "--gpu"),
    ([*REPLICA[1:], "--plot", "x.png", "--rate", "1"], "--plot"),
    ([*REPLICA[1:], "--prefix-hit", "1.5", "--rate", "1"], "--prefix-hit"),
    ([*REPLICA[1:], "--trace-rate", "3", "--rate", "1"], "only with --trace"),
])
def test_simulate_bad_flags_exit_2(call, argv, needle):
    code, _, err = call("simulate", *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_fleet_mode_json_and_plot(call, tmp_path):
    png = tmp_path / "sustained.png"
    code, out, err = call("simulate", "--stack", "prod", "--scenario", "sustained", "--plot", str(png), "--json")
    assert code == 0, err
    d = json.loads(out)
    (s,) = d["scenarios"]
    assert {"name", "passed", "requests", "attainment_pct", "rejected", "ttft_ms", "tpot_ms", "e2e_ms", "replicas",
            "timeline"} <= set(s)
    assert s["name"] == "sustained" and s["passed"] and set(s["e2e_ms"]) == LATENCY_KEYS
    assert set(s["replicas"]) == {"min", "max"} and s["timeline"]
    row = s["timeline"][5]
    assert {"t_s", "offered_per_s", "replicas_ready", "spares_in_use", "rejected_per_s", "ttft_p95_ms",
            "e2e_p95_ms", "attainment_pct"} <= set(row)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_size_from_a_trace_replays_its_lengths_at_the_given_rate(call, seed_doc, write_workload, tmp_path):
    seed_doc["workload"].update(burst_factor=2, ttft_p95_ms=2000, e2e_p95_ms=15000, output_tokens_per_s=None)
    seed_doc["model"]["max_model_len"] = 16384  # the trace's longest request is 14,050 + 1,000 tokens
    seed_doc["fleet"]["instance_types"] = ["p5.48xlarge"]
    out = tmp_path / "plan.json"
    code, _, err = call("size", "--workload", write_workload(seed_doc), "--trace", TRACE, "--trace-rate", "20",
                        "--json", str(out))
    assert code == 0, err
    d = json.loads(out.read_text())
    assert d["load"]["arrival_rate_per_s"] == pytest.approx(20.0)
    assert any("the trace's rate, 20.00 requests/s" in n for n in d["notes"])
    assert [v["name"] for v in d["verification"] if v["passed"]] == ["sustained", "az-loss", "burst"]
