"""The rollout orchestration: waves of region stacks, gates, halt, rollback and resume.

For each wave in order, for each of its stacks in order:

    preflight -> preview (policy pack) -> policy gate -> cost gate -> [traffic] -> up -> health gate -> [bench]

then the wave bakes (health checked every `interval_s` for `bake_minutes`) before the next
wave starts. A wave with a traffic step holds its weights through the environment's global stack
from before its first up until its bake ends, then restores the weights it found (journaled, so
a resumed rollout restores those). The first failure halts the rollout: the journal records
where and why, the failed wave is optionally rolled back (each stack updated in this rollout is
re-applied with the config it had before, and its weights restored once all are), and `--resume`
later continues with the first stack that is not done.

Only the interfaces in `infra.core.rollout.interfaces` are touched here (no pulumi, no boto3), so
tests drive every path with fakes and a fake clock.
"""
from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, TextIO

from infra.core.bench.results import attainment_target_pct
from infra.core.errors import UserError, WorkspaceError
from infra.core.rollout.gates import APPROVE_ALL, GateVerdict, bench_verdict, cost_verdict, policy_verdict
from infra.core.rollout.interfaces import (BenchRunner, Clock, CostModel, HealthChecker, Preflight, SystemClock,
                                           Workspace)
from infra.core.rollout.journal import Halt, Journal, TrafficRecord, journal_mismatch, new_journal, parse_journal
from infra.core.rollout.report import rollout_command
from infra.core.rollout.spec import RolloutPlan, Wave
from infra.core.rollout.traffic import changes as weight_changes
from infra.core.rollout.traffic import weights_during
from infra.ops.rollout.state import StateStore
from infra.ops.rollout.traffic import GlobalTraffic, up_with_config



@dataclass
class RunOptions:
    resume: bool = False
    restart: bool = False  # abandon an unfinished rollout and start a new one
    approve_cost: frozenset[str] = frozenset()  # stack names, or "all"
    approver: str = ""
    verbose: bool = False  # stream Pulumi's own output
    # Flags the command was given that locate this rollout's journal (--state-dir, --project-dir):
    # every "run this next" hint repeats them, or it would find no journal.
    repeat_flags: tuple[str, ...] = ()


@dataclass
class _Stop(Exception):
    wave: str
    stack: str
    step: str
    reason: str


