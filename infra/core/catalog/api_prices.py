"""Managed-API token prices and reservation discounts: two sections of the one price book.

`prices.yaml` holds them beside the instance prices (the PriceBook reads and writes them through
this module), each row with its source, the date the figure was recorded and whether it was
confirmed against that source:

* `api_models` - per model of a managed API (Amazon Bedrock, OpenAI, Anthropic), USD per 1M
  input and per 1M output tokens, on-demand (no batch, cache or provisioned-throughput rates);
  a Bedrock row names its region and the Price List API's `model` attribute
  (`price_list_model`), which `prices refresh --api-models` matches (infra/core/catalog/refresh.py);
  OpenAI and Anthropic publish no price API: their rows are updated by hand (docs/tco.md).
* `reservations` - the discount off the on-demand node-hour of committed GPU capacity
  (Savings Plans), percent. Capacity Blocks are priced by their own rate (`capacity_blocks`).

A row older than an age the caller sets (`tco.api_price_max_age_days`, judged by the injected
clock, infra/core/clock.py) is stale (`is_stale`). Pure: builds Decimals from parsed YAML.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Iterator, Mapping

from infra.core.errors import InputError

API_SECTIONS = ("api_models", "reservations")
_API_AMOUNTS = ("usd_per_million_input_tokens", "usd_per_million_output_tokens")


@dataclass(frozen=True)
class ApiPrice:
    """One managed API model's on-demand token prices."""

    key: str
    provider: str
    model: str
    usd_per_million_input_tokens: Decimal
    usd_per_million_output_tokens: Decimal
    source: str
    date: str
    confirmed: bool = True
    region: str = ""  # the AWS region of a Bedrock price; "" for a provider's one price
    price_list_model: str = ""  # the AWS Price List API's `model` attribute (Bedrock rows only)
    basis: str = ""

    def blended_usd_per_million(self, input_tokens: int, output_tokens: int) -> Decimal:
        """USD per 1M tokens (input and output together) at the ratio `input_tokens:output_tokens`."""
        total = input_tokens + output_tokens
        return (self.usd_per_million_input_tokens * input_tokens + self.usd_per_million_output_tokens * output_tokens) / total


@dataclass(frozen=True)
class Reservation:
    """A discount off the on-demand node-hour for committed capacity (a Savings Plan)."""

    key: str
    discount_pct: Decimal
    applies_to: str
    source: str
    date: str
    confirmed: bool = True
    basis: str = ""


def is_stale(row_date: str, today: date, max_age_days: int) -> bool:
    """Whether a row recorded on `row_date` (ISO) is older than `max_age_days` on `today`; a date
    that does not parse counts as stale (nobody can say how old it is)."""
    try:
        recorded = date.fromisoformat(row_date)
    except ValueError:
        return True
    return (today - recorded).days > max_age_days


def _amount(value: Any, where: str, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise InputError(where, value, what)
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise InputError(where, value, what) from None
    if not out.is_finite() or out < 0:
        raise InputError(where, value, what)
    return out


def _common(raw: Any, where: str, amounts: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InputError(where, raw, f"a mapping with {', '.join(amounts)}, source and date")
    missing = [k for k in (*amounts, "source", "date") if k not in raw]
    if missing:
        raise InputError(f"{where}.{missing[0]}", None, "every price row names its amounts, source and date")
    confirmed = raw.get("confirmed", True)
    if not isinstance(confirmed, bool):
        raise InputError(f"{where}.confirmed", confirmed, "true or false")
    return {"source": str(raw["source"]), "date": str(raw["date"]), "confirmed": confirmed,
            "basis": str(raw.get("basis", ""))}


def _each(rows: Any, where: str) -> Iterator[tuple[str, Any, str]]:
    """(key, raw row, its path) of a section's rows; an absent section has none."""
    if rows is None:
        return
    if not isinstance(rows, Mapping):
        raise InputError(where, rows, "a mapping of key to row")
    for key, raw in rows.items():
        yield str(key), raw, f"{where}.{key}"


def parse_api_models(rows: Any, where: str) -> dict[str, ApiPrice]:
    out = {}
    for key, raw, path in _each(rows, where):
        common = _common(raw, path, ("provider", "model", *_API_AMOUNTS))
        usd = {k: _amount(raw[k], f"{path}.{k}", "a price in USD per 1M tokens as a decimal string, e.g. \"0.72\"")
               for k in _API_AMOUNTS}
        out[key] = ApiPrice(key, str(raw["provider"]), str(raw["model"]), region=str(raw.get("region", "")),
                            price_list_model=str(raw.get("price_list_model", "")), **usd, **common)
    return out


def parse_reservations(rows: Any, where: str) -> dict[str, Reservation]:
    out = {}
    for key, raw, path in _each(rows, where):
        common = _common(raw, path, ("discount_pct", "applies_to"))
        pct = _amount(raw["discount_pct"], f"{path}.discount_pct", "a discount in percent, 0 to 100, as a decimal string")
        if pct > 100:
            raise InputError(f"{path}.discount_pct", raw["discount_pct"], "a discount in percent, 0 to 100")
        out[key] = Reservation(key, pct, str(raw["applies_to"]), **common)
    return out


# --- writing (the layout prices.py's render_price_document keeps) ----------------------------


def _q(value: object) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def _tail(row: ApiPrice | Reservation) -> list[str]:
    parts = [f"source: {_q(row.source)}", f"date: {_q(row.date)}", f"confirmed: {'true' if row.confirmed else 'false'}"]
    if row.basis:
        parts.append(f"basis: {_q(row.basis)}")
    return parts


def render_api_sections(api_models: Mapping[str, ApiPrice], reservations: Mapping[str, Reservation]) -> list[str]:
    """The YAML lines of both sections, keys sorted."""
    lines = ["api_models:" + ("" if api_models else " {}")]
    for key in sorted(api_models):
        r = api_models[key]
        parts = [f"provider: {_q(r.provider)}", f"model: {_q(r.model)}"]
        if r.region:
            parts.append(f"region: {_q(r.region)}")
        if r.price_list_model:
            parts.append(f"price_list_model: {_q(r.price_list_model)}")
        parts += [f"{k}: {_q(format(getattr(r, k), 'f'))}" for k in _API_AMOUNTS]
        lines.append(f"  {key}: {{{', '.join(parts + _tail(r))}}}")
    lines.append("reservations:" + ("" if reservations else " {}"))
    for key in sorted(reservations):
        r = reservations[key]
        parts = [f"discount_pct: {_q(format(r.discount_pct, 'f'))}", f"applies_to: {_q(r.applies_to)}"]
        lines.append(f"  {key}: {{{', '.join(parts + _tail(r))}}}")
    return lines
