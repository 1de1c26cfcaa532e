"""cost-diff: GPU changes first, before/after/delta/% per stack and component, budget, policy.

Base and head are real offline plans: prod, prod with twice the users, and prod-us-west-2.
Golden files pin the three formats (tests/golden.py: UPDATE_GOLDEN=1 rewrites and shows the diff).
"""
import json
from decimal import Decimal
from pathlib import Path

import pytest

from infra.cli import main
from infra.core.config import TcoConfig
from infra.core.cost import PolicyVerdict, cost_of_plan, diff_reports, render_diff
from infra.core.cost.diff import TcoFigures
from infra.core.cost.tco import tco_of
from infra.core.graph import graph_of
from policies import config_for_stack, evaluate
from tests.cost import fixtures as F
from tests.golden import check_golden
from tests.money_rule import assert_money_rule

GOLDEN = Path(__file__).parent / "golden"


def doubled_users():
    workload = F.stack_config("prod")["llm-fleet:workload"]
    return F.offline_plan("prod", workload__concurrent_requests=2 * workload["concurrent_requests"],
                          workload__output_tokens_per_s=2 * workload["output_tokens_per_s"])


@pytest.fixture(scope="module")
def base():
    return F.offline_plan()


@pytest.fixture(scope="module")
def head():
    return doubled_users()


def tco_figures(doc, output_tokens_per_s):
    """The `tco` section `plan --json` would write for this plan document (default tco config)."""
    t = tco_of(cost_of_plan(doc), doc["plan"], TcoConfig(), declared_output_tokens_per_s=output_tokens_per_s)
    return TcoFigures.from_dict(t.to_dict())


@pytest.fixture(scope="module")
def sample_diff(base, head):
    west = F.offline_plan("prod-us-west-2")
    verdict = PolicyVerdict(True, tuple(v.to_dict() for v in evaluate(graph_of(head), config_for_stack("prod"))))
    rate = F.stack_config("prod")["llm-fleet:workload"]["output_tokens_per_s"]
    return diff_reports(
        {"prod": cost_of_plan(base)},
        {"prod": cost_of_plan(head), "prod-us-west-2": cost_of_plan(west)},
        budgets={"prod": Decimal(650_000), "prod-us-west-2": None},
        verdicts={"prod": verdict, "prod-us-west-2": PolicyVerdict(True, ())},
        tco_before={"prod": tco_figures(base, rate)},
        tco_after={"prod": tco_figures(head, 2 * rate)},  # prod-us-west-2: a document without a TCO
    )


@pytest.mark.parametrize("fmt,name", [("markdown", "cost_diff.md"), ("table", "cost_diff.txt"), ("json", "cost_diff.json")])
def test_cost_diff_golden(sample_diff, fmt, name):
    check_golden(GOLDEN / name, render_diff(sample_diff, fmt))


def test_doubling_the_users_shows_more_gpu_nodes_and_dollars_first(sample_diff):
    d = sample_diff.stacks[0]
    (nodes_before, gpus_before), (nodes_after, gpus_after) = d.gpus("expected", "before"), d.gpus("expected", "after")
    assert nodes_after > nodes_before and gpus_after > gpus_before
    assert d.delta("expected") > 0 and d.delta("worst") > 0
    assert d.component_month("gpu-nodes", "expected", "after") > d.component_month("gpu-nodes", "expected", "before")
    md = render_diff(sample_diff, "markdown")
    first_lines = md.split("\n| stack")[0]
    assert f"{nodes_before} -> {nodes_after} (+{nodes_after - nodes_before}) nodes" in first_lines  # called out first


