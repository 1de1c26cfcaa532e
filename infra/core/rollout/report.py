"""The final report of a rollout (from its journal): text table and JSON. Pure."""
from __future__ import annotations

import shlex
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

from infra.core.errors import EXIT_OK, EXIT_ROLLOUT_HALTED
from infra.core.rollout.gates import signed_usd
from infra.core.rollout.journal import Journal
from infra.core.rollout.traffic import changes


def exit_code(journal: Journal) -> int:
    return EXIT_OK if journal.status == "completed" else EXIT_ROLLOUT_HALTED


def _cost(rec: Any) -> str:
    if not rec.cost or "delta_usd" not in rec.cost:
        return "-"
    try:
        text = signed_usd(Decimal(rec.cost["delta_usd"]))
    except InvalidOperation:
        return "?"
    return text + (" (approved)" if rec.cost.get("status") == "approved" else "")


def _policy(rec: Any) -> str:
    if not rec.policy:
        return "-"
    return f"{rec.policy.get('status', '?')} ({rec.policy.get('mandatory', 0)}m/{rec.policy.get('advisory', 0)}a)"


def _bench(b: dict[str, Any]) -> str:
    """The bench gate's figures as the journal keeps them, in one line."""
    def p95(name: str) -> str:
        v = (b.get(name) or {}).get("p95")
        return "-" if v is None else f"{v:,.0f} ms"

    att, target = b.get("attainment_pct"), b.get("target_pct")
    req = b.get("requests") or {}
    return (f"{b.get('status', '?')}: attainment {'-' if att is None else f'{att:.2f} %'} (target "
            f"{'?' if target is None else f'{target:g}'} %), {req.get('ok', 0)}/{req.get('sent', 0)} requests ok, "
            f"TTFT p95 {p95('ttft_ms')}, TPOT p95 {p95('tpot_ms')}, e2e p95 {p95('e2e_ms')}"
            + (f"; {b['error']}" if b.get("error") else ""))


def rollout_command(plan_path: str, *flags: str, repeat: Sequence[str] = ()) -> str:
    """`python -m infra rollout PLAN FLAGS...` with `repeat`, the flags that locate the rollout's
    journal (--state-dir, --project-dir): a hint without them would find no journal."""
    return shlex.join(["python", "-m", "infra", "rollout", plan_path, *flags, *repeat])


def render_text(journal: Journal, plan_path: str, repeat: Sequence[str] = ()) -> str:
    head = f"rollout {journal.rollout_id} of {journal.environment}: {journal.status.upper()}"
    if journal.halted:
        h = journal.halted
        head += f" at wave {h.wave}, stack {h.stack or '-'}, step {h.step}"
    rows = [("WAVE", "STACK", "REGION", "STATUS", "COST/MONTH", "POLICY", "HEALTH")]
    for name, rec in journal.stacks.items():
        rows.append((rec.wave, name, rec.region, rec.status, _cost(rec), _policy(rec), rec.health or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [head, ""]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    waves = ", ".join(f"{n}: {w.status}" for n, w in journal.waves.items())
    lines += ["", f"waves: {waves}"]
    for name, rec in journal.stacks.items():
        if rec.bench:
            lines.append(f"bench {name}: {_bench(rec.bench)}")
    for name, rec in journal.stacks.items():
        if rec.rollback:
            lines.append(f"rollback {name}: {rec.rollback}")
    for wave, step in journal.traffic.items():
        state = ("restored after the bake" if not step.held
                 else "HELD: the weights before the wave are restored once it has baked (--resume)")
        lines.append(f"traffic {wave}: {changes(step.before, step.during)}; {state}")
    if journal.halted:
        lines.append(f"reason: {journal.halted.reason}")
        lines.append(f"resume: {rollout_command(plan_path, '--resume', repeat=repeat)}   (stacks already done are skipped)")
    return "\n".join(lines) + "\n"


def to_dict(journal: Journal) -> dict[str, Any]:
    doc = journal.to_json()
    doc["exit_code"] = exit_code(journal)
    return doc
