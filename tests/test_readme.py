"""The README's promises stay true: two set-up commands, CI runs the test one, quoted numbers match."""
import re
from pathlib import Path

import pytest

README = Path("README.md").read_text()


def first_code_block() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    lines = first_code_block()
    assert len(lines) == 2
    assert "pip install -r requirements.txt" in lines[0] and lines[0].endswith("python -m infra plan --stack prod")
    assert "pip install -r requirements-dev.txt" in lines[1] and lines[1].endswith("pytest -q")


def test_ci_runs_the_readme_test_command():
    ci = Path(".ci/run").read_text()
    assert "pip install -q -r requirements-dev.txt && pytest -q" in ci


@pytest.fixture(scope="module")
def seed_plan():
    from infra.core.config import load_sizing_spec
    from infra.core.sizing.search import size

    return size(load_sizing_spec("examples/seed-004.yaml"))


def test_readme_seed_table_matches_the_plan(seed_plan):
    p = seed_plan
    section = README.split("## Seed 004", 1)[1].split("\n## ", 1)[0]
    assert f"${p.cost.usd_per_hour_baseline:,.2f}" in section
    assert f"${p.cost.usd_per_million_output_tokens:,.2f} on-demand" in section
    assert f"| {p.gpus_baseline} |" in section
    assert f"TP={p.tensor_parallel}" in section
    assert f"{p.nodes_per_az.desired} per AZ" in section
    assert f"${p.gpus_baseline * 2}" in section  # at the seed's $2/GPU-hour


def test_readme_calibration_numbers_match_the_model():
    from infra.core.catalog import load_catalog
    from infra.core.sizing import calibrate
    from infra.core.sizing.perf import load_engines

    rows, _ = calibrate.read_measurements()
    s = calibrate.summarise(calibrate.evaluate(rows, dict(load_engines()), load_catalog()))
    assert f"median |error| {s['median_abs_error_throughput']:.1%}".replace("%", " %") in README
    assert f"most optimistic row {s['max_optimism_throughput']:+.1%}".replace("%", " %") in README


# -- generated blocks: the config keys and the policy rules, from the code ---------------------


def config_keys_block() -> str:
    from pydantic import BaseModel

    from infra.core.config import StackConfig

    lines = []
    for name, field in StackConfig.model_fields.items():
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        keys = ", ".join(f"`{k}`" for k in sub.model_fields) if sub else "a mapping"
        need = "required" if field.is_required() else "optional"
        lines.append(f"- `llm-fleet:{name}` ({need}): {field.description} Keys: {keys}.")
    lines.append("- `aws:region` (required): must equal `fleet.region`.")
    return "\n".join(lines)


def policy_rules_block() -> str:
    from policies import MIRRORS, POLICIES

    rows = ["| rule | checks | mirrors |", "|---|---|---|"]
    for p in POLICIES:
        rows.append(f"| `{p.name}` | {p.description} | {MIRRORS[p.name]} |")
    return "\n".join(rows)


@pytest.mark.parametrize("name, build", [("config-keys", config_keys_block), ("policy-rules", policy_rules_block)])
def test_generated_readme_blocks_are_current(name, build):
    import os

    global README
    begin = f"<!-- BEGIN {name} (generated: UPDATE_GOLDEN=1 pytest tests/test_readme.py) -->"
    end = f"<!-- END {name} -->"
    assert begin in README and end in README, f"README lacks the {name} markers"
    head, rest = README.split(begin, 1)
    current, tail = rest.split(end, 1)
    generated = f"\n{build()}\n"
    if os.environ.get("UPDATE_GOLDEN") == "1" and current != generated:
        README = head + begin + generated + end + tail
        Path("README.md").write_text(README)
        current = generated
    assert current == generated, f"README's {name} block is stale: rerun with UPDATE_GOLDEN=1"


def test_readme_time_to_serve_and_warm_pool_cost_match_the_model():
    from infra.program.serving import warm_pool
    from tests.serving.support import spec_for

    spec = spec_for("prod")
    section = README.split("### Warm pool and time to serve", 1)[1].split("\n## ", 1)[0]
    paths = warm_pool.time_to_serve(spec)
    rows = {"cold": "cold node", "warm_node": "warm node (STOPPED pool)",
            "warm_reused": "warm node (RUNNING pool, reused)", "placeholder": "placeholder"}
    for path, label in rows.items():
        minutes = f"{warm_pool.total_s(paths[path]) / 60:.1f} min"
        assert f"| {label} | {minutes} |" in section, (label, minutes)
    cost = warm_pool.warm_pool_cost(spec)
    assert f"${cost['usd_per_month_placeholders']:,}" in section
    assert f"${cost['usd_per_month_stopped_pool']:,}" in section
