"""The rollout journal: where a rollout stands, written after every step so it can resume. Pure.

One journal per environment is "current" (`running` or `halted`) until it completes; completed
and abandoned journals move to history. A stack is `done` only after up and its health check;
a wave is `done` only after its bake. Resuming re-runs every stack that is not `done` (from
preflight: each step is safe to repeat) and finishes an interrupted bake for its remaining time.
A wave's traffic step records the global stack's weights before it changed them (`traffic`), so
the weights restored after its bake are those, whatever the weights are when a run resumes.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.core import patterns
from infra.core.errors import UserError

JOURNAL_VERSION = 1
StackStatus = Literal["pending", "running", "done", "failed", "rolled-back"]
WaveStatus = Literal["pending", "deploying", "baking", "done", "failed"]
RolloutStatus = Literal["running", "halted", "completed", "abandoned"]
TrafficStatus = Literal["setting", "set", "restoring", "restored"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StackRecord(_Model):
    wave: str
    region: str
    status: StackStatus = "pending"
    step: str = ""  # the step running or last run: preflight, preview, gate-policy, gate-cost, up, health, bench
    attempts: int = 0
    up_attempted: bool = False  # `up` ran (or started) for this stack in this rollout
    previous: dict[str, Any] | None = None  # the deployed record before this rollout's up (rollback source)
    preflight: list[dict[str, str]] = Field(default_factory=list)
    changes: dict[str, int] = Field(default_factory=dict)
    policy: dict[str, Any] | None = None  # {"mandatory": n, "advisory": n, "violations": [...]}
    cost: dict[str, str] | None = None  # {"scenario", "before_usd", "after_usd", "delta_usd", "limit_usd", "status"}
    health: str = ""
    bench: dict[str, Any] | None = None  # the bench gate's measured figures and verdict
    detail: str = ""
    rollback: str = ""


class WaveRecord(_Model):
    index: int
    status: WaveStatus = "pending"
    bake_minutes: float = 0
    bake_started_at: float | None = None
    bake_finished_at: float | None = None


class TrafficRecord(_Model):
    """A wave's traffic step: the weights it holds from its first up to the end of its bake."""

    before: dict[str, int]  # the global stack's weights before the step: what is restored after the bake
    during: dict[str, int]
    status: TrafficStatus = "setting"

    @property
    def held(self) -> bool:
        return self.status != "restored"


class Event(_Model):
    at: float
    wave: str = ""
    stack: str = ""
    step: str
    status: str  # start | ok | fail | skip | info
    detail: str = ""


class Halt(_Model):
    wave: str
    stack: str = ""
    step: str
    reason: str
    at: float


class Journal(_Model):
    version: int = JOURNAL_VERSION
    rollout_id: str = Field(pattern=patterns.STACK)  # names history/<rollout_id>.json
    environment: str
    plan_path: str
    plan_digest: str
    structure_digest: str
    status: RolloutStatus = "running"
    started_at: float
    updated_at: float
    runs: int = 1  # 1 + times resumed
    halted: Halt | None = None
    approvals: list[dict[str, str]] = Field(default_factory=list)  # {"stack", "by", "gate"}
    waves: dict[str, WaveRecord]
    stacks: dict[str, StackRecord]
    traffic: dict[str, TrafficRecord] = Field(default_factory=dict)  # wave -> its traffic step, once taken
    events: list[Event] = Field(default_factory=list)

    @property
    def unfinished(self) -> bool:
        return self.status in ("running", "halted")

    def event(self, at: float, step: str, status: str, detail: str = "", *, wave: str = "", stack: str = "") -> None:
        self.events.append(Event(at=at, wave=wave, stack=stack, step=step, status=status, detail=detail))
        self.updated_at = at

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def new_journal(plan: Any, plan_path: str, plan_digest: str, rollout_id: str, now: float) -> Journal:
    """A fresh journal for a `infra.core.rollout.spec.RolloutPlan`."""
    waves = {w.name: WaveRecord(index=i, bake_minutes=w.bake_minutes) for i, w in enumerate(plan.waves)}
    stacks = {
        s: StackRecord(wave=w.name, region=plan.region_of(s).region) for w in plan.waves for s in w.stacks
    }
    return Journal(
        rollout_id=rollout_id, environment=plan.environment, plan_path=plan_path, plan_digest=plan_digest,
        structure_digest=plan.structure_digest(), started_at=now, updated_at=now, waves=waves, stacks=stacks,
    )


def journal_mismatch(journal: Journal, plan: Any) -> str:
    """What a journal lacks against the plan's waves and stacks ('' when it has each, in its wave):
    a journal can validate and carry the plan's structure digest yet miss a wave's record."""
    problems = []
    waves = [w.name for w in plan.waves]
    missing = [w for w in waves if w not in journal.waves]
    if missing:
        problems.append(f"no record of wave(s) {', '.join(missing)}")
    for wave in plan.waves:
        for stack in wave.stacks:
            rec = journal.stacks.get(stack)
            if rec is None:
                problems.append(f"no record of stack {stack}")
            elif rec.wave != wave.name:
                problems.append(f"stack {stack} recorded in wave {rec.wave}, not {wave.name}")
    extra = sorted(set(journal.waves) - set(waves)) + sorted(set(journal.stacks) - {s for w in plan.waves for s in w.stacks})
    if extra:
        problems.append(f"records of waves or stacks the plan does not list: {', '.join(extra)}")
    return "; ".join(problems)


def parse_journal(data: Any, where: str) -> Journal:
    try:
        return Journal.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise UserError(
            f"{where}: not a rollout journal this version can read ({path}: {first['msg']}); "
            "it cannot be resumed"
        ) from None
