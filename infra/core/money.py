"""The one rule for money and percentages in the JSON every command writes (docs/cost-and-policy.md).

* Money is a decimal string in US dollars, never a JSON number: `"604416.41"`. A float cannot
  hold cents exactly, and a reader that sums amounts should get back the Decimal we summed.
  The key that holds an amount, or a mapping above it, says `usd` (`monthly_budget_usd`,
  `usd_per_month`, `usd_per_month.expected.delta`). Amounts per month (and totals) have 2
  places; rates the cost model derives (per hour, per 1M tokens) have 4; a price taken as
  given (the plan's $/GPU-hour and $/node-hour) is written as it is, without padding.
* Percentages (keys ending in `pct`) and counts are JSON numbers: `40`, `12.5`.
* `null` is "not known" or "not applicable" (no budget, no base, a price that is missing).

`plan --json` (its `plan.cost` and `cost` sections), `size --json`, `cost --json`,
`cost-diff --json` and `rollout --dry-run --json` all build their figures with these helpers;
a test walks their documents and checks the rule.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

MONTH_PLACES = 2  # monthly amounts, totals, budgets, deltas
RATE_PLACES = 4  # $/hour, $/GPU-hour, $/1M tokens


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    out = value if isinstance(value, Decimal) else Decimal(str(value))
    return out if out.is_finite() else None


def usd(value: Any, places: int = MONTH_PLACES) -> str | None:
    """An amount as the JSON rule writes it: a decimal string, half-up to `places`; None stays None."""
    amount = _decimal(value)
    if amount is None:
        return None
    return str(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def usd_exact(value: Any) -> str | None:
    """A price as given (`55.04`, `39.328`): its shortest decimal text, nothing rounded or padded."""
    amount = _decimal(value)
    return None if amount is None else format(amount.normalize(), "f")


def usd_rate(value: Any) -> str | None:
    """A price per hour, per GPU-hour or per 1M tokens (4 places)."""
    return usd(value, RATE_PLACES)


def number(value: Any, places: int | None = None) -> int | float | None:
    """A percentage or a count as a JSON number: an int when integral, else a float (optionally rounded)."""
    amount = _decimal(value)
    if amount is None:
        return None
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def pct(value: Any) -> int | float | None:
    """A percentage to one decimal place, as a JSON number."""
    return number(value, 1)
