"""Gate verdicts: pure functions from numbers and violations to pass/fail, with the reason.

Shared by the real rollout (numbers from `pulumi preview`) and the dry run (numbers from the
offline plan), so both say the same thing about the same change.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping, Sequence

from infra.core import money
from infra.core.rollout.spec import BenchCheck, CostGate, PolicyGate, PromQuery

CENT = Decimal("0.01")
APPROVE_ALL = "all"  # `--approve-cost all`: accept every stack's cost increase


def usd(amount: Decimal) -> str:
    q = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.2f}"


def signed_usd(amount: Decimal) -> str:
    return ("+" if amount >= 0 else "") + usd(amount)


@dataclass(frozen=True)
class GateVerdict:
    gate: str  # policy | cost | health
    status: str  # pass | fail | approved | skip | not-evaluated
    reason: str
    data: Mapping[str, Any] | None = None

    @property
    def stops(self) -> bool:
        return self.status == "fail"


def policy_verdict(gate: PolicyGate, violations: Sequence[Mapping[str, Any]], evaluated: bool = True) -> GateVerdict:
    if not gate.enabled:
        return GateVerdict("policy", "skip", "policy gate disabled")
    if not evaluated:
        return GateVerdict("policy", "not-evaluated", "policies were not evaluated")
    mandatory = [v for v in violations if str(v.get("enforcement", "")).lower() == "mandatory"]
    advisory = [v for v in violations if str(v.get("enforcement", "")).lower() != "mandatory"]
    data = {"mandatory": len(mandatory), "advisory": len(advisory), "violations": [dict(v) for v in violations]}
    counts = f"{len(mandatory)} mandatory, {len(advisory)} advisory"
    if mandatory:
        first = mandatory[0]
        return GateVerdict("policy", "fail", f"{counts}: {first.get('policy', '?')}: {first.get('message', '')}".rstrip(": "), data)
    if advisory and gate.fail_on_advisory:
        first = advisory[0]
        return GateVerdict(
            "policy", "fail", f"{counts} (fail_on_advisory): {first.get('policy', '?')}: {first.get('message', '')}", data
        )
    return GateVerdict("policy", "pass", counts, data)


def cost_verdict(
    gate: CostGate, before: Decimal | None, after: Decimal, *, approved_by: str | None = None
) -> GateVerdict:
    """`before` is the last deployed monthly cost (None: never deployed by a rollout, taken as 0)."""
    base = before if before is not None else Decimal(0)
    delta = after - base
    data = {  # money as decimal strings in keys ending _usd (infra.core.money)
        "scenario": gate.scenario,
        "before_usd": money.usd(base),
        "after_usd": money.usd(after),
        "delta_usd": money.usd(delta),
        "limit_usd": money.usd(gate.max_monthly_increase_usd),
        "new_stack": before is None,
    }
    if not gate.enabled:
        return GateVerdict("cost", "skip", "cost gate disabled", data)
    what = (
        f"{signed_usd(delta)}/month ({gate.scenario}: {usd(base)}{' (new stack)' if before is None else ''} -> {usd(after)})"
    )
    problems = []
    if delta > gate.max_monthly_increase_usd:
        problems.append(f"above the limit of +{usd(gate.max_monthly_increase_usd)}/month")
    if gate.max_monthly_increase_pct is not None and base > 0 and delta > 0:
        pct = delta / base * 100
        if pct > gate.max_monthly_increase_pct:
            problems.append(f"+{pct:.1f}% is above the limit of +{gate.max_monthly_increase_pct}%")
    if not problems:
        return GateVerdict("cost", "pass", f"{what}, within +{usd(gate.max_monthly_increase_usd)}/month", data)
    if approved_by:
        return GateVerdict("cost", "approved", f"{what}, {'; '.join(problems)}; approved by {approved_by}", data)
    return GateVerdict("cost", "fail", f"{what}, {'; '.join(problems)}", data)


def query_verdict(query: PromQuery, samples: Sequence[tuple[str, float]]) -> tuple[str, str]:
    """(status, detail) of one PromQL SLO given its samples (label text, value)."""
    if not samples:
        if query.on_no_data == "pass":
            return "pass", "no data (on_no_data: pass)"
        return "fail", "no data (no samples; is traffic reaching the region?)"
    bad = []
    for labels, value in samples:
        if value != value:  # NaN: e.g. histogram_quantile of empty buckets
            bad.append(f"{labels or 'value'}=NaN")
        elif query.max_value is not None and value > query.max_value:
            bad.append(f"{labels or 'value'}={value:g} > {query.max_value:g}")
        elif query.min_value is not None and value < query.min_value:
            bad.append(f"{labels or 'value'}={value:g} < {query.min_value:g}")
    if bad:
        return "fail", "; ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
    shown = ", ".join(f"{v:g}" for _, v in samples[:3])
    return "pass", f"{shown} within bounds"


def _p(doc: Mapping[str, Any], name: str, q: str) -> float | None:
    v = (doc.get(name) or {}).get(q) if isinstance(doc.get(name), Mapping) else None
    return float(v) if isinstance(v, (int, float)) else None


def bench_figures(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the journal keeps of a bench run: attainment, requests, failures, the p50/p95s."""
    out: dict[str, Any] = {"attainment_pct": doc.get("attainment_pct"), "requests": dict(doc.get("requests") or {}),
                           "errors": dict(doc.get("errors") or {}), "wall_s": doc.get("wall_s"),
                           "output_tokens_per_s": doc.get("output_tokens_per_s"),
                           "requests_per_s": doc.get("requests_per_s"), "slo_ms": dict(doc.get("slo_ms") or {})}
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        out[name] = {q: _p(doc, name, q) for q in ("p50", "p95", "p99")}
    return out


def bench_verdict(check: BenchCheck, document: Mapping[str, Any] | None, target_pct: float,
                  error: str = "") -> GateVerdict:
    """Pass when the run's attainment (failures counted as misses) reaches `target_pct`."""
    if document is None:
        return GateVerdict("bench", "fail", f"{check.name}: no result ({error or 'the Job reported nothing'})",
                           {"error": error, "target_pct": target_pct})
    data = bench_figures(document) | {"target_pct": target_pct}
    attained = document.get("attainment_pct")
    req = data["requests"]
    failures = ", ".join(f"{k}: {v}" for k, v in data["errors"].items())
    what = (f"{req.get('ok', 0)}/{req.get('sent', 0)} requests ok" + (f" ({failures})" if failures else "")
            + f"; TTFT p95 {_ms(data['ttft_ms']['p95'])}, TPOT p95 {_ms(data['tpot_ms']['p95'])}")
    if not isinstance(attained, (int, float)):
        return GateVerdict("bench", "fail", f"{check.name}: no attainment in the result ({what})", data)
    if attained < target_pct:
        return GateVerdict("bench", "fail", f"{check.name}: attainment {attained:.2f} % is below the target "
                                            f"{target_pct:g} % ({what})", data)
    return GateVerdict("bench", "pass", f"{check.name}: attainment {attained:.2f} % >= {target_pct:g} % ({what})", data)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"
