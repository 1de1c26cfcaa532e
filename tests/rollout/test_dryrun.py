"""`rollout --dry-run`: golden output (fake evaluator) and one run over the real program.

Regenerate the golden file with `UPDATE_GOLDEN=1 pytest tests/rollout/test_dryrun.py` (it shows the diff).
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any


from infra.cli import main
from infra.core.resolve import resolve
from infra.core.rollout.dryrun import OfflinePlan, dry_run, render_text
from infra.core.rollout.spec import load_rollout_plan
from infra.ops.rollout.state import LocalStateStore
from rollout_support import REPO
from tests.golden import check_golden
from tests.money_rule import assert_money_rule

GOLDEN = Path(__file__).parent / "golden" / "dry_run_prod.txt"
PLAN_PATH = "stacks/prod.yaml"


class FakeEvaluator:
    """Fixed numbers, so the golden file tests the rendering and the gate logic only."""

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}

    def plan(self, stack) -> OfflinePlan:
        resolved = resolve(stack, REPO)
        self.specs[stack] = resolved.spec
        return OfflinePlan(resolved.config, resolved.spec, {
            "stack": stack, "region": resolved.region,
            "plan": {"instance_type": "p5.48xlarge", "gpus_per_node": 8, "azs": 3,
                     "nodes_per_az": {"min": 3, "desired": 3, "max": 5}, "warm_spares_per_az": 1,
                     "gpus_baseline": 72, "replicas_baseline": 6, "replicas_max": 12,
                     "load": {"concurrent_requests": 200, "arrival_rate_per_s": 84.3}},
            "resources": [{"urn": f"urn:{i}", "type": "aws:ec2/vpc:Vpc"} for i in range(77)],
        })

    def cost(self, document, scenario) -> Decimal:
        return Decimal("603567.56")

    def policy(self, stack, document, cfg):
        if stack == "prod":
            return ([{"policy": "gpu-spend-cap-stack", "enforcement": "mandatory", "urn": "",
                      "message": "the stack must keep its worst case within the monthly budget"}], True, "fake pack")
        return ([{"policy": "kms-key-rotation", "enforcement": "advisory", "urn": "u", "message": "rotate"}],
                True, "fake pack")


def _report(tmp_path: Path, approve=()):
    store = LocalStateStore(tmp_path / "state", "prod")
    store.write_deployed("prod-us-west-2", {"config": "x", "cost": {"worst": "590000.00"}})
    evaluator = FakeEvaluator()
    report = dry_run(load_rollout_plan(REPO / PLAN_PATH), PLAN_PATH, evaluator, store, approve)
    return report, evaluator


def test_dry_run_golden(tmp_path):
    report, _ = _report(tmp_path)
    text = render_text(report)
    check_golden(GOLDEN, text)


def test_dry_run_verdicts_and_exit_code(tmp_path):
    report, evaluator = _report(tmp_path)
    west, prod = report.stacks
    assert west.cost.status == "pass" and west.cost.data["delta_usd"] == "13567.56"
    assert prod.cost.status == "fail" and prod.cost.data["new_stack"] is True
    assert prod.policy.status == "fail" and west.policy.status == "pass"
    assert report.exit_code == 3  # a mandatory policy would fail
    doc = report.to_dict()
    assert doc["would_stop"] == [{"stack": "prod", "gates": ["policy", "cost"]}]
    assert [w["name"] for w in doc["waves"]] == ["canary", "main"]
    # The weight steps of each wave (what proves the rollout moves traffic): before the first up,
    # what each region then serves, and the declared weights the bake ends with.
    canary, main_wave = (w["traffic"] for w in doc["waves"])
    assert canary == {"weights_before_up": {"prod-us-west-2": 10, "prod": 90},
                      "weights_after_bake": {"prod-us-west-2": 40, "prod": 60},
                      "serves_pct": {"prod-us-west-2": 10, "prod": 90}}
    assert main_wave["weights_before_up"] == {"prod-us-west-2": 80, "prod": 20}
    # Sizing got the regional spec (40 % + 60 % absorbed = the whole declared load here).
    assert evaluator.specs["prod-us-west-2"].workload.concurrent_requests == 200


def test_approval_turns_a_cost_failure_into_approved(tmp_path):
    report, _ = _report(tmp_path, approve=("prod",))
    assert report.stacks[1].cost.status == "approved"
    assert report.stacks[1].stops == ["policy"]


def test_dry_run_over_the_real_program_json(tmp_path, capsys):
    """End to end: the real program under mocks, the real cost model and policy pack."""
    code = main(["rollout", PLAN_PATH.replace("stacks/", str(REPO / "stacks") + "/"), "--dry-run", "--json",
                 "--state-dir", str(tmp_path), "--project-dir", str(REPO)])
    doc = json.loads(capsys.readouterr().out)
    assert code == doc["exit_code"]
    assert_money_rule(doc)
    stacks = [s for w in doc["waves"] for s in w["stacks"]]
    assert [s["stack"] for s in stacks] == ["prod-us-west-2", "prod"]
    for s in stacks:
        assert s["error"] is None
        assert s["plan"]["instance_type"].startswith("p5")
        assert s["resources"] > 10
        assert Decimal(s["gates"]["cost"]["data"]["after_usd"]) > 0
        assert s["gates"]["policy"]["status"] in ("pass", "fail", "not-evaluated")
        assert s["sized_load"]["concurrent_requests"] == 200
        assert s["traffic_share_pct"] in (40, 60) and s["budget_usd_per_month"] == "650000.00"
    assert not list(tmp_path.rglob("journal.json"))  # a dry run writes no journal
