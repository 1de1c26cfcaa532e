"""`python -m infra plan` on the real prod stack: the cost and the policy verdict it writes, the
spend cap it enforces, and the figure the README quotes."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from infra.cli import main
from infra.core.cost import cents, cost_of_plan
from infra.core.graph import graph_of
from policies import config_for_stack, evaluate, has_mandatory
from tests.cost import fixtures as F

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prod():
    return F.offline_plan()


def project_with(tmp_path, edit):
    """A copy of the project's prod stack with `edit` applied to its config, and its pack config
    regenerated from it (as `python -m infra docs --write` does)."""
    from infra.core.config import load_stack_config
    from policies.config import config_path, render_pack_config, stack_pack_config

    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    edit(doc["config"])
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    path = config_path("prod", tmp_path)
    path.parent.mkdir()
    path.write_text(render_pack_config(stack_pack_config(load_stack_config("prod", tmp_path))))
    return tmp_path


@pytest.mark.parametrize("margin,violated", [(-1, True), (1, False)])
def test_the_spend_caps_hold_the_budget_at_the_worst_case(prod, margin, violated):
    worst = cost_of_plan(prod).total_month("worst")
    cfg = config_for_stack("prod")
    for section in ("gpu-spend-cap", "gpu-spend-cap-stack"):
        cfg[section]["monthly_budget_usd"] = float(worst) + margin
    spend = [v for v in evaluate(graph_of(prod), cfg) if v.policy_name.startswith("gpu-spend-cap")]
    assert [v.policy_name for v in spend] == (["gpu-spend-cap-stack"] if violated else [])
    assert has_mandatory(spend) is violated


def test_plan_exits_3_naming_gpu_spend_cap_when_the_budget_is_below_the_worst_case(tmp_path, capsys):
    def tiny_budget(cfg):
        cfg["llm-fleet:budget"]["monthly_usd"] = 1000

    project = project_with(tmp_path, tiny_budget)
    out_json = tmp_path / "out.json"
    code = main(["plan", "--stack", "prod", "--project-dir", str(project), "--json", str(out_json)])
    out = capsys.readouterr()
    assert code == 3 and "gpu-spend-cap" in out.out + out.err
    # The JSON is written even on a violation: the PR workflow diffs it.
    doc = json.loads(out_json.read_text())
    assert doc["policy"]["passed"] is False and doc["policy"]["monthly_budget_usd"] == "1000.00"
    assert {v["policy"] for v in doc["policy"]["violations"]} == {"gpu-spend-cap", "gpu-spend-cap-stack"}


def test_prod_plan_writes_its_cost_and_reports_the_budget_breach(prod, tmp_path, capsys):
    """The verified prod plan's worst case is above prod's declared budget (README, Seed 004):
    the file is still written, with the cost, and the stack spend cap is the one violation."""
    out_json = tmp_path / "prod.json"
    assert main(["plan", "--stack", "prod", "--json", str(out_json)]) == 3
    doc = json.loads(out_json.read_text())
    assert doc["policy"]["passed"] is False
    assert [v["policy"] for v in doc["policy"]["violations"]] == ["gpu-spend-cap-stack"]
    assert doc["cost"] == cost_of_plan(prod).to_dict()
    text = capsys.readouterr().out
    assert "MANDATORY gpu-spend-cap-stack" in text and "total $/month" in text and "$724,940.56" in text


def test_readme_quotes_the_prod_cost(prod):
    report = cost_of_plan(prod)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"${cents(report.total_month('expected')):,} a month expected" in readme
    assert f"${cents(report.total_month('worst')):,} worst case" in readme
