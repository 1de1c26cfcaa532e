"""The effectful edges of a rollout and of a deploy, as interfaces (Protocols) and plain result types. Pure.

The runner (infra/ops/rollout/runner.py) only talks to these; the real implementations are
`infra.ops.deploy.workspace.StackWorkspace` (a stack's two Pulumi projects, each a
`ProjectWorkspace`: `infra.ops.rollout.automation.AutomationWorkspace` over the Automation API,
or `infra.ops.deploy.workspace.InVpcWorkspace` over the in-VPC deployer, an `InVpcRunner`:
`infra.ops.deploy.codebuild.CodeBuildRunner`), `infra.ops.rollout.health` (Prometheus, direct or
through a `PrometheusClient` in the VPC, and HTTP over urllib), `infra.ops.preflight.checks.AwsPreflight`
(boto3) and the state stores in `infra.ops.rollout.state`; tests drive them all with fakes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

OnOutput = Callable[[str], None]


@dataclass(frozen=True)
class PreviewOutcome:
    """What `pulumi preview --policy-pack ...` said about one stack."""

    changes: Mapping[str, int]  # op -> count: create, update, delete, replace, same
    policy_violations: tuple[Mapping[str, str], ...] = ()  # {"policy", "enforcement", "urn", "message"}
    document: Mapping[str, Any] | None = None  # the `pulumi preview --json` document, when available
    policy_evaluated: bool = True


@dataclass(frozen=True)
class UpOutcome:
    result: str  # "succeeded" | "failed" | ...
    changes: Mapping[str, int] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)


class Workspace(Protocol):
    """The Pulumi operations a rollout needs, one stack at a time.

    Implementations raise `infra.core.errors.WorkspaceError` for failures the user can act on
    (stack locked by another update, stack missing, CLI missing, update failed).
    """

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: OnOutput) -> PreviewOutcome: ...

    def up(self, stack: str, *, on_output: OnOutput, config_file: str | None = None) -> UpOutcome: ...

    def refresh(self, stack: str, *, on_output: OnOutput) -> None: ...

    def outputs(self, stack: str) -> Mapping[str, Any]: ...

    def config_text(self, stack: str) -> str:
        """The stack's config file as deployed now (kept so a failed wave can be rolled back)."""
        ...


class ProjectWorkspace(Protocol):
    """One Pulumi project's operations on a stack: the base (run where the operator is) or the
    workloads (there too, or in the VPC). `exclude` leaves resources (and their dependents) out
    of an update; `continue_on_error` updates what it can when some resources fail."""

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: OnOutput) -> PreviewOutcome: ...

    def up(self, stack: str, *, on_output: OnOutput, config_file: str | None = None,
           exclude: Sequence[str] = (), continue_on_error: bool = False) -> UpOutcome: ...

    def refresh(self, stack: str, *, on_output: OnOutput) -> None: ...

    def destroy(self, stack: str, *, on_output: OnOutput) -> None: ...

    def outputs(self, stack: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class InVpcResult:
    """A finished run of the in-VPC deployer."""

    build_id: str
    status: str  # CodeBuild's: SUCCEEDED | FAILED | FAULT | TIMED_OUT | STOPPED
    document: Any = None  # what the build printed back (infra.core.deploy.result_lines), if anything
    log_tail: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class InVpcRunner(Protocol):
    """Runs one action (infra.core.deploy.ACTIONS) of a stack's in-VPC deployer and waits for
    it, streaming its log to `on_output`. `config_text` replaces the stack's config file in the
    sources the build gets (a rollback re-applies an older one)."""

    def run(self, stack: str, action: str, *, on_output: OnOutput, env: Mapping[str, str] | None = None,
            config_text: str | None = None) -> InVpcResult: ...


class PrometheusClient(Protocol):
    """Instant PromQL queries against a stack's Prometheus: one (HTTP status, body) per query,
    in order. Never raises: an unreachable Prometheus is a status 0 with the reason as body."""

    def query(self, stack: str, region: str, queries: Sequence[str]) -> list[tuple[int, bytes]]: ...


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "pass" | "fail" | "warn" | "skip"
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class CheckReport:
    """A round of preflight or health checks."""

    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        failed = self.failed
        if not failed:
            return f"{len(self.checks)}/{len(self.checks)} checks pass"
        return f"{len(failed)} of {len(self.checks)} checks fail: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)

    def to_list(self) -> list[dict[str, str]]:
        return [c.to_dict() for c in self.checks]


class Preflight(Protocol):
    """Capacity, quota and storage checks of one stack before anything changes."""

    def check(self, stack: str, outputs: Mapping[str, Any]) -> CheckReport: ...


class HealthChecker(Protocol):
    """One round of the health gate's checks against one deployed stack."""

    def check(self, stack: str, region: str) -> CheckReport: ...


@dataclass(frozen=True)
class BenchOutcome:
    """A finished bench Job: the `bench --json` document it printed back (None: none), and why not."""

    job: str
    document: Mapping[str, Any] | None
    error: str = ""
    log_tail: tuple[str, ...] = ()


class BenchRunner(Protocol):
    """Runs the health gate's `bench` check against one deployed stack (a Job in its cluster) and
    waits for it; `outputs` are the base stack's outputs (its image registry). Never raises for a
    failed run: the outcome says why."""

    def run(self, stack: str, region: str, outputs: Mapping[str, Any]) -> BenchOutcome: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class CostFigure:
    """A stack's monthly cost in one scenario (USD, Decimal), and where the number came from."""

    usd_per_month: Any  # Decimal
    source: str  # "preview" | "plan"


class CostModel(Protocol):
    def monthly(self, document: Mapping[str, Any], scenario: str) -> CostFigure: ...
