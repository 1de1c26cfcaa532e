"""Fakes for the rollout's edges: workspace, preflight, health, cost model, clock."""
from __future__ import annotations

import copy
import io
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import CheckReport, CheckResult, CostFigure, PreviewOutcome, UpOutcome
from infra.ops.rollout.runner import Runner, RunOptions
from infra.core.rollout.spec import parse_rollout_plan
from infra.ops.rollout.state import LocalStateStore

REPO = Path(__file__).resolve().parents[2]

PLAN = {
    "environment": "prod",
    "regions": [
        {"stack": "west", "region": "us-west-2", "traffic_share_pct": 40, "absorb_region_failure": True},
        {"stack": "east", "region": "us-east-1", "traffic_share_pct": 30},
        {"stack": "east2", "region": "us-east-2", "traffic_share_pct": 30},
    ],
    "waves": [
        {"name": "canary", "stacks": ["west"], "bake_minutes": 10},
        {"name": "main", "stacks": ["east", "east2"], "bake_minutes": 5},
    ],
    "gates": {
        "cost": {"scenario": "worst", "max_monthly_increase_usd": 1000},
        "health": {
            "prometheus_url": "http://prom.{region}.test",
            "queries": [{"name": "ttft-p95", "query": "q", "max_value": 0.6}],
            "wait_timeout_s": 300,
            "interval_s": 60,
        },
    },
    "on_failure": {"action": "halt", "rollback": "none"},
}


def plan_doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PLAN)
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return doc


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class FakeWorkspace:
    """Records every call; `fail` maps (stack, op) -> exception or result override."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], Any] = {}
        self.violations: dict[str, list[dict[str, str]]] = {}
        self.up_seconds = 0.0
        self.clock = clock
        self.configs: dict[str, str] = {}
        self.up_config_files: list[tuple[str, str | None, str]] = []
        self.on_up: Callable[[str], None] | None = None

    def _maybe_fail(self, stack: str, op: str) -> Any:
        self.calls.append((stack, op))
        outcome = self.fail.get((stack, op))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: Callable[[str], None]) -> PreviewOutcome:
        self._maybe_fail(stack, "preview")
        on_output(f"previewing {stack}")
        return PreviewOutcome(changes={"create": 3, "same": 1}, policy_violations=tuple(self.violations.get(stack, [])),
                              document={"stack": stack, "steps": []})

    def up(self, stack: str, *, on_output: Callable[[str], None], config_file: str | None = None) -> UpOutcome:
        override = self._maybe_fail(stack, "up" if config_file is None else "rollback-up")
        text = Path(config_file).read_text() if config_file else ""
        self.up_config_files.append((stack, config_file, text))
        if self.on_up is not None and config_file is None:
            self.on_up(stack)
        if self.clock is not None:
            self.clock.t += self.up_seconds
        if isinstance(override, UpOutcome):
            return override
        return UpOutcome(result="succeeded", changes={"create": 3})

    def refresh(self, stack: str, *, on_output: Callable[[str], None]) -> None:
        self._maybe_fail(stack, "refresh")

    def outputs(self, stack: str) -> Mapping[str, Any]:
        self._maybe_fail(stack, "outputs")
        return {}

    def config_text(self, stack: str) -> str:
        return self.configs.get(stack, f"config of {stack} v2\n")

    def ops(self, op: str) -> list[str]:
        return [s for s, o in self.calls if o == op]


class FakePreflight:
    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.checked: list[str] = []

    def check(self, stack: str, outputs: Mapping[str, Any]) -> CheckReport:
        self.checked.append(stack)
        if stack in self.failing:
            return CheckReport((CheckResult("vcpu-quota", "fail", "quota 192 vCPUs, needs 2880"),))
        return CheckReport((CheckResult("instance-offering", "pass", "offered"), CheckResult("vcpu-quota", "pass", "ok")))


class FakeHealth:
    """Unhealthy for the stacks in `unhealthy` (from call number `after` on, per stack)."""

    def __init__(self) -> None:
        self.unhealthy: dict[str, int] = {}  # stack -> first failing call index (0-based)
        self.calls: list[str] = []

    def check(self, stack: str, region: str) -> CheckReport:
        n = self.calls.count(stack)
        self.calls.append(stack)
        if stack in self.unhealthy and n >= self.unhealthy[stack]:
            return CheckReport((CheckResult("ttft-p95", "fail", "0.9 > 0.6"),))
        return CheckReport((CheckResult("ttft-p95", "pass", "0.2 within bounds"),))


class FakeCost:
    def __init__(self, usd: dict[str, Decimal] | None = None) -> None:
        self.usd = usd or {}

    def monthly(self, document: Mapping[str, Any], scenario: str) -> CostFigure:
        return CostFigure(self.usd.get(document["stack"], Decimal("500")), "preview")


class Harness:
    def __init__(self, tmp_path: Path, plan: dict[str, Any] | None = None) -> None:
        self.tmp_path = tmp_path
        self.plan = parse_rollout_plan(plan or plan_doc())
        self.clock = FakeClock()
        self.workspace = FakeWorkspace(self.clock)
        self.preflight = FakePreflight()
        self.health = FakeHealth()
        self.cost = FakeCost()
        self.store = LocalStateStore(tmp_path / "state", self.plan.environment)
        self.out = io.StringIO()
        self.ids = iter(f"prod-run-{i}" for i in range(1, 100))
        self.global_workspace: Any = None  # the environment's global stack (plans with traffic steps)
        self.bench: Any = None  # the health gate's bench runner (plans with a bench check)

    def runner(self, **options: Any) -> Runner:
        return Runner(
            plan=self.plan, plan_path="stacks/prod.yaml", plan_digest="d1", workspace=self.workspace,
            preflight=self.preflight, health=self.health, cost_model=self.cost, store=self.store,
            out=self.out, clock=self.clock, options=RunOptions(approver="tester", **options),
            rollout_id=lambda env, now: next(self.ids), global_workspace=self.global_workspace,
            bench=self.bench,
        )

    def run(self, **options: Any):
        return self.runner(**options).run()


def locked_error(stack: str = "west") -> WorkspaceError:
    return WorkspaceError(f"{stack}: up: another update holds the stack's lock", kind="locked")