def utc_stamp(now: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def default_rollout_id(environment: str, now: float) -> str:
    return f"{environment}-{utc_stamp(now)}-{os.urandom(2).hex()}"


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return os.environ.get("USER", "unknown")


@dataclass
class Runner:
    plan: RolloutPlan
    plan_path: str
    plan_digest: str
    workspace: Workspace
    preflight: Preflight
    health: HealthChecker | None
    cost_model: CostModel
    store: StateStore
    out: TextIO
    clock: Clock = field(default_factory=SystemClock)
    options: RunOptions = field(default_factory=RunOptions)
    rollout_id: Callable[[str, float], str] = default_rollout_id
    global_workspace: Workspace | None = None  # the environment's global stack (waves with traffic steps)
    bench: BenchRunner | None = None  # the health gate's bench check (a Job in the region)
    # The stack's attainment target (the command layer reads it from the stack's workload).
    bench_target_pct: Callable[[str], float] = lambda stack: attainment_target_pct(None)

    # --- progress ------------------------------------------------------------------------

    def _elapsed(self) -> str:
        secs = max(0, int(self.clock.now() - self._t0))
        return f"+{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"

    def say(self, text: str) -> None:
        self.out.write(f"[{self._elapsed()}] {text}\n")
        self.out.flush()

    def _pulumi_line(self, line: str) -> None:
        if self.options.verbose:
            self.out.write(f"      | {line.rstrip()}\n")
            self.out.flush()

    def _save(self, journal: Journal) -> None:
        journal.updated_at = self.clock.now()
        self.store.write_journal(journal.to_json())

    def _log(self, journal: Journal, step: str, status: str, detail: str = "", *, wave: str = "", stack: str = "") -> None:
        journal.event(self.clock.now(), step, status, detail, wave=wave, stack=stack)
        self._save(journal)

    # --- entry point ---------------------------------------------------------------------

    def run(self) -> Journal:
        """Run (or resume) the rollout under the environment's lock; returns the final journal.

        The journal's status is `completed` or `halted`; the caller renders it and picks the exit
        code. Lock contention raises RolloutLockedError; a journal that does not fit raises UserError.
        """
        self._t0 = self.clock.now()
        self._traffic_held: set[str] = set()  # waves whose traffic step this run has applied
        if any(w.traffic for w in self.plan.waves) and self.global_workspace is None:
            raise UserError(f"{self.plan_path}: waves with a traffic step need the environment's global stack "
                            "(global/Pulumi.yaml), and this rollout has none")
        holder = {
            "user": _who(), "host": socket.gethostname(), "pid": os.getpid(),
            "since": self._t0, "plan": self.plan_path,
        }
        with self.store.lock(holder):
            journal = self._open_journal()
            self.say(
                f"rollout {journal.rollout_id} of {self.plan.environment}: {len(self.plan.waves)} waves, "
                f"{len(journal.stacks)} stacks; journal in {self.store.describe()}"
                + (f" (resumed, run {journal.runs})" if journal.runs > 1 else "")
            )
            try:
                for wave in self.plan.waves:
                    self._run_wave(journal, wave)
            except _Stop as stop:
                self._halt(journal, stop)
                return journal
            journal.status = "completed"
            journal.halted = None
            self._log(journal, "rollout", "ok", "every wave is up, healthy and baked")
            self.say(f"rollout {journal.rollout_id} completed")
            self.store.archive_journal(journal.rollout_id, journal.to_json())
            return journal

    def command(self, *flags: str) -> str:
        """The command line to run next (`--resume`, `--restart`), with the flags it needs."""
        return rollout_command(self.plan_path, *flags, repeat=self.options.repeat_flags)

    def _read_journal(self, now: float) -> Journal | None:
        """The current journal; one that cannot be read is moved aside with --restart, else refused."""
        where = f"{self.store.describe()}/journal.json"
        try:
            raw = self.store.read_journal()
            return parse_journal(raw, where) if raw is not None else None
        except UserError as exc:
            if not self.options.restart:
                raise UserError(f"{exc}; `{self.command('--restart')}` moves it aside and starts a new rollout") from None
            moved = self.store.set_aside_journal(f"unreadable-journal-{utc_stamp(now)}")
            self.say(f"moved the unreadable journal aside to {moved} (--restart): {exc}")
            return None

    def _open_journal(self) -> Journal:
        now = self.clock.now()
        current = self._read_journal(now)
        if current is not None and current.unfinished:
            if self.options.restart:
                current.status = "abandoned"
                current.event(now, "rollout", "info", f"abandoned by {_who()} (--restart)")
                self.store.archive_journal(current.rollout_id, current.to_json())
                current = None
            elif not self.options.resume:
                at = current.halted
                where_halted = f" (halted at wave {at.wave}, stack {at.stack or '-'}, step {at.step}: {at.reason})" if at else " (interrupted)"
                raise UserError(
                    f"rollout {current.rollout_id} of {current.environment} is unfinished{where_halted}; "
                    f"continue it with `{self.command('--resume')}`, or abandon it with `{self.command('--restart')}`"
                )
            else:
                if current.structure_digest != self.plan.structure_digest():
                    raise UserError(
                        f"--resume: rollout {current.rollout_id} was started with other waves or stacks than "
                        f"{self.plan_path} now lists; restore the plan's waves, or abandon it with "
                        f"`{self.command('--restart')}`"
                    )
                mismatch = journal_mismatch(current, self.plan)
                if mismatch:
                    raise UserError(
                        f"--resume: the journal of rollout {current.rollout_id} ({self.store.describe()}/journal.json) "
                        f"does not match its own waves: {mismatch}; abandon it with `{self.command('--restart')}`"
                    )
                current.status = "running"
                current.runs += 1
                current.plan_digest = self.plan_digest
                self._approve(current)
                current.event(now, "rollout", "info", f"resumed by {_who()} (run {current.runs})")
                self._save(current)
                return current
        elif self.options.resume:
            last = f" (the last one, {current.rollout_id}, is {current.status})" if current else ""
            raise UserError(f"--resume: there is no unfinished rollout of {self.plan.environment} to resume{last}")
        journal = new_journal(self.plan, self.plan_path, self.plan_digest, self.rollout_id(self.plan.environment, now), now)
        self._approve(journal)
        journal.event(now, "rollout", "start", f"started by {_who()}")
        self._save(journal)
        return journal

    def _approve(self, journal: Journal) -> None:
        by = self.options.approver or _who()
        for name in sorted(self.options.approve_cost):
            if name != APPROVE_ALL and name not in journal.stacks:
                raise UserError(
                    f"--approve-cost: {name!r} is not allowed; a stack of this rollout ({', '.join(journal.stacks)}) or 'all'"
                )
            journal.approvals.append({"stack": name, "by": by, "gate": "cost"})

    def _approved_by(self, journal: Journal, stack: str) -> str | None:
        for a in reversed(journal.approvals):
            if a.get("gate") == "cost" and a.get("stack") in (stack, APPROVE_ALL):
                return a.get("by") or "unknown"
        return None

    # --- waves ---------------------------------------------------------------------------

    def _run_wave(self, journal: Journal, wave: Wave) -> None:
        record = journal.waves[wave.name]
        label = f"wave {record.index + 1}/{len(self.plan.waves)} {wave.name}"
        if record.status == "done":
            self.say(f"{label}: done in an earlier run, skipped")
            return
        if record.status == "failed":
            record.bake_started_at = None
        if record.status != "baking":
            record.status = "deploying"
            self._log(journal, "wave", "start", ", ".join(wave.stacks), wave=wave.name)
            self.say(f"{label}: {', '.join(wave.stacks)}")
        for stack in wave.stacks:
            if journal.stacks[stack].status == "done":
                self.say(f"  {stack}: done in an earlier run, skipped")
                continue
            self._run_stack(journal, wave, stack)
        self._bake(journal, wave, label)
        self._restore_traffic(journal, wave)
        record.status = "done"
        self._log(journal, "wave", "ok", "deployed and baked", wave=wave.name)

    def _step(self, journal: Journal, wave: Wave, stack: str, step: str) -> None:
        rec = journal.stacks[stack]
        rec.step = step
        self._log(journal, step, "start", wave=wave.name, stack=stack)

    def _ok(self, journal: Journal, wave: Wave, stack: str, step: str, detail: str) -> None:
        self._log(journal, step, "ok", detail, wave=wave.name, stack=stack)
        self.say(f"  {stack}: {step:<11} ok: {detail}")

    def _fail(self, journal: Journal, wave: Wave, stack: str, step: str, reason: str) -> _Stop:
        self._log(journal, step, "fail", reason, wave=wave.name, stack=stack)
        self.say(f"  {stack or 'wave ' + wave.name}: {step:<11} FAILED: {reason}")
        return _Stop(wave.name, stack, step, reason)

    def _run_stack(self, journal: Journal, wave: Wave, stack: str) -> None:
        rec = journal.stacks[stack]
        interrupted_up = rec.status == "running" and rec.step in ("up", "health", "bench") and rec.up_attempted
        rec.status = "running"
        rec.attempts += 1
        rec.detail = ""

        if interrupted_up:
            # The last run died during (or right after) `up`: bring the state in line with the
            # cloud before previewing again.
            self._step(journal, wave, stack, "refresh")
            try:
                self.workspace.refresh(stack, on_output=self._pulumi_line)
            except WorkspaceError as exc:
                raise self._fail(journal, wave, stack, "refresh", str(exc)) from None
            self._ok(journal, wave, stack, "refresh", "state refreshed after an interrupted update")

        # 1. preflight
        self._step(journal, wave, stack, "preflight")
        try:
            outputs = dict(self.workspace.outputs(stack))
        except WorkspaceError as exc:
            if exc.kind not in ("not-found",):
                raise self._fail(journal, wave, stack, "preflight", str(exc)) from None
            outputs = {}
        report = self.preflight.check(stack, outputs)
        rec.preflight = report.to_list()
        if not report.ok:
            raise self._fail(journal, wave, stack, "preflight", report.summary())
        self._ok(journal, wave, stack, "preflight", report.summary())

        # 2. preview with the policy pack
        self._step(journal, wave, stack, "preview")
        try:
            preview = self.workspace.preview(
                stack, policy_packs=self.plan.gates.policy.policy_packs, on_output=self._pulumi_line
            )
        except WorkspaceError as exc:
            raise self._fail(journal, wave, stack, "preview", str(exc)) from None
        rec.changes = {k: int(v) for k, v in preview.changes.items()}
        self._ok(journal, wave, stack, "preview", _changes_text(preview.changes))

        # 3. gates
        self._step(journal, wave, stack, "gate-policy")
        verdict = policy_verdict(self.plan.gates.policy, preview.policy_violations, preview.policy_evaluated)
        if verdict.status == "not-evaluated":
            verdict = GateVerdict("policy", "fail", "the preview did not evaluate the policy pack")
        rec.policy = dict(verdict.data or {}) | {"status": verdict.status}
        self._gate(journal, wave, stack, "gate-policy", verdict)

        self._step(journal, wave, stack, "gate-cost")
        previous = self.store.read_deployed(stack)
        verdict = self._cost_gate(journal, stack, preview.document, previous)
        rec.cost = {k: str(v) for k, v in (verdict.data or {}).items()} | {"status": verdict.status}
        self._gate(journal, wave, stack, "gate-cost", verdict)

        # 4. the wave's traffic step (once per run, before its first up), then up
        self._hold_traffic(journal, wave, stack)
        self._step(journal, wave, stack, "up")
        if not rec.up_attempted:
            rec.previous = previous  # what a rollback of this wave re-applies
        rec.up_attempted = True
        self._save(journal)
        config_text = self.workspace.config_text(stack)
        try:
            result = self.workspace.up(stack, on_output=self._pulumi_line)
        except WorkspaceError as exc:
            raise self._fail(journal, wave, stack, "up", str(exc)) from None
        if result.result != "succeeded":
            raise self._fail(journal, wave, stack, "up", f"update {result.result}")
        self._ok(journal, wave, stack, "up", _changes_text(result.changes) if result.changes else "updated")

        # 5. health, then once the SLO benchmark
        self._step(journal, wave, stack, "health")
        self._wait_healthy(journal, wave, stack)
        self._bench(journal, wave, stack, outputs)

        self.store.write_deployed(stack, {
            "config": config_text,
            "cost": {rec.cost.get("scenario", ""): rec.cost.get("after_usd", "")} if rec.cost else {},
            "rollout_id": journal.rollout_id,
            "at": self.clock.now(),
        })
        rec.status = "done"
        self._log(journal, "stack", "ok", "up and healthy", wave=wave.name, stack=stack)

    # --- traffic (the environment's global stack) ----------------------------------------

    def _global(self) -> GlobalTraffic:
        assert self.global_workspace is not None
        return GlobalTraffic(self.plan, self.global_workspace)

    def _hold_traffic(self, journal: Journal, wave: Wave, stack: str) -> None:
        """Apply the wave's weights before its first up in this run; the weights found are
        journaled the first time, so the restore after the bake puts those back."""
        if not wave.traffic or wave.name in self._traffic_held:
            return
        record = journal.traffic.get(wave.name)
        self._step(journal, wave, stack, "traffic")
        try:
            if record is None:
                record = TrafficRecord(before=self._global().current(), during=weights_during(self.plan, wave))
                journal.traffic[wave.name] = record
                self._save(journal)
            record.status = "setting"
            self._global().apply(record.during, self._pulumi_line)
        except WorkspaceError as exc:
            raise self._fail(journal, wave, stack, "traffic", f"global stack {self.plan.environment}: {exc}") from None
        record.status = "set"
        self._traffic_held.add(wave.name)
        self._ok(journal, wave, stack, "traffic", f"{weight_changes(record.before, record.during)} (until the bake ends)")

    def _restore_traffic(self, journal: Journal, wave: Wave) -> None:
        """Put back the weights journaled before the wave's traffic step."""
        record = journal.traffic.get(wave.name)
        if record is None or not record.held:
            return
        self._log(journal, "traffic-restore", "start", wave=wave.name)
        record.status = "restoring"
        try:
            self._global().apply(record.before, self._pulumi_line)
        except WorkspaceError as exc:
            raise self._fail(journal, wave, "", "traffic-restore", f"global stack {self.plan.environment}: {exc}") from None
        record.status = "restored"
        detail = f"{weight_changes(record.during, record.before)} (the weights before the wave)"
        self._log(journal, "traffic-restore", "ok", detail, wave=wave.name)
        self.say(f"  wave {wave.name}: traffic restored: {detail}")

    def _gate(self, journal: Journal, wave: Wave, stack: str, step: str, verdict: GateVerdict) -> None:
        if verdict.stops:
            hint = ""
            if verdict.gate == "cost":
                hint = f"; to accept it: {self.command('--resume', '--approve-cost', stack)}"
            raise self._fail(journal, wave, stack, step, verdict.reason + hint)
        shown = verdict.reason if verdict.status != "skip" else "skipped (" + verdict.reason + ")"
        self._log(journal, step, verdict.status, verdict.reason, wave=wave.name, stack=stack)
        self.say(f"  {stack}: {step:<11} {'ok' if verdict.status == 'pass' else verdict.status}: {shown}")

    def _cost_gate(self, journal: Journal, stack: str, document: Mapping[str, Any] | None,
                   previous: Mapping[str, Any] | None) -> GateVerdict:
        gate = self.plan.gates.cost
        if not gate.enabled:
            return GateVerdict("cost", "skip", "cost gate disabled")
        if document is None:
            return GateVerdict("cost", "fail", "the preview returned no document to cost")
        figure = self.cost_model.monthly(document, gate.scenario)
        before = None
        if previous:
            raw = (previous.get("cost") or {}).get(gate.scenario)
            try:
                before = Decimal(str(raw)) if raw not in (None, "") else None
            except InvalidOperation:
                before = None
        return cost_verdict(gate, before, Decimal(str(figure.usd_per_month)), approved_by=self._approved_by(journal, stack))

    def _wait_healthy(self, journal: Journal, wave: Wave, stack: str) -> None:
        rec = journal.stacks[stack]
        gate = self.plan.gates.health
        if gate is None or self.health is None:
            rec.health = "no health gate"
            self._ok(journal, wave, stack, "health", "no health gate configured")
            return
        deadline = self.clock.now() + gate.wait_timeout_s
        rounds = 0
        while True:
            rounds += 1
            report = self.health.check(stack, rec.region)
            rec.health = report.summary()
            if report.ok:
                self._ok(journal, wave, stack, "health", report.summary())
                return
            if self.clock.now() >= deadline:
                raise self._fail(
                    journal, wave, stack, "health",
                    f"not healthy after {gate.wait_timeout_s:g} s ({rounds} rounds): {report.summary()}",
                )
            self.say(f"  {stack}: health      waiting: {report.summary()}")
            self.clock.sleep(min(gate.interval_s, max(0.0, deadline - self.clock.now())))

    def _bench(self, journal: Journal, wave: Wave, stack: str, outputs: Mapping[str, Any]) -> None:
        """The health gate's bench check: a Job in the region; below its attainment target the stack fails."""
        gate = self.plan.gates.health
        check = gate.bench if gate is not None else None
        if check is None:
            return
        rec = journal.stacks[stack]
        self._step(journal, wave, stack, "bench")
        if self.bench is None:
            raise self._fail(journal, wave, stack, "bench", "the health gate lists a bench check and this rollout "
                                                            "has no bench runner")
        target = check.min_attainment_pct or self.bench_target_pct(stack)
        try:  # after up: a first deploy's outputs (its image registry) exist only now
            outputs = dict(self.workspace.outputs(stack))
        except WorkspaceError:
            pass
        self.say(f"  {stack}: bench       running Job {check.name} ({check.requests} requests, "
                 f"{check.duration_s:g} s at most)")
        outcome = self.bench.run(stack, rec.region, outputs)
        verdict = bench_verdict(check, outcome.document, target, outcome.error)
        rec.bench = {"job": outcome.job, "status": verdict.status, **dict(verdict.data or {})}
        self._gate(journal, wave, stack, "bench", verdict)

    def _bake(self, journal: Journal, wave: Wave, label: str) -> None:
        record = journal.waves[wave.name]
        if wave.bake_minutes <= 0:
            return
        if record.bake_started_at is None:
            record.bake_started_at = self.clock.now()
            record.status = "baking"
            self._log(journal, "bake", "start", f"{wave.bake_minutes:g} min", wave=wave.name)
        end = record.bake_started_at + wave.bake_minutes * 60
        left = end - self.clock.now()
        gate = self.plan.gates.health
        how = f"health every {gate.interval_s:g} s" if gate and self.health else "no health gate: time only"
        self.say(f"{label}: baking {wave.bake_minutes:g} min ({how}); {max(0, left) / 60:.1f} min left")
        while True:
            if gate is not None and self.health is not None:
                for stack in wave.stacks:
                    report = self.health.check(stack, journal.stacks[stack].region)
                    journal.stacks[stack].health = report.summary()
                    if not report.ok:
                        raise self._fail(journal, wave, stack, "bake", f"unhealthy during the bake: {report.summary()}")
            now = self.clock.now()
            if now >= end:
                break
            step = min(gate.interval_s if gate else end - now, end - now)
            self.clock.sleep(step)
            done_min = (self.clock.now() - record.bake_started_at) / 60
            self.say(f"{label}: baking {min(done_min, wave.bake_minutes):.0f}/{wave.bake_minutes:g} min, healthy")
        record.bake_finished_at = self.clock.now()
        self._log(journal, "bake", "ok", f"{wave.bake_minutes:g} min", wave=wave.name)
        self.say(f"{label}: baked {wave.bake_minutes:g} min")

    # --- halt and rollback ---------------------------------------------------------------

    def _halt(self, journal: Journal, stop: _Stop) -> None:
        wave = next(w for w in self.plan.waves if w.name == stop.wave)
        if stop.step != "traffic-restore":  # a failed restore is retried on resume, without a second bake
            journal.waves[wave.name].status = "failed"
        failed = journal.stacks[stop.stack] if stop.stack else None
        if failed is not None:
            failed.status = "failed"
            failed.detail = f"{stop.step}: {stop.reason}"
        if stop.step == "bake":
            for stack in wave.stacks:  # the wave as a whole failed its bake: redeploy it on resume
                if journal.stacks[stack].status == "done":
                    journal.stacks[stack].status = "failed"
                    journal.stacks[stack].detail = f"wave {wave.name} failed its bake ({stop.stack})"
        journal.halted = Halt(wave=stop.wave, stack=stop.stack, step=stop.step, reason=stop.reason, at=self.clock.now())
        journal.status = "halted"
        self._log(journal, "rollout", "fail", f"halted at {stop.step} of {stop.stack or stop.wave}: {stop.reason}",
                  wave=stop.wave, stack=stop.stack)
        self.say(f"HALTED: wave {stop.wave}, stack {stop.stack or '-'}, step {stop.step}: {stop.reason}")
        if self.plan.on_failure.rollback == "failed-wave":
            self._rollback(journal, wave)
        self._save(journal)

    def _rollback(self, journal: Journal, wave: Wave) -> None:
        for stack in wave.stacks:
            rec = journal.stacks[stack]
            if not rec.up_attempted:
                continue
            previous = rec.previous or {}
            config = previous.get("config")
            if not config:
                rec.rollback = "not rolled back: no earlier deployed config recorded (first rollout of this stack)"
                self._log(journal, "rollback", "skip", rec.rollback, wave=wave.name, stack=stack)
                self.say(f"  {stack}: rollback    skipped: {rec.rollback}")
                continue
            self._log(journal, "rollback", "start", "re-applying the last deployed config", wave=wave.name, stack=stack)
            try:
                result = up_with_config(self.workspace, stack, str(config), self._pulumi_line)
                ok = result.result == "succeeded"
                detail = f"re-applied the config of rollout {previous.get('rollout_id', '?')}: update {result.result}"
            except WorkspaceError as exc:
                ok, detail = False, f"rollback failed: {exc}"
            rec.rollback = detail
            if ok:
                rec.status = "rolled-back"
                self.store.write_deployed(stack, dict(previous))
            self._log(journal, "rollback", "ok" if ok else "fail", detail, wave=wave.name, stack=stack)
            self.say(f"  {stack}: rollback    {'ok' if ok else 'FAILED'}: {detail}")
        attempted = [journal.stacks[s] for s in wave.stacks if journal.stacks[s].up_attempted]
        if attempted and all(rec.status == "rolled-back" for rec in attempted):
            # The wave is back on its old config: its traffic goes back too (else it stays held).
            try:
                self._restore_traffic(journal, wave)
            except _Stop:
                pass  # logged; the weights stay held and the report says so


def _changes_text(changes: Mapping[str, int]) -> str:
    order = ("create", "update", "replace", "delete", "same")
    parts = [f"{changes[k]} to {k}" if k != "same" else f"{changes[k]} unchanged" for k in order if changes.get(k)]
    parts += [f"{v} {k}" for k, v in sorted(changes.items()) if k not in order and v]
    return ", ".join(parts) or "no changes"
