"""The step-time model against the public benchmarks, and the calibration's reproducibility."""
import pytest

from infra.core.catalog import load_catalog
from infra.core.sizing import calibrate
from infra.core.sizing.perf import load_engines


@pytest.fixture(scope="module")
def results():
    rows, _ = calibrate.read_measurements()
    return calibrate.evaluate(rows, dict(load_engines()), load_catalog())


def test_median_absolute_error_on_throughput_is_at_most_15_percent(results):
    s = calibrate.summarise(results)
    assert s["rows_throughput"] >= 40
    assert s["median_abs_error_throughput"] <= 0.15


def test_no_row_is_optimistic_by_more_than_25_percent(results):
    worst = max((r for r in results if r.metric == "output_tokens_per_s"), key=lambda r: r.error)
    assert worst.error <= 0.25, f"row {worst.m.row}: predicted {worst.predicted:.0f} vs {worst.measured:.0f}"


def test_every_usable_row_is_used_and_the_rest_say_why():
    rows, excluded = calibrate.read_measurements()
    assert len(rows) + len(excluded) == 60
    assert all("ShareGPT" in x.reason for x in excluded)


def test_checked_in_factors_are_what_the_script_fits():
    rows, _ = calibrate.read_measurements()
    fitted = calibrate.fit(rows)
    for name, e in load_engines().items():
        for field in calibrate.FITTED[name]:
            assert getattr(fitted[name], field) == pytest.approx(getattr(e, field), abs=1e-3), (name, field)


def test_report_lists_every_row():
    text = open("docs/calibration-report.md").read()
    rows, excluded = calibrate.read_measurements()
    for m in rows:
        assert f"| {m.row} |" in text
    for x in excluded:
        assert f"| {x.row} |" in text
