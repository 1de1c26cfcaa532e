"""Human-facing output of cost reports and cost diffs: a terminal table, markdown, JSON.

Every renderer is a pure function of its input; golden files pin the output.
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping

from infra.core.catalog import HOURS_PER_MONTH
from infra.core.cost.diff import CostDiff, PolicyVerdict, StackDiff
from infra.core.errors import clip
from infra.core.graph import urn_label
from infra.core.cost.report import SCENARIOS, CostReport, cents

MARKER = "<!-- llm-fleet:cost-diff -->"
SCENARIO_LABEL = {"baseline": "baseline (min)", "expected": "expected (desired)", "worst": "worst case (max + pool)"}


def usd(amount: Decimal | None, places: int = 2) -> str:
    if amount is None:
        return "n/a"
    q = Decimal(1).scaleb(-places)
    value = amount.quantize(q, rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


def signed_usd(amount: Decimal) -> str:
    value = cents(amount)
    if value == 0:
        return "$0.00"
    return ("+" if value > 0 else "-") + f"${abs(value):,.2f}"


def signed_pct(value: Decimal | None) -> str:
    if value is None:
        return "new"
    v = value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if v == 0:
        return "0.0%"
    return f"{'+' if v > 0 else '-'}{abs(v)}%"


def signed_int(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _md_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


# --- one report -----------------------------------------------------------------------------


def render_report_table(report: CostReport) -> str:
    """The cost table `plan` prints: components x scenarios, per AZ, totals, $/1M tokens."""
    head = [
        f"Cost of stack {report.stack or '(unnamed)'} in {report.region} "
        f"(monthly = hourly x {report.hours_per_month} h; source: {report.source})",
        "",
    ]
    headers = ["component", *(f"{s} $/mo" for s in SCENARIOS)]
    rows = [[c, *(usd(report.component_month(c, s)) for s in SCENARIOS)] for c in report.components()]
    rows.append(["total $/month", *(usd(report.total_month(s)) for s in SCENARIOS)])
    rows.append(["total $/hour", *(usd(report.total_hour(s), 4) for s in SCENARIOS)])
    if report.output_tokens_per_s:
        rows.append([
            f"$/1M output tokens @ {report.output_tokens_per_s.normalize():f} tok/s",
            *(usd(report.usd_per_million_output_tokens(s), 4) for s in SCENARIOS),
        ])
        rows.append(["  of which GPU nodes", *(usd(report.usd_per_million_output_tokens(s, gpu_only=True), 4) for s in SCENARIOS)])
    rows.append(["GPU nodes (GPUs)", *(f"{report.gpu[s].nodes} ({report.gpu[s].gpus})" for s in SCENARIOS)])
    out = head + [_table(headers, rows), ""]
    azs = report.azs()
    if len(azs) > 1:
        out += ["Per AZ ($/month):", _table(["az", *SCENARIOS], [[a, *(usd(report.by_az(s)[a]) for s in SCENARIOS)] for a in azs]), ""]
    if report.notes:
        out.append("Notes:")
        out += [f"  - {n}" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"


def render_report_markdown(report: CostReport) -> str:
    headers = ["component", *SCENARIOS]
    rows = [[c, *(usd(report.component_month(c, s)) for s in SCENARIOS)] for c in report.components()]
    rows.append(["**total $/month**", *(f"**{usd(report.total_month(s))}**" for s in SCENARIOS)])
    out = [f"### Cost of {report.stack} ({report.region})", "", _md_table(headers, rows)]
    if report.notes:
        out += [""] + [f"- {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def render_report_json(report: CostReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


# --- diffs ----------------------------------------------------------------------------------


def _gpu_line(d: StackDiff, scenario: str) -> str:
    (nb, gb), (na, ga) = d.gpus(scenario, "before"), d.gpus(scenario, "after")
    line = f"{nb} -> {na} ({signed_int(na - nb)}) nodes, {gb} -> {ga} ({signed_int(ga - gb)}) GPUs"
    changes = d.type_changes()
    if changes:
        line += "; instance type " + "; ".join(c.text() for c in changes)
    return line


def _status(d: StackDiff) -> str:
    if d.head_failure is not None:
        return f"head plan FAILED, exit {d.head_failure.exit_code}"
    if d.base_failure is not None:
        return f"base plan failed, exit {d.base_failure.exit_code}"
    return {"added": "new stack", "removed": "stack removed"}.get(d.status, "")


def _failure_text(d: StackDiff) -> str:
    side, failure = ("head", d.head_failure) if d.head_failure else ("base", d.base_failure)
    assert failure is not None
    first = failure.error.strip().splitlines()[0] if failure.error.strip() else "(no message)"
    return f"the {side}'s plan exited {failure.exit_code}: {clip(first, 400)}"


def _month_cell(d: StackDiff, scenario: str, which: str) -> str:
    failed = d.base_failure if which == "before" else d.head_failure
    return "n/a" if failed is not None else usd(d.month(scenario, which))


def _delta_cells(d: StackDiff, scenario: str) -> list[str]:
    if not d.comparable:
        return ["n/a", "n/a"]
    return [signed_usd(d.delta(scenario)), signed_pct(d.pct(scenario))]


def _budget_text(d: StackDiff) -> str:
    if d.head_failure is not None:
        return "n/a (head plan failed)"
    if d.budget_usd_per_month is None:
        return "no budget configured"
    room = d.headroom
    if room is None:
        return f"budget {usd(d.budget_usd_per_month)}/month"
    share = room / d.budget_usd_per_month * 100 if d.budget_usd_per_month else Decimal(0)
    if room >= 0:
        return f"{usd(room)} headroom ({share.quantize(Decimal('0.1'))}% of {usd(d.budget_usd_per_month)})"
    return f"OVER BUDGET by {usd(-room)} (budget {usd(d.budget_usd_per_month)})"


def _verdict_text(v: PolicyVerdict | None) -> str:
    if v is None or not v.evaluated:
        return "not evaluated"
    if v.passed and not v.violations:
        return "pass"
    if v.passed:
        return f"pass ({v.advisory} advisory)"
    return f"FAIL ({v.mandatory} mandatory)"


def _policy_text(d: StackDiff) -> str:
    """The head's verdict, and the base's when its own plan failed the pack (exit 3)."""
    text = "head plan failed" if d.head_failure is not None else _verdict_text(d.policy)
    if d.base_policy is not None and not d.base_policy.passed:
        text += f" (base: {_verdict_text(d.base_policy)})"
    return text


def violation_text(v: Mapping[str, Any]) -> str:
    """`policy (enforcement) on name (type): message`, the resource named, not its raw URN."""
    return f"{v['policy']} ({v['enforcement']}) on {urn_label(v.get('urn') or '') or 'the stack'}: {v['message']}"


def _violation_lines(d: StackDiff, fmt: str) -> list[str]:
    out = []
    for label, verdict in (("", d.policy), ("base: ", d.base_policy)):
        if verdict is None or (label and verdict.passed):
            continue
        for v in verdict.violations:
            out.append(f"- {label}{violation_text(v)}" if fmt == "markdown" else f"  - {label}{violation_text(v)}")
    return out


def render_diff_markdown(diff: CostDiff) -> str:
    out = [MARKER, "## llm-fleet cost diff", ""]
    if not diff.stacks:
        return "\n".join(out + ["No stacks found in base or head.", ""])
    if diff.failed:
        out.append("**Plans that FAILED** (no cost is shown for them; fix them first):")
        out += [f"- **{d.stack}**: {_failure_text(d)}" for d in diff.failed]
        out.append("")
    changed = [d for d in diff.stacks if d.comparable and d.gpu_changed()]
    if changed:
        out.append("**GPU changes (expected fleet):**")
        out += [f"- **{d.stack}**: {_gpu_line(d, 'expected')}" + (f" ({_status(d)})" if _status(d) else "") for d in changed]
    else:
        out.append("**GPU changes:** none.")
    out.append("")
    rows = []
    for d in diff.stacks:
        rows.append([
            f"{d.stack}" + (f" ({_status(d)})" if _status(d) else ""),
            d.region or "-",
            _month_cell(d, "expected", "before"),
            _month_cell(d, "expected", "after"),
            *_delta_cells(d, "expected"),
            _month_cell(d, "worst", "after"),
            _budget_text(d),
            _policy_text(d),
        ])
    out.append(_md_table(
        ["stack", "region", "$/month before", "$/month after", "delta", "%", "worst case after", "budget", "policy"],
        rows, right={2, 3, 4, 5, 6},
    ))
    out.append("")
    out.append(f"Monthly figures are the expected fleet (desired nodes); hours per month: {HOURS_PER_MONTH}.")
    for d in diff.stacks:
        out += ["", f"### {d.stack} ({d.region or '-'})", ""]
        if not d.comparable:
            failure = d.head_failure or d.base_failure
            assert failure is not None
            out += [f"**Plan FAILED:** {_failure_text(d)}", "", "```", clip(failure.error.strip(), 4000), "```"]
            if d.head_failure is not None:
                continue
            out.append("")
        out.append(_md_table(
            ["scenario", "GPU nodes", "GPUs", "before", "after", "delta", "%"],
            [[
                SCENARIO_LABEL[s],
                f"{d.gpus(s, 'before')[0]} -> {d.gpus(s, 'after')[0]}",
                f"{d.gpus(s, 'before')[1]} -> {d.gpus(s, 'after')[1]}",
                _month_cell(d, s, "before"), _month_cell(d, s, "after"), *_delta_cells(d, s),
            ] for s in SCENARIOS],
            right={3, 4, 5, 6},
        ))
        for change in d.type_changes():
            out += ["", f"**Instance type:** {change.text()}"]
        out += ["", "<details><summary>Per component ($/month, expected)</summary>", ""]
        out.append(_md_table(
            ["component", "before", "after", "delta", "%"],
            [[
                c,
                usd(d.component_month(c, "expected", "before")),
                usd(d.component_month(c, "expected", "after")),
                signed_usd(d.component_month(c, "expected", "after") - d.component_month(c, "expected", "before")),
                signed_pct(_pct_or_none(d.component_month(c, "expected", "before"), d.component_month(c, "expected", "after"))),
            ] for c in d.components()],
        ))
        out += ["", "</details>", ""]
        out.append(f"**Budget:** {_budget_text(d)}" + (
            f"; worst case after {usd(d.month('worst', 'after'))}/month." if d.after else "."))
        lines = _violation_lines(d, "markdown")
        out.append(f"**Policy:** {_policy_text(d)}" + (":" if lines else "."))
        out += lines
        if d.tco_before is not None or d.tco_after is not None:
            out += ["", _md_table(TCO_HEADERS, _tco_rows(d))]
        if d.after and d.after.notes:
            out += ["", "<details><summary>Notes</summary>", ""] + [f"- {n}" for n in d.after.notes] + ["", "</details>"]
    return "\n".join(out).rstrip() + "\n"


def _tco_rows(d: StackDiff) -> list[list[str]]:
    """$/1M tokens (input + output) at demand and at capacity, and the break-even per API: before, after, change."""
    from infra.core.cost.tco import tokens_text

    b, a = d.tco_before, d.tco_after
    rows = []
    for key, label in (("at_demand", "$/1M tokens at the declared demand"), ("at_capacity", "$/1M tokens at capacity within SLO")):
        x = b.usd_per_million_tokens.get(key) if b else None
        y = a.usd_per_million_tokens.get(key) if a else None
        rows.append([label, usd(x, 4), usd(y, 4), "n/a" if x is None or y is None else
                     ("+" if y > x else "-" if y < x else "") + usd(abs(y - x), 4)])
    for key in d.tco_apis():
        x = b.break_even_tokens_per_day.get(key) if b else None
        y = a.break_even_tokens_per_day.get(key) if a else None
        change = "n/a" if x is None or y is None else ("+" if y > x else "-" if y < x else "") + tokens_text(abs(y - x))
        rows.append([f"break-even vs {key}, tokens/day", tokens_text(x), tokens_text(y), change])
    return rows


TCO_HEADERS = ["self-host vs API", "before", "after", "change"]


def _pct_or_none(before: Decimal, after: Decimal) -> Decimal | None:
    if before == 0:
        return None if after else Decimal(0)
    return (after - before) / before * 100


def render_diff_table(diff: CostDiff) -> str:
    out: list[str] = []
    for d in diff.stacks:
        status = _status(d)
        out.append(f"== {d.stack} ({d.region or '-'}){' [' + status + ']' if status else ''}")
        if not d.comparable:
            out.append(f"plan FAILED: {_failure_text(d)}")
            if d.head_failure is not None:
                out.append("")
                continue
        out.append(f"GPU (expected): {_gpu_line(d, 'expected')}")
        out.append(_table(
            ["scenario", "GPU nodes", "before $/mo", "after $/mo", "delta", "%"],
            [[s, f"{d.gpus(s, 'before')[0]} -> {d.gpus(s, 'after')[0]}", _month_cell(d, s, "before"),
              _month_cell(d, s, "after"), *_delta_cells(d, s)] for s in SCENARIOS],
        ))
        out.append("")
        out.append(_table(
            ["component (expected)", "before $/mo", "after $/mo", "delta"],
            [[c, usd(d.component_month(c, "expected", "before")), usd(d.component_month(c, "expected", "after")),
              signed_usd(d.component_month(c, "expected", "after") - d.component_month(c, "expected", "before"))]
             for c in d.components()],
        ))
        out.append(f"budget: {_budget_text(d)}")
        out.append(f"policy: {_policy_text(d)}")
        out += _violation_lines(d, "table")
        if d.tco_before is not None or d.tco_after is not None:
            out.append(_table(TCO_HEADERS, _tco_rows(d)))
        out.append("")
    if len(diff.stacks) > 1:
        left_out = f" (leaving out {len(diff.failed)} failed plan(s))" if diff.failed else ""
        out.append("total $/month (expected): " + f"{usd(diff.total('expected', 'before'))} -> {usd(diff.total('expected', 'after'))} "
                   f"({signed_usd(diff.total('expected', 'after') - diff.total('expected', 'before'))}){left_out}")
    return "\n".join(out).rstrip() + "\n"


def render_diff_json(diff: CostDiff) -> str:
    return json.dumps(diff.to_dict(), indent=2) + "\n"


def render_diff(diff: CostDiff, fmt: str) -> str:
    renderers: dict[str, Any] = {"markdown": render_diff_markdown, "table": render_diff_table, "json": render_diff_json}
    return renderers[fmt](diff)