def test_the_diff_shows_the_change_in_cost_per_token_and_in_break_even(sample_diff):
    d = sample_diff.stacks[0]
    tco = d.to_dict()["tco"]
    per_million = tco["usd_per_million_tokens"]["at_demand"]
    assert per_million["delta"] is not None and Decimal(per_million["after"]) < Decimal(per_million["before"])
    assert set(tco["break_even_tokens_per_day"]) == set(d.tco_after.shown)
    assert all(v["after"] > v["before"] for v in tco["break_even_tokens_per_day"].values())  # a bigger fleet
    assert sample_diff.stacks[1].to_dict()["tco"] is None  # no TCO on either side: nothing invented
    md = render_diff(sample_diff, "markdown")
    assert "| $/1M tokens at the declared demand |" in md and "break-even vs bedrock-llama-3.3-70b" in md


def test_headroom_is_budget_minus_worst_case_and_goes_negative_over_budget(head):
    after = cost_of_plan(head)
    diff = diff_reports({}, {"prod": after}, budgets={"prod": Decimal(1)})
    assert diff.stacks[0].headroom == 1 - after.total_month("worst") < 0
    assert "OVER BUDGET" in render_diff(diff, "markdown")


def test_new_and_removed_stacks(base, head):
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


def test_cli_cost_diff_over_directories_with_policy_config(tmp_path, capsys, monkeypatch, base, head):
    monkeypatch.chdir(tmp_path)  # no policies/ here: config comes from the flag only
    write(tmp_path, "base/prod.json", base)
    write(tmp_path, "head/prod.json", head)
    cfg = write(tmp_path, "cfg/config.prod.json", {"gpu-spend-cap": {"monthly_budget_usd": 300000, "region": "us-east-1"}})
    code = main(["cost-diff", str(tmp_path / "base"), str(tmp_path / "head"), "--json",
                 "--policy-config", str(cfg.parent)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert_money_rule(out)
    stack = out["stacks"][0]
    assert stack["gpu"]["expected"]["nodes_after"] > stack["gpu"]["expected"]["nodes_before"]
    assert stack["budget"]["monthly_budget_usd"] == "300000.00"
    assert {v["policy"] for v in stack["policy"]["violations"]} == {"gpu-spend-cap", "gpu-spend-cap-stack"}
    code = main(["cost-diff", str(tmp_path / "base"), str(tmp_path / "head"), "--policy-config", str(cfg.parent),
                 "--fail-on-violation"])
    assert code == 3


def test_cli_cost_diff_takes_a_preview_digest_and_a_missing_base(tmp_path, capsys, monkeypatch, base):
    monkeypatch.chdir(tmp_path)
    head = write(tmp_path, "head.json", F.preview_document(base["resources"]))
    code = main(["cost-diff", str(tmp_path / "no-base"), str(head), "--format", "markdown", "--budget-usd", "800000"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("<!-- llm-fleet:cost-diff -->")
    assert "prod (new stack)" in out and "headroom" in out


def test_the_plans_own_policy_verdict_is_used_when_present(tmp_path, capsys, monkeypatch, base):
    monkeypatch.chdir(tmp_path)
    doc = dict(base, policy={"passed": False, "mandatory": 1, "violations": [
        {"policy": "required-tags", "enforcement": "mandatory", "urn": "urn:x", "message": "x must be tagged"}]})
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


@pytest.mark.parametrize("args,render", [(["--format", "table"], "render_report_table"),
                                         (["--format", "markdown"], "render_report_markdown"),
                                         (["--json"], "render_report_json"), (["--json", "-"], "render_report_json")])
def test_cost_command_prints_the_report(tmp_path, capsys, base, args, render):
    import infra.core.cost as cost

    path = write(tmp_path, "prod.json", base)
    assert main(["cost", str(path), *args]) == 0
    out = capsys.readouterr().out
    assert out == getattr(cost, render)(cost_of_plan(base))
    if "--json" in args:
        assert_money_rule(json.loads(out))


@pytest.mark.parametrize("command", [["cost", "PLAN"], ["cost-diff", "PLAN", "PLAN"]])
def test_format_json_points_at_the_json_flag(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--format", "json"])
    assert exc.value.code == 2 and "use --json" in capsys.readouterr().err


# --- issue 14 -------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1e26", "nan", "inf", "-1", "100000000.01", "lots"])
def test_a_budget_out_of_range_exits_2_without_a_traceback(tmp_path, capsys, amount):
    """Issue 14: `cost-diff --budget-usd 1e26` was a decimal.InvalidOperation traceback."""
    with pytest.raises(SystemExit) as exc:
        main(["cost-diff", "base", "head", "--budget-usd", amount])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--budget-usd" in err and "a USD amount from 0 to 100,000,000" in err


def test_an_instance_type_change_is_shown_per_node_group(tmp_path, capsys, monkeypatch, base):
    """Issue 14: p5.48xlarge -> p5en.48xlarge showed only "9 -> 9 nodes, 72 -> 72 GPUs"."""
    monkeypatch.chdir(tmp_path)
    head = json.loads(json.dumps(base))
    for r in head["resources"]:
        if r["type"] == "aws:eks/nodeGroup:NodeGroup" and r["inputs"].get("instanceTypes") == ["p5.48xlarge"]:
            r["inputs"]["instanceTypes"] = ["p5en.48xlarge"]
    write(tmp_path, "base/prod.json", base)
    write(tmp_path, "head/prod.json", head)
    assert main(["cost-diff", "base", "head", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    nodes = base["plan"]["nodes_per_az"]["desired"] * base["plan"]["azs"]
    assert (f"**prod**: {nodes} -> {nodes} (0) nodes, {nodes * 8} -> {nodes * 8} (0) GPUs; instance type p5.48xlarge "
            "-> p5en.48xlarge in gpu-us-east-1a, gpu-us-east-1b, gpu-us-east-1c") in md
    assert main(["cost-diff", "base", "head", "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)["stacks"][0]["instance_type_changes"]
    assert changes == [{"before": ["p5.48xlarge"], "after": ["p5en.48xlarge"],
                        "node_groups": ["gpu-us-east-1a", "gpu-us-east-1b", "gpu-us-east-1c"]}]


def test_violation_lines_name_the_resource_not_its_urn(tmp_path, capsys, monkeypatch, base):
    monkeypatch.chdir(tmp_path)
    urn = ("urn:pulumi:prod::llm-fleet::llm-fleet:gpu:GpuNodeGroup$aws:eks/nodeGroup:NodeGroup::gpu-us-east-1a")
    doc = dict(base, policy={"passed": False, "mandatory": 1, "violations": [
        {"policy": "required-tags", "enforcement": "mandatory", "urn": urn, "message": "x must be tagged"}]})
    head = write(tmp_path, "head/prod.json", doc)
    for fmt in ("markdown", "table"):
        main(["cost-diff", "none", str(head.parent), "--format", fmt])
        out = capsys.readouterr().out
        assert "required-tags (mandatory) on gpu-us-east-1a (aws:eks:NodeGroup): x must be tagged" in out
        assert "urn:pulumi" not in out


def test_failed_plans_leave_the_totals_and_say_so(base, head):
    from infra.core.cost.diff import PlanFailure

    failure = PlanFailure(2, "error: Pulumi.prod.yaml: llm-fleet:budget.monthly_usd: 0 is not allowed")
    diff = diff_reports({"prod": cost_of_plan(base), "west": cost_of_plan(base)}, {"west": cost_of_plan(head)},
                        head_failures={"prod": failure})
    assert [(d.stack, d.status) for d in diff.stacks] == [("west", "changed"), ("prod", "failed")]
    data = diff.to_dict()
    failed = next(s for s in data["stacks"] if s["stack"] == "prod")
    assert failed["status"] == "failed" and failed["usd_per_month"]["expected"]["after"] is None
    assert failed["usd_per_month"]["expected"]["delta"] is None and failed["failure"]["head"]["exit_code"] == 2
    assert data["failed_plans"] == [{"stack": "prod", "side": "head", "exit_code": 2, "error": failure.error}]
    text = render_diff(diff, "table")
    assert "[head plan FAILED, exit 2]" in text and "leaving out 1 failed plan(s)" in text
    assert_money_rule(data)
