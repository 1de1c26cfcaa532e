"""Traffic between regions: the weights a wave holds, what each region then serves against what it
is sized for, and the rollout's traffic steps through the global stack (a fake workspace)."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
import yaml

from infra.core.errors import InputError, UserError, WorkspaceError
from infra.core.rollout.interfaces import UpOutcome
from infra.core.rollout.regions import sizing_share_pct
from infra.core.rollout.report import render_text
from infra.core.rollout.spec import parse_rollout_plan
from infra.core.rollout.traffic import (
    WEIGHTS_KEY,
    declared_weights,
    parse_weights,
    routed_pct,
    routing_problems,
    weights_config_text,
    weights_during,
)
from rollout_support import FakeWorkspace, Harness, plan_doc

GLOBAL = {"zone_name": "example.com", "routing": "weighted"}


def traffic_plan(routing: str = "weighted", absorb: tuple[bool, bool, bool] = (True, True, True),
                 canary: Mapping[str, Any] | None = None, **changes: Any):
    doc = plan_doc(**changes)
    doc["global"] = {**GLOBAL, "routing": routing}
    for region, flag in zip(doc["regions"], absorb):
        region["absorb_region_failure"] = flag
    doc["waves"][0]["traffic"] = dict(canary if canary is not None else {"west": 10})
    return doc


def sized(plan) -> dict[str, Decimal]:
    return {r.stack: sizing_share_pct(r, plan.regions) for r in plan.regions}


# --- weights and what each region serves -----------------------------------------------------------


def test_a_wave_names_some_regions_and_the_others_share_the_rest_by_their_shares():
    plan = parse_rollout_plan(traffic_plan())  # west 40, east 30, east2 30
    assert declared_weights(plan) == {"west": 40, "east": 30, "east2": 30}
    assert weights_during(plan, plan.waves[0]) == {"west": 10, "east": 45, "east2": 45}
    assert weights_during(plan, plan.waves[1]) == declared_weights(plan)  # no traffic step


def test_the_rest_is_split_in_whole_percents_that_add_up():
    doc = traffic_plan(regions__0__traffic_share_pct=40, regions__1__traffic_share_pct=35,
                       regions__2__traffic_share_pct=25)
    during = weights_during(parse_rollout_plan(doc), parse_rollout_plan(doc).waves[0])
    assert during == {"west": 10, "east": 53, "east2": 37} and sum(during.values()) == 100  # 52.5/37.5 rounded


@pytest.mark.parametrize("routing,weights,served", [
    ("weighted", {"west": 40, "east": 30, "east2": 30}, {"west": 40, "east": 30, "east2": 30}),
    ("weighted", {"west": 0, "east": 30, "east2": 30}, {"east": 50, "east2": 50}),  # west's share spreads
    ("latency", {"west": 0, "east": 30, "east2": 30}, {"east": 70, "east2": 70}),  # worst case: all of west's
])
def test_what_each_region_serves_with_a_region_out_of_dns(routing, weights, served):
    plan = parse_rollout_plan(traffic_plan(routing, canary={}))
    assert routed_pct(plan.regions, weights, routing) == {k: Decimal(v) for k, v in served.items()}


# --- sizing and routing agree ---------------------------------------------------------------------


@pytest.mark.parametrize("routing,canary", [("weighted", {"west": 10}), ("latency", {})])
def test_every_region_absorbing_carries_every_scenario(routing, canary):
    plan = parse_rollout_plan(traffic_plan(routing, canary=canary))
    assert routing_problems(plan, sized(plan)) == []


@pytest.mark.parametrize("routing,served", [("weighted", "50"), ("latency", "70")])
def test_a_region_that_does_not_absorb_a_lost_region_is_named_with_both_numbers(routing, served):
    plan = parse_rollout_plan(traffic_plan(routing, absorb=(True, False, True), canary={}))
    problems = routing_problems(plan, sized(plan))
    east = [p for p in problems if p.startswith("regions.1 (east)")]
    assert east, problems
    assert f"east would serve {served}% of the environment's traffic" in east[0]  # with west (40%) lost
    assert "sized for 30% (traffic_share_pct 30, absorb_region_failure false)" in east[0]
    assert "set absorb_region_failure: true" in east[0]


def test_a_canary_step_that_overloads_another_region_is_refused():
    # east (30 %, not absorbing) would serve 45 % while west canaries at 10 %.
    plan = parse_rollout_plan(traffic_plan(absorb=(True, False, True)))
    [during] = [p for p in routing_problems(plan, sized(plan)) if "during wave canary" in p]
    assert "east would serve 45% " in during and "sized for 30%" in during


def test_without_a_global_endpoint_nothing_routes_between_regions():
    plan = parse_rollout_plan(plan_doc())  # east and east2 absorb nothing, yet each serves its own hostname
    assert routing_problems(plan, sized(plan)) == []


# --- what a plan may say --------------------------------------------------------------------------


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("global"), "waves.0.traffic: is not allowed without a global section"),
    (lambda d: d["waves"][0].update(traffic={"nowhere": 10}), "'nowhere' is not allowed; traffic names region stacks"),
    (lambda d: d["global"].update(routing="latency"), "waves.0.traffic.west: 10 is not allowed with global.routing latency"),
    (lambda d: d["waves"][0].update(traffic={"west": 12.5}), "12.5 is not allowed; Route 53 weights are whole numbers"),
    (lambda d: d["waves"][0].update(traffic={"west": 20, "east": 20, "east2": 20}), "naming every region they add up to 100"),
    (lambda d: d["waves"][0].update(traffic={"west": 100}), "must leave the regions not named (east, east2) some traffic"),
    (lambda d: d["waves"][0].update(traffic={"west": 0}), "west would serve nothing while its health gate waits"),
    (lambda d: d["waves"][0].update(traffic={"west": True}), "True is not a percent of traffic"),
    (lambda d: d["waves"][1].update(traffic={"west": 0, "east": 0, "east2": 0}), "every region at 0 is not allowed"),
    (lambda d: d["regions"][0].update(traffic_share_pct=39.5) or d["regions"][1].update(traffic_share_pct=30.5),
     "regions.0.traffic_share_pct: 39.5 is not allowed with global.routing weighted"),
])
def test_traffic_steps_refuse_what_route53_cannot_do(change: Callable[[dict], Any], message):
    doc = traffic_plan()
    change(doc)
    with pytest.raises(UserError) as exc:
        parse_rollout_plan(doc)
    assert message in str(exc.value)


def test_the_weights_a_step_passes_read_back_as_the_program_reads_them():
    plan = parse_rollout_plan(traffic_plan())
    text = weights_config_text({"west": 10, "east": 45, "east2": 45})
    assert yaml.safe_load(text) == {"config": {WEIGHTS_KEY: {"east": 45, "east2": 45, "west": 10}}}
    assert parse_weights('{"west": 10}', plan) == {"west": 10}
    for bad in ({"elsewhere": 1}, {"west": 101}, {"west": 2.5}, "not json", [1]):
        with pytest.raises(InputError):
            parse_weights(bad, plan)


# --- the rollout's traffic steps (fake global stack) -----------------------------------------------


class FakeGlobal(FakeWorkspace):
    """The global stack: `up` applies the weights of its config file (none: the declared ones) and
    `outputs` reports them, as the program exports them."""

    def __init__(self, declared: Mapping[str, int], weights: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.declared = dict(declared)
        self.weights = dict(weights or declared)
        self.applied: list[dict[str, int]] = []
        self.log: list[str] | None = None  # shared with the region workspace to see the order

    def up(self, stack: str, *, on_output: Callable[[str], None], config_file: str | None = None) -> UpOutcome:
        self._maybe_fail(stack, "up")
        text = Path(config_file).read_text() if config_file else ""
        self.up_config_files.append((stack, config_file, text))
        self.weights = {**self.declared, **(yaml.safe_load(text)["config"][WEIGHTS_KEY] if text else {})}
        self.applied.append(dict(self.weights))
        if self.log is not None:
            self.log.append(f"global {self.weights}")
        return UpOutcome(result="succeeded")

    def outputs(self, stack: str) -> Mapping[str, Any]:
        self._maybe_fail(stack, "outputs")
        return {"weights": dict(self.weights)}


def traffic_harness(tmp_path: Path, before: Mapping[str, int] | None = None, **changes: Any) -> Harness:
    h = Harness(tmp_path, traffic_plan(**changes))
    h.global_workspace = FakeGlobal(declared_weights(h.plan), before)
    return h


def test_a_wave_holds_its_weights_from_its_first_up_until_its_bake_ends(tmp_path):
    h = traffic_harness(tmp_path)
    order: list[str] = []
    h.workspace.on_up = lambda stack: order.append(f"up {stack}")
    h.global_workspace.log = order
    journal = h.run()
    assert journal.status == "completed"
    assert order == ["global {'west': 10, 'east': 45, 'east2': 45}", "up west",  # set before west's up
                     "global {'west': 40, 'east': 30, 'east2': 30}", "up east", "up east2"]  # restored after the bake
    assert journal.traffic["canary"].status == "restored"
    restore = next(e for e in journal.events if e.step == "traffic-restore" and e.status == "ok")
    bake = next(e for e in journal.events if e.step == "bake" and e.status == "ok" and e.wave == "canary")
    assert restore.at >= bake.at  # after the bake
    assert "traffic canary: west 40 -> 10, east 30 -> 45, east2 30 -> 45; restored after the bake" in \
        render_text(journal, "stacks/prod.yaml")


def test_a_resumed_rollout_restores_the_weights_recorded_in_its_journal(tmp_path):
    # Before the rollout the global stack is at 35/35/30 (not the declared 40/30/30).
    before = {"west": 35, "east": 35, "east2": 30}
    h = traffic_harness(tmp_path, before)
    h.health.unhealthy["west"] = 1  # healthy after up, unhealthy during the canary's bake
    journal = h.run()
    assert journal.status == "halted" and journal.halted.step == "bake"
    assert journal.traffic["canary"].before == before and journal.traffic["canary"].held
    assert h.global_workspace.weights == {"west": 10, "east": 45, "east2": 45}  # still held after the halt
    del h.health.unhealthy["west"]
    journal = h.run(resume=True)
    assert journal.status == "completed"
    assert h.global_workspace.weights == before  # the journal's weights, not the held ones nor the declared
    assert journal.traffic["canary"].status == "restored"


def test_a_halt_keeps_the_weights_held_and_the_report_says_how_they_come_back(tmp_path):
    h = traffic_harness(tmp_path)
    h.health.unhealthy["west"] = 0  # unhealthy right after up
    journal = h.run()
    assert journal.halted.step == "health" and h.global_workspace.applied == [{"west": 10, "east": 45, "east2": 45}]
    assert "traffic canary: west 40 -> 10, east 30 -> 45, east2 30 -> 45; HELD" in render_text(journal, "stacks/prod.yaml")


def test_a_failed_traffic_step_halts_before_the_up(tmp_path):
    h = traffic_harness(tmp_path)
    h.global_workspace.fail[("prod", "up")] = WorkspaceError("prod: up failed: Route 53 throttled")
    journal = h.run()
    assert (journal.halted.stack, journal.halted.step) == ("west", "traffic")
    assert "Route 53 throttled" in journal.halted.reason and h.workspace.ops("up") == []


def test_a_rolled_back_wave_gets_its_weights_back(tmp_path):
    h = traffic_harness(tmp_path, on_failure={"action": "halt", "rollback": "failed-wave"})
    h.store.write_deployed("west", {"config": "config of west v1\n", "cost": {"worst": "500"}, "rollout_id": "old-1"})
    h.health.unhealthy["west"] = 0
    journal = h.run()
    assert journal.stacks["west"].status == "rolled-back"
    assert h.global_workspace.weights == {"west": 40, "east": 30, "east2": 30}
    assert journal.traffic["canary"].status == "restored"


def test_a_plan_with_traffic_steps_needs_the_global_stack(tmp_path):
    h = Harness(tmp_path, traffic_plan())
    with pytest.raises(UserError, match="need the environment's global stack"):
        h.run()


def test_a_failed_restore_halts_and_resume_retries_it_without_baking_again(tmp_path):
    h = traffic_harness(tmp_path)
    ups = []

    def flaky_up(stack, *, on_output, config_file=None):
        ups.append(config_file)
        if len(ups) == 2:  # the restore after the canary's bake
            raise WorkspaceError("prod: up failed: throttled")
        return FakeGlobal.up(h.global_workspace, stack, on_output=on_output, config_file=config_file)

    h.global_workspace.up = flaky_up
    journal = h.run()
    assert (journal.halted.wave, journal.halted.step) == ("canary", "traffic-restore")
    assert journal.waves["canary"].status == "baking" and journal.traffic["canary"].status == "restoring"
    slept = len(h.clock.slept)
    journal = h.run(resume=True)
    assert journal.status == "completed" and journal.traffic["canary"].status == "restored"
    assert h.global_workspace.weights == {"west": 40, "east": 30, "east2": 30}
    assert sum(h.clock.slept[slept:]) == 5 * 60  # only the main wave bakes on resume, not the canary again
