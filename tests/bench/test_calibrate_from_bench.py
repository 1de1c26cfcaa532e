"""`calibrate --from-bench`: a measured run corrects its own configuration, the next size and
simulate of that configuration apply it (and say so), and the report lists it apart."""
from __future__ import annotations

import json

import pytest

from infra.cli import main
from infra.core import catalog as catalog_module
from infra.core.bench.load import schedule
from infra.core.bench.predict import configuration, load_point
from infra.core.resolve import resolve
from infra.core.sizing import calibrate, measured
from infra.core.sizing.search import size
from infra.core.sizing.simulate.load_point import simulate_point
from infra.core.sizing.simulate.scenarios import replica_model
from infra.core.sizing.simulate.workload import Lengths

SLOWER_TTFT, SLOWER_TPOT = 1.6, 1.3  # the synthetic fleet: this much slower than the simulator says


@pytest.fixture
def measured_file(tmp_path, monkeypatch):
    path = tmp_path / "measured.yaml"
    monkeypatch.setattr(catalog_module, "MEASURED_CALIBRATION_FILE", path)
    return path


@pytest.fixture(scope="module")
def synthetic_result():
    """A `bench --stack prod` result whose medians are the uncorrected simulator's times the factors."""
    resolved = resolve("prod")
    plan = resolved.plan
    replicas = plan.control.min_replicas
    sched = schedule(requests=replicas * 4, duration_s=60, concurrency=replicas * 2, lengths=Lengths(500, 40), seed=1)
    point = load_point(sched, replicas)
    run = simulate_point(replica_model(plan), point).to_dict()
    return {
        "driver": "openai", "url_host": "llm.us-east-1.internal.example.com", "started_at": "2026-12-01T12:00:00+00:00",
        "load": sched.describe(), "requests": {"sent": len(sched), "ok": len(sched), "failed": 0},
        "ttft_ms": {"p50": run["ttft_ms"]["p50"] * SLOWER_TTFT}, "tpot_ms": {"p50": run["tpot_ms"]["p50"] * SLOWER_TPOT},
        "configuration": configuration(plan, stack="prod", plan_digest=resolved.digest),
        "predicted": {"replicas": replicas, "lengths": {"input_tokens": 500, "output_tokens": 40}},
    }


def test_the_fit_brings_the_simulator_to_the_measurement(synthetic_result):
    c = calibrate.fit_from_bench(synthetic_result)
    assert c.prefill_factor > 1.2 and c.decode_factor > 1.1
    for figure in ("ttft_ms_p50", "tpot_ms_p50"):
        assert c.simulated_after[figure] == pytest.approx(c.measured[figure], rel=0.05)
        assert c.simulated_before[figure] < c.measured[figure]
    p = c.provenance
    assert (p["date"], p["endpoint_host"], p["requests"]) == ("2026-12-01", "llm.us-east-1.internal.example.com",
                                                              synthetic_result["requests"]["ok"])
    assert p["plan_digest"] == synthetic_result["configuration"]["plan_digest"]
    assert (c.key.model, c.key.gpu, c.key.engine_version) == ("llama-3.3-70b", "H100-SXM-80GB", "0.18.0")


