"""The rollout orchestration, driven with fakes: order, halts, gates, resume, lock, rollback."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from infra.core.errors import UserError
from infra.core.rollout import report
from infra.core.errors import EXIT_LOCKED, RolloutLockedError, WorkspaceError
from infra.core.rollout.interfaces import UpOutcome
from infra.core.rollout.journal import Journal

from rollout_support import Harness, locked_error, plan_doc

ORDER = ["west", "east", "east2"]


def test_happy_path_runs_waves_in_order_bakes_and_archives(harness):
    journal = harness.run()
    assert journal.status == "completed"
    assert harness.workspace.ops("up") == ORDER
    assert harness.workspace.ops("preview") == ORDER
    assert harness.preflight.checked == ORDER
    # Every stack's preview precedes its up, and wave 1 is baked before wave 2 starts.
    calls = harness.workspace.calls
    assert calls.index(("west", "up")) < calls.index(("east", "preview"))
    assert sum(harness.clock.slept) >= 10 * 60 + 5 * 60  # both bakes ran their full time
    assert all(w.status == "done" for w in journal.waves.values())
    assert harness.store.read_journal() is None  # moved to history
    assert (harness.store.root / "history" / "prod-run-1.json").is_file()
    deployed = harness.store.read_deployed("west")
    assert deployed["config"] == "config of west v2\n" and deployed["cost"] == {"worst": "500.00"}
    assert report.exit_code(journal) == 0
    assert "rollout prod-run-1 completed" in harness.out.getvalue()


def test_a_stack_failing_mid_wave_halts_and_later_stacks_never_run(harness):
    harness.workspace.fail[("east", "up")] = WorkspaceError("east: up failed: boom")
    journal = harness.run()
    assert journal.status == "halted"
    assert journal.halted.stack == "east" and journal.halted.step == "up"
    assert harness.workspace.ops("up") == ["west", "east"]  # east2 (same wave) never touched
    assert "east2" not in harness.workspace.ops("preview")
    assert journal.stacks["west"].status == "done"
    assert journal.stacks["east"].status == "failed"
    assert journal.stacks["east2"].status == "pending"
    assert report.exit_code(journal) == 5
    text = report.render_text(journal, "stacks/prod.yaml")
    assert "HALTED at wave main, stack east, step up" in text and "--resume" in text
    saved = Journal.model_validate(harness.store.read_journal())
    assert saved.status == "halted"


def test_resume_skips_finished_stacks_and_waves(harness):
    harness.workspace.fail[("east", "up")] = WorkspaceError("east: up failed: boom")
    harness.run()
    del harness.workspace.fail[("east", "up")]
    harness.workspace.calls.clear()
    harness.preflight.checked.clear()
    journal = harness.run(resume=True)
    assert journal.status == "completed"
    assert harness.workspace.ops("up") == ["east", "east2"]  # west (done, baked) skipped
    assert harness.preflight.checked == ["east", "east2"]
    assert journal.runs == 2
    assert "wave 1/2 canary: done in an earlier run, skipped" in harness.out.getvalue()


def test_second_rollout_is_refused_by_the_lock(harness, tmp_path):
    other = Harness(tmp_path)  # same state directory, another process's view
    seen = {}

    def try_second(stack):
        if stack == "west":
            with pytest.raises(RolloutLockedError) as info:
                other.run()
            seen["message"] = str(info.value)

    harness.workspace.on_up = try_second
    journal = harness.run()
    assert journal.status == "completed"
    assert "locked by" in seen["message"] and "user=" in seen["message"]
    assert RolloutLockedError.exit_code == EXIT_LOCKED == 7
    assert other.workspace.calls == []  # the refused rollout changed nothing
    # Once released, the next rollout may take it.
    assert other.run().status == "completed"


def test_preflight_gate_stops_before_anything_changes(harness):
    harness.preflight.failing.add("west")
    journal = harness.run()
    assert journal.halted.step == "preflight"
    assert "quota 192 vCPUs" in journal.halted.reason
    assert harness.workspace.ops("preview") == [] and harness.workspace.ops("up") == []


def test_policy_gate_stops_on_a_mandatory_violation(harness):
    harness.workspace.violations["west"] = [
        {"policy": "gpu-spend-cap-stack", "enforcement": "mandatory", "urn": "u", "message": "spend must stay in budget"},
        {"policy": "kms-key-rotation", "enforcement": "advisory", "urn": "u", "message": "rotate"},
    ]
    journal = harness.run()
    assert journal.halted.step == "gate-policy"
    assert "gpu-spend-cap-stack" in journal.halted.reason
    assert harness.workspace.ops("up") == []
    assert journal.stacks["west"].policy["mandatory"] == 1


def test_policy_gate_advisory_only_passes_unless_configured(tmp_path):
    violations = [{"policy": "kms-key-rotation", "enforcement": "advisory", "urn": "u", "message": "rotate"}]
    h = Harness(tmp_path / "a")
    h.workspace.violations["west"] = violations
    assert h.run().status == "completed"
    strict = Harness(tmp_path / "b", plan_doc(gates__policy={"fail_on_advisory": True}))
    strict.workspace.violations["west"] = violations
    assert strict.run().halted.step == "gate-policy"


def test_cost_gate_stops_above_the_limit_and_approval_lets_it_through(harness):
    harness.cost.usd["east"] = Decimal("5000")
    journal = harness.run()
    assert journal.halted.step == "gate-cost" and journal.halted.stack == "east"
    assert "+$5,000.00/month" in journal.halted.reason and "--approve-cost east" in journal.halted.reason
    assert harness.workspace.ops("up") == ["west"]
    journal = harness.run(resume=True, approve_cost=frozenset({"east"}))
    assert journal.status == "completed"
    assert journal.stacks["east"].cost["status"] == "approved"
    assert {"stack": "east", "by": "tester", "gate": "cost"} in journal.approvals


def test_cost_gate_compares_against_the_last_deployed_cost(harness):
    harness.store.write_deployed("west", {"config": "old", "cost": {"worst": "9000"}})
    harness.cost.usd["west"] = Decimal("9800")  # +800 <= 1000
    journal = harness.run()
    assert journal.status == "completed"
    assert journal.stacks["west"].cost["delta_usd"] == "800.00"


def test_unknown_approval_is_refused(harness):
    with pytest.raises(UserError, match="--approve-cost: 'nope' is not allowed"):
        harness.run(approve_cost=frozenset({"nope"}))


def test_health_gate_after_up_waits_then_stops(harness):
    harness.health.unhealthy["west"] = 0
    journal = harness.run()
    assert journal.halted.step == "health"
    assert "not healthy after 300 s" in journal.halted.reason
    assert harness.workspace.ops("up") == ["west"]
    assert harness.health.calls.count("west") == 6  # t=0,60,...,300
    assert harness.workspace.ops("preview") == ["west"]


def test_health_gate_recovers_within_the_wait(harness):
    calls = {"n": 0}
    original = harness.health.check

    def flaky(stack, region):
        calls["n"] += 1
        if stack == "west" and calls["n"] <= 2:
            from infra.core.rollout.interfaces import CheckReport, CheckResult
            return CheckReport((CheckResult("ttft-p95", "fail", "no data"),))
        return original(stack, region)

    harness.health.check = flaky
    assert harness.run().status == "completed"


def test_bake_failure_halts_the_wave_and_resume_redeploys_it(harness):
    harness.health.unhealthy["east2"] = 1  # healthy after up, unhealthy during the bake
    journal = harness.run()
    assert journal.halted.step == "bake" and journal.halted.wave == "main"
    assert journal.stacks["east"].status == "failed" and journal.stacks["east2"].status == "failed"
    assert journal.stacks["west"].status == "done"
    del harness.health.unhealthy["east2"]
    harness.workspace.calls.clear()
    journal = harness.run(resume=True)
    assert journal.status == "completed"
    assert harness.workspace.ops("up") == ["east", "east2"]


def test_failed_wave_is_rolled_back_to_its_previous_config(tmp_path):
    h = Harness(tmp_path, plan_doc(on_failure={"action": "halt", "rollback": "failed-wave"}))
    h.store.write_deployed("east", {"config": "config of east v1\n", "cost": {"worst": "500"}, "rollout_id": "old-1"})
    h.workspace.fail[("east2", "up")] = WorkspaceError("east2: up failed: quota")
    journal = h.run()
    assert journal.status == "halted"
    rollbacks = [(s, text) for s, f, text in h.workspace.up_config_files if f is not None]
    assert rollbacks == [("east", "config of east v1\n"), ]  # east2 has no earlier config
    assert journal.stacks["east"].status == "rolled-back"
    assert "old-1" in journal.stacks["east"].rollback
    assert "no earlier deployed config" in journal.stacks["east2"].rollback
    assert h.store.read_deployed("east")["config"] == "config of east v1\n"
    assert "west" not in [s for s, f, _ in h.workspace.up_config_files if f is not None]  # earlier wave untouched


def test_failed_rollback_is_reported_not_raised(tmp_path):
    h = Harness(tmp_path, plan_doc(on_failure={"rollback": "failed-wave"}))
    h.store.write_deployed("west", {"config": "v1", "cost": {}})
    h.health.unhealthy["west"] = 0
    h.workspace.fail[("west", "rollback-up")] = WorkspaceError("west: up failed: state locked")
    journal = h.run()
    assert journal.stacks["west"].status == "failed"
    assert "rollback failed" in journal.stacks["west"].rollback


def test_update_result_other_than_succeeded_halts(harness):
    harness.workspace.fail[("west", "up")] = UpOutcome(result="failed")
    assert harness.run().halted.reason == "update failed"


def test_locked_stack_error_names_the_way_out(harness):
    harness.workspace.fail[("west", "up")] = locked_error()
    journal = harness.run()
    assert "another update holds the stack's lock" in journal.halted.reason


def test_crash_during_up_refreshes_on_resume(harness):
    class Crash(Exception):
        pass

    harness.workspace.fail[("east", "up")] = Crash("killed")
    with pytest.raises(Crash):
        harness.run()
    saved = Journal.model_validate(harness.store.read_journal())
    assert saved.status == "running" and saved.stacks["east"].step == "up"
    del harness.workspace.fail[("east", "up")]
    harness.workspace.calls.clear()
    journal = harness.run(resume=True)
    assert journal.status == "completed"
    assert harness.workspace.calls[0] == ("east", "refresh")
    assert harness.workspace.ops("up") == ["east", "east2"]


def test_crash_during_bake_resumes_only_the_remaining_bake(harness):
    class Crash(Exception):
        pass

    state = {"sleeps": 0}
    real_sleep = harness.clock.sleep

    def sleep(seconds):
        state["sleeps"] += 1
        if state["sleeps"] == 4:  # 3 minutes into the canary's 10-minute bake
            raise Crash()
        real_sleep(seconds)

    harness.clock.sleep = sleep
    with pytest.raises(Crash):
        harness.run()
    harness.clock.sleep = real_sleep
    harness.clock.slept.clear()
    harness.workspace.calls.clear()
    journal = harness.run(resume=True)
    assert journal.status == "completed"
    assert harness.workspace.ops("up") == ["east", "east2"]  # west done: not redeployed
    canary_bake = sum(harness.clock.slept) - 5 * 60  # minus the main wave's full bake
    assert canary_bake == pytest.approx(7 * 60)


def test_unfinished_rollout_needs_resume_or_restart(harness):
    harness.workspace.fail[("west", "up")] = WorkspaceError("boom")
    harness.run()
    with pytest.raises(UserError, match="unfinished.*--resume.*--restart"):
        harness.run()
    del harness.workspace.fail[("west", "up")]
    journal = harness.run(restart=True)
    assert journal.status == "completed" and journal.rollout_id == "prod-run-2"
    abandoned = json.loads((harness.store.root / "history" / "prod-run-1.json").read_text())
    assert abandoned["status"] == "abandoned"


def test_resume_without_an_unfinished_rollout_is_refused(harness):
    with pytest.raises(UserError, match="no unfinished rollout"):
        harness.run(resume=True)


def test_resume_refuses_a_plan_with_other_waves(harness, tmp_path):
    harness.workspace.fail[("west", "up")] = WorkspaceError("boom")
    harness.run()
    changed = Harness(tmp_path, plan_doc(waves=[
        {"name": "canary", "stacks": ["west"], "bake_minutes": 10},
        {"name": "main", "stacks": ["east2", "east"], "bake_minutes": 5},
    ]))
    with pytest.raises(UserError, match="other waves or stacks"):
        changed.run(resume=True)


def test_no_health_gate_bakes_on_time_only(tmp_path):
    doc = plan_doc()
    del doc["gates"]["health"]
    h = Harness(tmp_path, doc)
    h.health = None
    journal = h.runner().run()
    assert journal.status == "completed"
    assert journal.stacks["west"].health == "no health gate"
    assert sum(h.clock.slept) == 15 * 60


def test_journal_records_every_step_in_order(harness):
    journal = harness.run()
    west = [(e.step, e.status) for e in journal.events if e.stack == "west"]
    steps = [s for s, status in west if status == "start"]
    assert steps == ["preflight", "preview", "gate-policy", "gate-cost", "up", "health"]
    doc = report.to_dict(journal)
    assert doc["exit_code"] == 0 and doc["stacks"]["west"]["status"] == "done"


# --- issue 14: hints that work, and a journal that cannot be read ---------------------------

STATE_FLAGS = ("--state-dir", "/tmp/my state", "--project-dir", "/srv/fleet")


def test_every_resume_hint_repeats_the_flags_that_locate_the_journal(harness):
    """Issue 14: the resume hint dropped --state-dir, so running it found no rollout."""
    harness.workspace.fail[("east", "up")] = WorkspaceError("east: up failed: boom")
    journal = harness.run(repeat_flags=STATE_FLAGS)
    expected = "python -m infra rollout stacks/prod.yaml --resume --state-dir '/tmp/my state' --project-dir /srv/fleet"
    assert expected in report.render_text(journal, "stacks/prod.yaml", STATE_FLAGS)
    with pytest.raises(UserError) as exc:
        harness.run(repeat_flags=STATE_FLAGS)
    assert expected in str(exc.value) and "--restart --state-dir '/tmp/my state' --project-dir /srv/fleet" in str(exc.value)


def test_the_cost_gate_hint_repeats_the_flags_too(harness):
    from decimal import Decimal

    harness.cost.usd["west"] = Decimal("999999")
    journal = harness.run(repeat_flags=STATE_FLAGS)
    assert ("--resume --approve-cost west --state-dir '/tmp/my state' --project-dir /srv/fleet"
            in journal.halted.reason)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"version": 1}', '{"rollout_id": "../../etc/x"}'])
def test_restart_moves_an_unreadable_journal_aside(harness, text):
    """Issue 14: `--restart` could not get past a corrupt journal (every read refused it)."""
    harness.store.root.mkdir(parents=True, exist_ok=True)
    harness.store.journal_path.write_text(text)
    with pytest.raises(UserError, match="--restart` moves it aside"):
        harness.run()
    journal = harness.run(restart=True)
    assert journal.status == "completed"
    aside = list((harness.store.root / "history").glob("unreadable-journal-*.json"))
    assert len(aside) == 1 and aside[0].read_text() == text  # kept as it was, for a post-mortem
    assert "moved the unreadable journal aside" in harness.out.getvalue()


def test_a_journal_that_validates_but_lacks_a_wave_is_refused_not_a_keyerror(harness):
    """Issue 14: a journal with the plan's structure digest but no record of a wave gave a KeyError."""
    harness.workspace.fail[("west", "up")] = WorkspaceError("boom")
    harness.run()
    doc = harness.store.read_journal()
    del doc["waves"]["main"]
    harness.store.write_journal(doc)
    with pytest.raises(UserError, match="does not match its own waves: no record of wave.s. main"):
        harness.run(resume=True)
    del harness.workspace.fail[("west", "up")]
    assert harness.run(restart=True).status == "completed"
