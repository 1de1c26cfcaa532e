"""Cost diff between two versions of the same stacks (base and head of a pull request). Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from infra.core import money
from infra.core.labels import GLOBAL_PROJECT
from infra.core.cost.report import SCENARIOS, ZERO, CostReport


@dataclass(frozen=True)
class PolicyVerdict:
    """What the policy pack said about the head version of a stack."""

    evaluated: bool
    violations: tuple[dict, ...] = ()  # {"policy", "enforcement", "urn", "message"}

    @property
    def mandatory(self) -> int:
        return sum(1 for v in self.violations if v.get("enforcement") == "mandatory")

    @property
    def advisory(self) -> int:
        return sum(1 for v in self.violations if v.get("enforcement") != "mandatory")

    @property
    def passed(self) -> bool:
        return self.evaluated and self.mandatory == 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PolicyVerdict | None":
        if not data:
            return None
        raw = data.get("violations") or []
        return cls(True, tuple(
            {
                "policy": str(v.get("policy") or v.get("policy_name") or ""),
                "enforcement": str(v.get("enforcement") or "advisory"),
                "urn": str(v.get("urn") or ""),
                "message": str(v.get("message") or ""),
            }
            for v in raw if isinstance(v, Mapping)
        ))

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluated": self.evaluated,
            "passed": self.passed,
            "mandatory": self.mandatory,
            "advisory": self.advisory,
            "violations": list(self.violations),
        }


@dataclass(frozen=True)
class PlanFailure:
    """A side whose plan did not produce a plan document: what `plan --json` writes on failure,
    `{"stack", "exit_code", "error"}` (the PR workflow writes the same for a plan that crashed)."""

    exit_code: int
    error: str

    @classmethod
    def from_document(cls, doc: Any) -> "PlanFailure | None":
        """The failure a document records, or None when it is a plan or preview."""
        if not isinstance(doc, Mapping) or "error" not in doc or "resources" in doc or "steps" in doc:
            return None
        code = doc.get("exit_code")
        return cls(code if isinstance(code, int) and not isinstance(code, bool) else 1, str(doc.get("error") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "error": self.error}


def failure_document(stack: str, exit_code: int, error: str, project: str | None = None) -> dict[str, Any]:
    return {"stack": stack, "exit_code": exit_code, "error": error, **({"project": project} if project else {})}


def diff_key(stack: str, project: Any = None) -> str:
    """How a side's document is keyed: its stack, or `<project>/<stack>` for a global stack, which
    is named after its environment and so after a region stack too (prod and llm-fleet-global/prod)."""
    return f"{GLOBAL_PROJECT}/{stack}" if project == GLOBAL_PROJECT else stack


def pct(before: Decimal, after: Decimal) -> Decimal | None:
    if before == 0:
        return None
    return (after - before) / before * 100


@dataclass(frozen=True)
class TcoFigures:
    """What one side says of self-host vs API: the `tco` section of its `plan --json`
    (infra/core/cost/tco.py, `TcoReport.to_dict`)."""

    usd_per_million_tokens: Mapping[str, Decimal | None]  # "at_demand", "at_capacity"
    break_even_tokens_per_day: Mapping[str, Decimal | None]  # API key -> tokens/day (None: never)
    shown: tuple[str, ...] = ()  # the APIs of the short block (tco.compare_with)

    @classmethod
    def from_dict(cls, data: Any) -> "TcoFigures | None":
        if not isinstance(data, Mapping) or not isinstance(data.get("usd_per_million_tokens"), Mapping):
            return None

        def dec(v: Any) -> Decimal | None:
            return None if v is None or isinstance(v, bool) else Decimal(str(v))

        apis = [a for a in data.get("apis") or () if isinstance(a, Mapping) and a.get("key")]
        return cls({k: dec(data["usd_per_million_tokens"].get(k)) for k in ("at_demand", "at_capacity")},
                   {str(a["key"]): dec(a.get("break_even_tokens_per_day")) for a in apis},
                   tuple(str(a["key"]) for a in apis if a.get("in_short_block")))


def _change(before: Decimal | None, after: Decimal | None) -> Decimal | None:
    return None if before is None or after is None else after - before


@dataclass(frozen=True)
class TypeChange:
    """GPU node groups whose instance types differ between base and head, grouped by the change."""

    before: tuple[str, ...]  # () : the group is new
    after: tuple[str, ...]  # () : the group is gone
    groups: tuple[str, ...]

    def text(self) -> str:
        b, a = ", ".join(self.before) or "(none)", ", ".join(self.after) or "(none)"
        return f"{b} -> {a} in {', '.join(self.groups)}"


@dataclass(frozen=True)
class StackDiff:
    stack: str
    before: CostReport | None  # None: the stack is new in head, or its base plan failed
    after: CostReport | None  # None: the stack is gone in head, or its head plan failed
    budget_usd_per_month: Decimal | None = None
    policy: PolicyVerdict | None = None  # the head's verdict
    base_policy: PolicyVerdict | None = None  # the base's own verdict, when its plan carries one
    head_failure: PlanFailure | None = None
    base_failure: PlanFailure | None = None
    tco_before: TcoFigures | None = None  # None: that side's document carries no TCO
    tco_after: TcoFigures | None = None

    @property
    def status(self) -> str:
        """failed (the head's plan failed), base-failed, added, removed or changed."""
        if self.head_failure is not None:
            return "failed"
        if self.base_failure is not None:
            return "base-failed"
        return "added" if self.before is None else "removed" if self.after is None else "changed"

    @property
    def comparable(self) -> bool:
        """Both sides planned (or one side genuinely absent): the delta means something."""
        return self.head_failure is None and self.base_failure is None

    @property
    def region(self) -> str:
        report = self.after or self.before
        return report.region if report else ""

    def month(self, scenario: str, which: str) -> Decimal:
        report = self.before if which == "before" else self.after
        return report.total_month(scenario) if report else ZERO

    def delta(self, scenario: str) -> Decimal:
        return self.month(scenario, "after") - self.month(scenario, "before")

    def pct(self, scenario: str) -> Decimal | None:
        return pct(self.month(scenario, "before"), self.month(scenario, "after"))

    def gpus(self, scenario: str, which: str) -> tuple[int, int]:
        report = self.before if which == "before" else self.after
        if report is None:
            return 0, 0
        g = report.gpu[scenario]
        return g.nodes, g.gpus

    def type_changes(self) -> list[TypeChange]:
        """Instance-type changes per GPU node group (matched by name), same changes together."""
        if self.before is None or self.after is None:
            return []
        old = {g.name: g.instance_types for g in self.before.gpu_groups}
        new = {g.name: g.instance_types for g in self.after.gpu_groups}
        changes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
        for name in list(old) + [n for n in new if n not in old]:
            b, a = old.get(name, ()), new.get(name, ())
            if b != a:
                changes.setdefault((b, a), []).append(name)
        return [TypeChange(b, a, tuple(groups)) for (b, a), groups in changes.items()]

    def gpu_changed(self) -> bool:
        return bool(self.type_changes()) or any(self.gpus(s, "before") != self.gpus(s, "after") for s in SCENARIOS)

    def components(self) -> list[str]:
        names: list[str] = []
        for r in (self.before, self.after):
            for c in (r.components() if r else []):
                if c not in names:
                    names.append(c)
        return names

    def component_month(self, component: str, scenario: str, which: str) -> Decimal:
        report = self.before if which == "before" else self.after
        return report.component_month(component, scenario) if report else ZERO

    def tco_apis(self) -> list[str]:
        """The APIs whose break-even the diff shows: the short block's of either side."""
        names: list[str] = []
        for t in (self.tco_after, self.tco_before):
            names += [k for k in (t.shown if t else ()) if k not in names]
        return names

    def tco_dict(self) -> dict[str, Any] | None:
        """Before / after / delta of $/1M tokens and of the break-even per API; None without a TCO on either side."""
        if self.tco_before is None and self.tco_after is None:
            return None
        b, a = self.tco_before, self.tco_after

        def per_million(key: str) -> dict[str, Any]:
            x = b.usd_per_million_tokens.get(key) if b else None
            y = a.usd_per_million_tokens.get(key) if a else None
            return {"before": money.usd_rate(x), "after": money.usd_rate(y), "delta": money.usd_rate(_change(x, y))}

        def even(key: str) -> dict[str, Any]:
            x = b.break_even_tokens_per_day.get(key) if b else None
            y = a.break_even_tokens_per_day.get(key) if a else None
            return {"before": money.number(x, 0), "after": money.number(y, 0), "delta": money.number(_change(x, y), 0)}

        return {"usd_per_million_tokens": {k: per_million(k) for k in ("at_demand", "at_capacity")},
                "break_even_tokens_per_day": {k: even(k) for k in self.tco_apis()}}

    @property
    def headroom(self) -> Decimal | None:
        """Budget minus the head's worst case (negative: over budget)."""
        if self.budget_usd_per_month is None or self.after is None:
            return None
        return self.budget_usd_per_month - self.after.total_month("worst")

    def to_dict(self) -> dict[str, Any]:
        """Amounts as decimal strings, percentages and counts as numbers (infra.core.money);
        a failed side's amounts and every delta it would feed are null."""
        ok = self.comparable

        def side(failed: PlanFailure | None, value: Decimal) -> str | None:
            return None if failed is not None else money.usd(value)

        return {
            "stack": self.stack,
            "region": self.region,
            "status": self.status,
            "failure": {
                "head": self.head_failure.to_dict() if self.head_failure else None,
                "base": self.base_failure.to_dict() if self.base_failure else None,
            },
            "gpu": {
                s: {
                    "nodes_before": self.gpus(s, "before")[0], "nodes_after": self.gpus(s, "after")[0],
                    "gpus_before": self.gpus(s, "before")[1], "gpus_after": self.gpus(s, "after")[1],
                }
                for s in SCENARIOS
            },
            "instance_type_changes": [
                {"before": list(c.before), "after": list(c.after), "node_groups": list(c.groups)}
                for c in self.type_changes()
            ],
            "usd_per_month": {
                s: {"before": side(self.base_failure, self.month(s, "before")),
                    "after": side(self.head_failure, self.month(s, "after")),
                    "delta": money.usd(self.delta(s)) if ok else None,
                    "pct": money.pct(self.pct(s)) if ok else None}
                for s in SCENARIOS
            },
            "components_usd_per_month": {
                c: {
                    s: {"before": side(self.base_failure, self.component_month(c, s, "before")),
                        "after": side(self.head_failure, self.component_month(c, s, "after")),
                        "delta": money.usd(self.component_month(c, s, "after") - self.component_month(c, s, "before"))
                        if ok else None}
                    for s in SCENARIOS
                }
                for c in self.components()
            },
            "budget": {
                "monthly_budget_usd": money.usd(self.budget_usd_per_month),
                "worst_case_usd_per_month": money.usd(self.after.total_month("worst")) if self.after else None,
                "headroom_usd_per_month": money.usd(self.headroom),
            },
            "policy": self.policy.to_dict() if self.policy else {"evaluated": False},
            "base_policy": self.base_policy.to_dict() if self.base_policy else {"evaluated": False},
            "tco": self.tco_dict(),
            "notes": list(self.after.notes) if self.after else [],
        }


@dataclass(frozen=True)
class CostDiff:
    stacks: tuple[StackDiff, ...] = field(default_factory=tuple)

    def total(self, scenario: str, which: str) -> Decimal:
        """Over the stacks whose delta means something (a failed plan is left out)."""
        return sum((d.month(scenario, which) for d in self.stacks if d.comparable), ZERO)

    @property
    def failed(self) -> tuple[StackDiff, ...]:
        return tuple(d for d in self.stacks if not d.comparable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": "USD",
            "stacks": [d.to_dict() for d in self.stacks],
            "total_usd_per_month": {
                s: {
                    "before": money.usd(self.total(s, "before")),
                    "after": money.usd(self.total(s, "after")),
                    "delta": money.usd(self.total(s, "after") - self.total(s, "before")),
                }
                for s in SCENARIOS
            },
            "failed_plans": [{"stack": d.stack, "side": "head" if d.head_failure else "base",
                              **(d.head_failure or d.base_failure).to_dict()}  # type: ignore[union-attr]
                             for d in self.failed],
            "mandatory_violations": sum(d.policy.mandatory for d in self.stacks if d.policy),
        }


def diff_reports(
    before: Mapping[str, CostReport],
    after: Mapping[str, CostReport],
    budgets: Mapping[str, Decimal | None] | None = None,
    verdicts: Mapping[str, PolicyVerdict | None] | None = None,
    *,
    base_verdicts: Mapping[str, PolicyVerdict | None] | None = None,
    head_failures: Mapping[str, PlanFailure] | None = None,
    base_failures: Mapping[str, PlanFailure] | None = None,
    tco_before: Mapping[str, TcoFigures | None] | None = None,
    tco_after: Mapping[str, TcoFigures | None] | None = None,
) -> CostDiff:
    """Stacks in head order (failed head plans among them), then stacks only in base (removed)."""
    budgets, verdicts, base_verdicts = budgets or {}, verdicts or {}, base_verdicts or {}
    tco_before, tco_after = tco_before or {}, tco_after or {}
    head_failures, base_failures = head_failures or {}, base_failures or {}
    names: list[str] = []
    for name in [*after, *head_failures, *before, *base_failures]:
        if name not in names:
            names.append(name)
    return CostDiff(tuple(
        StackDiff(s, before.get(s), after.get(s), budgets.get(s), verdicts.get(s), base_verdicts.get(s),
                  head_failures.get(s), base_failures.get(s), tco_before.get(s), tco_after.get(s))
        for s in names
    ))
