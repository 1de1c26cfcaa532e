"""Cost diff between two versions of the same stacks (base and head of a pull request). Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from infra.core.cost.report import SCENARIOS, ZERO, CostReport, cents


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


def pct(before: Decimal, after: Decimal) -> Decimal | None:
    if before == 0:
        return None
    return (after - before) / before * 100


@dataclass(frozen=True)
class StackDiff:
    stack: str
    before: CostReport | None  # None: the stack is new in head
    after: CostReport | None  # None: the stack is gone in head
    budget_usd_per_month: Decimal | None = None
    policy: PolicyVerdict | None = None

    @property
    def region(self) -> str:
        return (self.after or self.before).region  # type: ignore[union-attr]

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

    def gpu_changed(self) -> bool:
        return any(self.gpus(s, "before") != self.gpus(s, "after") for s in SCENARIOS)

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

    @property
    def headroom(self) -> Decimal | None:
        """Budget minus the head's worst case (negative: over budget)."""
        if self.budget_usd_per_month is None or self.after is None:
            return None
        return self.budget_usd_per_month - self.after.total_month("worst")

    def to_dict(self) -> dict[str, Any]:
        def m(d: Decimal | None) -> str | None:
            return None if d is None else str(cents(d))

        def p(d: Decimal | None) -> str | None:
            return None if d is None else str(d.quantize(Decimal("0.1")))

        return {
            "stack": self.stack,
            "region": self.region,
            "status": "added" if self.before is None else "removed" if self.after is None else "changed",
            "gpu": {
                s: {
                    "nodes_before": self.gpus(s, "before")[0], "nodes_after": self.gpus(s, "after")[0],
                    "gpus_before": self.gpus(s, "before")[1], "gpus_after": self.gpus(s, "after")[1],
                }
                for s in SCENARIOS
            },
            "usd_per_month": {
                s: {"before": m(self.month(s, "before")), "after": m(self.month(s, "after")),
                    "delta": m(self.delta(s)), "pct": p(self.pct(s))}
                for s in SCENARIOS
            },
            "components": {
                c: {
                    s: {"before": m(self.component_month(c, s, "before")), "after": m(self.component_month(c, s, "after")),
                        "delta": m(self.component_month(c, s, "after") - self.component_month(c, s, "before"))}
                    for s in SCENARIOS
                }
                for c in self.components()
            },
            "budget": {
                "monthly_budget_usd": m(self.budget_usd_per_month),
                "worst_case_usd_per_month": m(self.after.total_month("worst")) if self.after else None,
                "headroom_usd_per_month": m(self.headroom),
            },
            "policy": self.policy.to_dict() if self.policy else {"evaluated": False},
            "notes": list(self.after.notes) if self.after else [],
        }


@dataclass(frozen=True)
class CostDiff:
    stacks: tuple[StackDiff, ...] = field(default_factory=tuple)

    def total(self, scenario: str, which: str) -> Decimal:
        return sum((d.month(scenario, which) for d in self.stacks), ZERO)

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": "USD",
            "stacks": [d.to_dict() for d in self.stacks],
            "total_usd_per_month": {
                s: {
                    "before": str(cents(self.total(s, "before"))),
                    "after": str(cents(self.total(s, "after"))),
                    "delta": str(cents(self.total(s, "after") - self.total(s, "before"))),
                }
                for s in SCENARIOS
            },
            "mandatory_violations": sum(d.policy.mandatory for d in self.stacks if d.policy),
        }


def diff_reports(
    before: Mapping[str, CostReport],
    after: Mapping[str, CostReport],
    budgets: Mapping[str, Decimal | None] | None = None,
    verdicts: Mapping[str, PolicyVerdict | None] | None = None,
) -> CostDiff:
    """Stacks in head order, then stacks only in base (removed)."""
    budgets = budgets or {}
    verdicts = verdicts or {}
    names = list(after) + [s for s in before if s not in after]
    return CostDiff(tuple(
        StackDiff(s, before.get(s), after.get(s), budgets.get(s), verdicts.get(s)) for s in names
    ))