def test_the_next_size_and_simulate_apply_it_and_say_so(synthetic_result, measured_file, tmp_path, capsys):
    spec = resolve("prod").spec
    before = size(spec, simulate=False)
    sim_args = ["simulate", "--model", "llama-3.3-70b", "--gpu", "H100-SXM-80GB", "--tp", "8", "--weights", "fp8",
                "--kv", "fp8", "--input-tokens", "500", "--output-tokens", "40", "--concurrency", "4",
                "--requests", "60", "--json"]
    assert main(sim_args) == 0
    sim_before = json.loads(capsys.readouterr().out)
    digest_before = catalog_module.catalog_digest()

    result = tmp_path / "result.json"
    result.write_text(json.dumps(synthetic_result))
    assert main(["calibrate", "--from-bench", str(result), "--json"]) == 0  # without --write: nothing stored
    assert not measured_file.exists()
    fitted = json.loads(capsys.readouterr().out)["corrections"][0]
    measured.write_corrections([measured.Correction.from_row(fitted)])

    assert catalog_module.catalog_digest() != digest_before  # resolve's memo sizes it again
    after = size(spec, simulate=False)
    assert before.tensor_parallel == 8 and not any("measured" in n for n in before.notes)
    # the measured TP=8 is slower than modelled: the pre-filter now prefers TP=4, and says TP=4 is not measured
    assert after.tensor_parallel == 4
    assert any("TP=8, vllm 0.18.0 was measured" in n and "TP=4 is not" in n for n in after.notes)
    both = measured.Correction.from_row(fitted)
    measured.write_corrections([both, measured.Correction(measured.ConfigKey(**{**vars(both.key), "tensor_parallel": 4}),
                                                          both.prefill_factor, both.decode_factor, both.provenance)])
    again = size(spec, simulate=False)
    # both measured (equally slower): TP=8 again, with its corrected, slower prediction, and the note
    note = next(n for n in again.notes if n.startswith("measured correction applied"))
    assert again.tensor_parallel == 8 and "llama-3.3-70b fp8 on H100-SXM-80GB TP=8, vllm 0.18.0" in note
    assert "2026-12-01" in note and "72 requests" in note
    assert again.predicted.ttft_p95_ms > before.predicted.ttft_p95_ms * 1.2
    assert again.predicted.tpot_p95_ms > before.predicted.tpot_p95_ms * 1.1
    assert main(sim_args) == 0
    sim_after = json.loads(capsys.readouterr().out)
    assert sim_after["ttft_ms"]["p50"] > sim_before["ttft_ms"]["p50"] * 1.2
    assert sim_after["notes"] and not sim_before["notes"]
    # another configuration is untouched
    other = [*sim_args[:8], "bf16", *sim_args[9:]]
    assert main(other) == 0 and json.loads(capsys.readouterr().out)["notes"] == []


def test_a_row_for_another_engine_version_does_not_apply(synthetic_result, measured_file):
    c = calibrate.fit_from_bench(synthetic_result)
    old = measured.Correction(measured.ConfigKey(**{**vars(c.key), "engine_version": "0.17.0"}), 2.0, 2.0)
    measured.write_corrections([old])
    assert measured.correction_for("llama-3.3-70b", "H100-SXM-80GB", 8, "fp8", "vllm") is None


def test_the_report_lists_measured_rows_apart_with_the_change(synthetic_result, measured_file, monkeypatch, tmp_path):
    empty = "\n".join(calibrate.render_measured_section(()))
    assert "None yet" in empty
    c = calibrate.fit_from_bench(synthetic_result)
    text = "\n".join(calibrate.render_measured_section((c,)))
    assert "## Measured on deployed fleets" in text
    row = next(line for line in text.splitlines() if line.startswith("| llama-3.3-70b"))
    m, b, a = c.measured["ttft_ms_p50"], c.simulated_before["ttft_ms_p50"], c.simulated_after["ttft_ms_p50"]
    assert f"{m:,.1f} / {b:,.1f} / {a:,.1f}" in row and f"{c.prefill_factor:.3f}" in row
    # --write stores the row and regenerates the report (its measured section from measured.yaml)
    monkeypatch.setattr(calibrate, "REPORT_PATH", tmp_path / "report.md")
    monkeypatch.setattr(calibrate, "report_for",
                        lambda engines: "\n".join(calibrate.render_measured_section(measured.load_corrections())))
    result = tmp_path / "result.json"
    result.write_text(json.dumps(synthetic_result))
    assert main(["calibrate", "--from-bench", str(result), "--write"]) == 0
    assert measured_file.exists() and "| llama-3.3-70b fp8 on H100-SXM-80GB" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("patch, field", [
    ({"configuration": None}, "configuration"),
    ({"requests": {"sent": 5, "ok": 5, "failed": 0}}, "requests.ok"),
    ({"ttft_ms": {"p50": None}}, "ttft_ms.p50"),
])
def test_a_result_that_cannot_calibrate_exits_2(synthetic_result, tmp_path, capsys, patch, field):
    result = tmp_path / "bad.json"
    result.write_text(json.dumps({**synthetic_result, **patch}))
    assert main(["calibrate", "--from-bench", str(result)]) == 2
    assert field in capsys.readouterr().err


def test_a_new_measurement_replaces_its_configurations_row(synthetic_result):
    c = calibrate.fit_from_bench(synthetic_result)
    other = measured.Correction(measured.ConfigKey(**{**vars(c.key), "tensor_parallel": 4}), 1.1, 1.1)
    later = measured.Correction(c.key, 1.5, 1.2)
    rows = calibrate.merge_corrections((c, other), [later, measured.Correction(c.key, 1.7, 1.3)])
    assert [(r.key.tensor_parallel, r.prefill_factor) for r in rows] == [(4, 1.1), (8, 1.7)]
