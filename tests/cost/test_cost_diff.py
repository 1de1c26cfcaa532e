"""cost-diff: GPU changes first, before/after/delta/% per stack and component, budget, policy.

Golden files pin the three formats (regenerate with UPDATE_GOLDEN=1 after a deliberate change).
"""
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from infra.cli import main
from infra.core.cost import PolicyVerdict, cost_of_plan, diff_reports, render_diff
from tests.cost import fixtures as F

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"


def base_and_head():
    base = F.plan_document()
    head_plan = F.fleet_plan(nodes_per_az={"min": 6, "desired": 6, "max": 10}, replicas_per_az=6, replicas_max=30,
                             load__concurrent_requests=400, load__output_tokens_per_s=10000.0)
    return base, F.plan_document(head_plan)


def sample_diff():
    base, head = base_and_head()
    staging = F.plan_document(F.fleet_plan(azs=2, nodes_per_az={"min": 1, "desired": 1, "max": 2}, warm_spares_per_az=0),
                              stack="staging")
    verdict = PolicyVerdict(True, ({
        "policy": "gpu-spend-cap-stack", "enforcement": "mandatory", "urn": "",
        "message": "the stack must keep its worst case within the monthly budget: ...",
    },))
    return diff_reports(
        {"prod": cost_of_plan(base)},
        {"prod": cost_of_plan(head), "staging": cost_of_plan(staging)},
        budgets={"prod": Decimal(1_000_000), "staging": None},
        verdicts={"prod": verdict, "staging": PolicyVerdict(True, ())},
    )


@pytest.mark.parametrize("fmt,name", [("markdown", "cost_diff.md"), ("table", "cost_diff.txt"), ("json", "cost_diff.json")])
def test_cost_diff_golden(fmt, name):
    check_golden(name, render_diff(sample_diff(), fmt))


def test_doubling_the_users_shows_more_gpu_nodes_and_dollars():
    from infra.core.config import SizingSpec
    from infra.core.sizing.search import size

    spec = {
        "workload": {"concurrent_requests": 200, "burst_factor": 4, "input_tokens": 500, "output_tokens": 200,
                     "ttft_p95_ms": 600, "tpot_p95_ms": 40, "e2e_p95_ms": 4000, "output_tokens_per_s": 5000},
        "model": {"name": "llama-3.3-70b", "kv_cache_dtype": "fp8", "max_model_len": 8192},
        "fleet": {"region": "us-east-1", "azs": 3, "instance_types": ["p5.48xlarge"], "precisions": ["fp8"]},
    }
    doubled = json.loads(json.dumps(spec))
    doubled["workload"]["concurrent_requests"] *= 2
    doubled["workload"]["output_tokens_per_s"] *= 2
    docs = {}
    for name, s in (("base", spec), ("head", doubled)):
        plan = size(SizingSpec.model_validate(s)).to_dict()
        docs[name] = F.plan_document(plan)
    d = diff_reports({"prod": cost_of_plan(docs["base"])}, {"prod": cost_of_plan(docs["head"])}).stacks[0]
    (nodes_before, gpus_before), (nodes_after, gpus_after) = d.gpus("expected", "before"), d.gpus("expected", "after")
    assert nodes_after > nodes_before and gpus_after > gpus_before
    assert d.delta("expected") > 0 and d.delta("worst") > 0
    assert d.component_month("gpu-nodes", "expected", "after") > d.component_month("gpu-nodes", "expected", "before")
    md = render_diff(diff_reports({"prod": d.before}, {"prod": d.after}), "markdown")
    first_lines = md.split("\n| stack")[0]
    assert f"{nodes_before} -> {nodes_after} (+{nodes_after - nodes_before}) nodes" in first_lines  # called out first


def test_headroom_is_budget_minus_worst_case_and_goes_negative_over_budget():
    base, head = base_and_head()
    after = cost_of_plan(head)
    d = diff_reports({}, {"prod": after}, budgets={"prod": Decimal(1)}).stacks[0]
    assert d.headroom == 1 - after.total_month("worst") < 0
    assert "OVER BUDGET" in render_diff(diff_reports({}, {"prod": after}, budgets={"prod": Decimal(1)}), "markdown")


def test_new_and_removed_stacks():
    base, head = base_and_head()
    diff = diff_reports({"old": cost_of_plan(base)}, {"prod": cost_of_plan(head)})
    assert [(s.stack, s.before is None, s.after is None) for s in diff.stacks] == [("prod", True, False), ("old", False, True)]
    data = diff.to_dict()
    assert [s["status"] for s in data["stacks"]] == ["added", "removed"]
    assert data["stacks"][1]["usd_per_month"]["expected"]["after"] == "0.00"


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_cli_cost_diff_over_directories_with_policy_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no policies/ here: config comes from the flag only
    base, head = base_and_head()
    write(tmp_path, "base/prod.json", base)
    write(tmp_path, "head/prod.json", head)
    cfg = write(tmp_path, "cfg/config.prod.json", {"gpu-spend-cap": {"monthly_budget_usd": 300000, "region": "us-east-1"}})
    code = main(["cost-diff", str(tmp_path / "base"), str(tmp_path / "head"), "--format", "json",
                 "--policy-config", str(cfg.parent)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    stack = out["stacks"][0]
    assert stack["gpu"]["expected"]["nodes_after"] > stack["gpu"]["expected"]["nodes_before"]
    assert stack["budget"]["monthly_budget_usd"] == "300000.00"
    assert {v["policy"] for v in stack["policy"]["violations"]} == {"gpu-spend-cap", "gpu-spend-cap-stack"}
    code = main(["cost-diff", str(tmp_path / "base"), str(tmp_path / "head"), "--policy-config", str(cfg.parent),
                 "--fail-on-violation"])
    assert code == 3


def test_cli_cost_diff_takes_a_preview_digest_and_a_missing_base(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    head = write(tmp_path, "head.json", F.preview_document(F.stack_resources()))
    code = main(["cost-diff", str(tmp_path / "no-base"), str(head), "--format", "markdown", "--budget-usd", "800000"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("<!-- llm-fleet:cost-diff -->")
    assert "prod (new stack)" in out and "headroom" in out


def test_the_plans_own_policy_verdict_is_used_when_present(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = F.plan_document()
    doc["policy"] = {"passed": False, "mandatory": 1, "violations": [
        {"policy": "required-tags", "enforcement": "mandatory", "urn": "urn:x", "message": "x must be tagged"}]}
    head = write(tmp_path, "head/prod.json", doc)
    main(["cost-diff", str(tmp_path / "none"), str(head.parent), "--format", "table"])
    assert "required-tags (mandatory)" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["cost-diff", "base.json", "missing.json"],
    ["cost", "missing.json"],
])
def test_bad_paths_exit_2_without_traceback(tmp_path, capsys, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.json").write_text("{}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_cost_command_prints_the_table(tmp_path, capsys):
    path = write(tmp_path, "prod.json", F.plan_document())
    assert main(["cost", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Cost of stack prod in us-east-1" in out and "gpu-nodes" in out and "$/1M output tokens" in out
    assert main(["cost", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["scenarios"]["worst"]["gpu_nodes"] == 15


def test_report_table_golden():
    from infra.core.cost import render_report_table

    check_golden("cost_report.txt", render_report_table(cost_of_plan(F.plan_document())))
