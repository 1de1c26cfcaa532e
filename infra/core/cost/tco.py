"""Self-host or API: a plan's total cost of ownership and its break-even against managed APIs. Pure.

    TCO a month = GPU nodes (the node-hours the autoscaler runs through the daily profile)
                + fixed infrastructure (the cost model's expected month less its GPU nodes)
                + staffing (tco.oncall_fte x tco.usd_per_fte_year / 12)
                - reservation savings (the node-hours run every hour of the day, committed)

* Demand: `workload.output_tokens_per_s` when declared, else what `concurrent_requests` produce at
  the simulated latency (the plan's `load.arrival_rate_per_s`), as the sustained (1.0) load;
  a region of an environment serves its traffic share of it (it may be sized for more, to
  absorb a lost region); hour h carries `daily_profile[h]` times it.
* The autoscaler: KEDA's HPA wants ceil(requests in flight / the control block's threshold)
  replicas (in flight = rate x the simulated latency, Little's law), held within the control
  block's min and max replicas; nodes per AZ follow the zone spread (replicas split evenly over
  the AZs, `replicas_per_node` each, warm spares on top), all AZs within the GPU node groups'
  minimum and maximum as the cost model priced them (the plan's `nodes_per_az` unless a
  document changed the groups).
  Hourly steady state: the HPA's tolerance and its 15-minute scale-down window are not modelled.
* Capacity within SLO: the simulated knee rate per replica x the baseline replicas x output
  tokens per request, around the clock.
* Tokens are input + output at the declared ratio; an API's price is blended at that ratio.
* Break-even: the least daily volume V at which the API's bill reaches the TCO of carrying V
  (the profile scaled to V, so the autoscaler's extra node-hours are counted), and whether the
  plan can carry V at all (its peak hour within the max replicas' capacity).

Money is Decimal; a month is HOURS_PER_MONTH hours (DAYS_PER_MONTH days).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Mapping, Sequence

from infra.core import clock, money
from infra.core.catalog import HOURS_PER_MONTH
from infra.core.catalog.api_prices import ApiPrice, is_stale
from infra.core.catalog.prices import PriceBook, load_price_book
from infra.core.config import TcoConfig
from infra.core.cost.report import EKS, SCENARIOS, ZERO, CostReport
from infra.core.errors import InputError
from infra.core.sizing.plan import FleetPlan

DAYS_PER_MONTH = HOURS_PER_MONTH / 24
MILLION = Decimal(1_000_000)
SECONDS_PER_HOUR = 3600
# Demand and capacity further apart than this and one of them is wrong (issue 16).
MISMATCH_RATIO = Decimal("1.5")
_MAX_ITERATIONS = 1000  # of the break-even's fixed point (it moves one fleet-size step at a time)


def _d(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def tokens_text(n: Decimal | None) -> str:
    """816M, 34.0B, 950K: a token count for people."""
    if n is None:
        return "n/a"
    for scale, suffix in ((Decimal(10) ** 12, "T"), (Decimal(10) ** 9, "B"), (MILLION, "M"), (Decimal(1000), "K")):
        if n >= scale:
            v = n / scale
            return f"{v:,.1f}{suffix}" if v < 100 else f"{v:,.0f}{suffix}"
    return f"{n:,.0f}"


@dataclass(frozen=True)
class Fleet:
    """What the TCO reads of a FleetPlan: the autoscaler's bounds and the demand it was sized for."""

    azs: int
    replicas_per_node: int
    warm_spares_per_az: int
    nodes_min: int  # GPU nodes in service, all AZs: the node groups' minimum ...
    nodes_max: int  # ... and maximum
    min_replicas: int
    max_replicas: int
    threshold_per_replica: int  # the KEDA target: requests in flight per replica
    knee_rate_per_replica: Decimal  # requests/s within every p95
    input_tokens: int
    output_tokens: int
    latency_s: Decimal  # the simulated mean latency: concurrent_requests / arrival rate
    demand_output_tokens_per_s: Decimal  # the sustained (1.0) load
    demand_from: str  # the config key it comes from
    implied_output_tokens_per_s: Decimal  # what concurrent_requests produce at the simulated latency
    served_share: Decimal  # the share of the sized-for workload the stack serves (< 1: it absorbs a lost region)
    burst_factor: Decimal
    instance_type: str
    price_source: str

    @classmethod
    def of(cls, plan: Mapping[str, Any], declared_output_tokens_per_s: float | None,
           served_share: Decimal = Decimal(1)) -> "Fleet":
        """From a plan's JSON (`FleetPlan.to_dict()`, the `plan` of a `plan --json` document); the
        demand is `served_share` of what the plan was sized for."""
        load, c, n = plan["load"], plan["control"], plan["nodes_per_az"]
        out = int(load["output_tokens"])
        rate = _d(load["arrival_rate_per_s"])
        implied = rate * out * served_share
        declared = _d(declared_output_tokens_per_s) * served_share if declared_output_tokens_per_s else None
        return cls(
            azs=int(plan["azs"]), replicas_per_node=int(plan["replicas_per_node"]),
            warm_spares_per_az=int(plan["warm_spares_per_az"]), nodes_min=int(n["min"]) * int(plan["azs"]),
            nodes_max=int(n["max"]) * int(plan["azs"]), min_replicas=int(c["min_replicas"]), max_replicas=int(c["max_replicas"]),
            threshold_per_replica=int(c["scale_threshold_per_replica"]), knee_rate_per_replica=_d(c["knee_rate_per_replica"]),
            input_tokens=int(load["input_tokens"]), output_tokens=out,
            latency_s=_d(load["concurrent_requests"]) / rate if rate else ZERO,
            demand_output_tokens_per_s=declared if declared is not None else implied,
            demand_from="workload.output_tokens_per_s" if declared is not None else "workload.concurrent_requests",
            implied_output_tokens_per_s=implied, served_share=served_share,
            burst_factor=_d(load["burst_concurrent_requests"]) / _d(load["concurrent_requests"]),
            instance_type=str(plan["instance_type"]), price_source=str((plan.get("cost") or {}).get("price_source", "")),
        )

    @property
    def demand_text(self) -> str:
        """Where the demand comes from, in words: the config key, times the served share."""
        if self.served_share == 1:
            return self.demand_from
        return f"{self.demand_from} x {self.served_share:.2f}, the region's traffic share over what it is sized for"

    @property
    def tokens_per_output_token(self) -> Decimal:
        """Input + output tokens per output token, at the declared ratio."""
        return Decimal(self.input_tokens + self.output_tokens) / self.output_tokens

    def capacity_output_tokens_per_s(self, replicas: int) -> Decimal:
        return self.knee_rate_per_replica * replicas * self.output_tokens

    def replicas_for(self, output_tokens_per_s: Decimal) -> int:
        """What the HPA wants for this load (ceil(in flight / threshold)), within min and max replicas."""
        in_flight = output_tokens_per_s / self.output_tokens * self.latency_s
        wanted = math.ceil(in_flight / self.threshold_per_replica) if self.threshold_per_replica else self.max_replicas
        return min(self.max_replicas, max(self.min_replicas, wanted))

    def nodes_for(self, replicas: int) -> int:
        """GPU nodes in service, all AZs: the zone spread's per-AZ share, warm spares on top, within the node groups."""
        per_az = math.ceil(math.ceil(replicas / self.azs) / self.replicas_per_node) + self.warm_spares_per_az
        return min(self.nodes_max, max(self.nodes_min, per_az * self.azs))


@dataclass(frozen=True)
class Day:
    """One day of the profile: demand, replicas and GPU nodes per hour."""

    output_tokens_per_s: tuple[Decimal, ...]
    replicas: tuple[int, ...]
    nodes: tuple[int, ...]

    @property
    def node_hours(self) -> int:
        return sum(self.nodes)


def day_of(fleet: Fleet, profile: Sequence[float], scale: Decimal = Decimal(1)) -> Day:
    """The autoscaler through a day whose hour h carries profile[h] x scale x the sustained demand."""
    demand = tuple(fleet.demand_output_tokens_per_s * _d(m) * scale for m in profile)
    replicas = tuple(fleet.replicas_for(d) for d in demand)
    return Day(demand, replicas, tuple(fleet.nodes_for(r) for r in replicas))


@dataclass(frozen=True)
class Costs:
    """Monthly TCO of one day-shape of the fleet."""

    gpu: Decimal
    fixed: Decimal
    staffing: Decimal
    reservation_savings: Decimal

    @property
    def total(self) -> Decimal:
        return self.gpu + self.fixed + self.staffing - self.reservation_savings


@dataclass(frozen=True)
class ApiComparison:
    price: ApiPrice
    usd_per_million_tokens: Decimal  # blended at the declared input:output ratio
    bill_usd_per_month: Decimal  # at the declared demand's volume
    break_even_tokens_per_day: Decimal | None  # None: the API is free (no volume pays for the fleet)
    within_capacity: bool  # the plan can carry the break-even volume (with the declared day's shape)
    stale: bool
    shown: bool  # in tco.compare_with (the short block)


@dataclass(frozen=True)
class TcoReport:
    stack: str
    region: str
    config: TcoConfig
    fleet: Fleet
    day: Day  # at the declared demand
    costs: Costs  # at the declared demand's day
    capacity_costs: Costs  # the baseline fleet around the clock
    scenarios: Mapping[str, Decimal]  # the cost model's scenarios, staffing and savings included
    usd_per_node_hour: Decimal
    reserved_nodes: int
    tokens_per_day_at_demand: Decimal
    tokens_per_day_at_capacity: Decimal
    capacity_tokens_per_day_in_shape: Decimal  # the most the plan carries with the declared day's shape
    apis: tuple[ApiComparison, ...]
    today: date
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def capacity_output_tokens_per_s(self) -> Decimal:
        return self.fleet.capacity_output_tokens_per_s(self.fleet.min_replicas)

    @property
    def capacity_to_demand(self) -> Decimal | None:
        d = self.fleet.demand_output_tokens_per_s
        return self.capacity_output_tokens_per_s / d if d else None

    def usd_per_million_tokens(self, at: str, output_only: bool = False) -> Decimal | None:
        """At the declared demand ("demand") or at capacity within SLO ("capacity")."""
        costs, tokens = ((self.costs, self.tokens_per_day_at_demand) if at == "demand"
                         else (self.capacity_costs, self.tokens_per_day_at_capacity))
        if output_only:
            tokens = tokens / self.fleet.tokens_per_output_token
        if not tokens:
            return None
        return costs.total / (tokens * DAYS_PER_MONTH / MILLION)

    def cost_ratio(self, api: ApiComparison) -> Decimal | None:
        """Self-hosted TCO over the API's bill at the declared demand (2 = twice the API)."""
        return self.costs.total / api.bill_usd_per_month if api.bill_usd_per_month else None

    def shown(self) -> tuple[ApiComparison, ...]:
        return tuple(a for a in self.apis if a.shown)

    def stale_note(self, apis: Sequence[ApiComparison]) -> list[str]:
        """The note on the stale rows among `apis` (none when none is)."""
        stale = [a.price.key for a in apis if a.stale]
        if not stale:
            return []
        return [f"stale API prices (recorded more than {self.config.api_price_max_age_days} days before "
                f"{self.today.isoformat()}): {', '.join(stale)}; refresh Bedrock rows with `python -m infra prices "
                "refresh --api-models`, the others by hand (docs/tco.md)"]

    def all_notes(self) -> list[str]:
        return [*self.notes, *self.stale_note(self.apis)]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (infra.core.money: amounts as decimal strings, counts and ratios as numbers)."""
        m, r, f = money.usd, money.usd_rate, self.fleet

        def costs(c: Costs) -> dict[str, Any]:
            return {"gpu": m(c.gpu), "fixed_infrastructure": m(c.fixed), "staffing": m(c.staffing),
                    "reservation_savings": m(c.reservation_savings), "total": m(c.total)}

        cfg = self.config
        return {
            "stack": self.stack,
            "region": self.region,
            "currency": "USD",
            "date": self.today.isoformat(),
            "assumptions": {
                "daily_profile": list(cfg.daily_profile),
                "oncall_fte": cfg.oncall_fte,
                "usd_per_fte_year": m(cfg.usd_per_fte_year),
                "reservation": cfg.reservation,
                "reserved_nodes": self.reserved_nodes,
                "api_price_max_age_days": cfg.api_price_max_age_days,
                "hours_per_month": money.number(HOURS_PER_MONTH),
                "demand_from": f.demand_from,
                "served_share": money.number(f.served_share, 4),
            },
            "fleet": {
                "usd_per_node_hour": r(self.usd_per_node_hour),
                "min_replicas": f.min_replicas, "max_replicas": f.max_replicas,
                "replicas_by_hour": list(self.day.replicas), "nodes_by_hour": list(self.day.nodes),
                "node_hours_per_day": self.day.node_hours,
                "utilisation_pct": money.pct(self.tokens_per_day_at_demand / self.tokens_per_day_at_capacity * 100)
                if self.tokens_per_day_at_capacity else None,
            },
            "usd_per_month": {"at_demand": costs(self.costs), "at_capacity": costs(self.capacity_costs),
                              "scenarios": {s: m(v) for s, v in self.scenarios.items()}},
            "tokens": {
                "input_tokens_per_request": f.input_tokens, "output_tokens_per_request": f.output_tokens,
                "demand_output_tokens_per_s": money.number(f.demand_output_tokens_per_s, 1),
                "capacity_output_tokens_per_s": money.number(self.capacity_output_tokens_per_s, 1),
                "capacity_to_demand": money.number(self.capacity_to_demand, 2),
                "tokens_per_day_at_demand": money.number(self.tokens_per_day_at_demand, 0),
                "tokens_per_day_at_capacity": money.number(self.tokens_per_day_at_capacity, 0),
                "capacity_tokens_per_day_in_shape": money.number(self.capacity_tokens_per_day_in_shape, 0),
            },
            "usd_per_million_tokens": {"at_demand": r(self.usd_per_million_tokens("demand")),
                                       "at_capacity": r(self.usd_per_million_tokens("capacity"))},
            "usd_per_million_output_tokens": {"at_demand": r(self.usd_per_million_tokens("demand", True)),
                                              "at_capacity": r(self.usd_per_million_tokens("capacity", True))},
            "apis": [
                {"key": a.price.key, "provider": a.price.provider, "model": a.price.model, "region": a.price.region or None,
                 "usd_per_million_input_tokens": money.usd_exact(a.price.usd_per_million_input_tokens),
                 "usd_per_million_output_tokens": money.usd_exact(a.price.usd_per_million_output_tokens),
                 "usd_per_million_tokens_blended": r(a.usd_per_million_tokens),
                 "bill_usd_per_month_at_demand": m(a.bill_usd_per_month),
                 "self_hosted_to_api": money.number(self.cost_ratio(a), 2),
                 "break_even_tokens_per_day": money.number(a.break_even_tokens_per_day, 0),
                 "break_even_within_capacity": a.within_capacity,
                 "source": a.price.source, "date": a.price.date, "confirmed": a.price.confirmed, "stale": a.stale,
                 "in_short_block": a.shown}
                for a in self.apis
            ],
            "notes": self.all_notes(),
        }


# --- the model --------------------------------------------------------------------------------


def _node_hour_price(report: CostReport, plan: Mapping[str, Any]) -> Decimal:
    """$/GPU-node-hour as the cost model priced it (overrides, capacity type), else the plan's."""
    nodes = report.gpu["expected"].nodes
    if nodes:
        return report.gpu_month("expected") / (nodes * HOURS_PER_MONTH)
    return _d(plan["cost"]["usd_per_node_hour"])


def _savings_per_node_hour(config: TcoConfig, book: PriceBook, region: str, fleet: Fleet,
                           node_price: Decimal) -> tuple[Decimal, str]:
    """What committing one node-hour saves, and where the rate comes from."""
    if config.reservation == "none":
        return ZERO, ""
    if config.reservation == "capacity-block":
        row = book.capacity_price(region, fleet.instance_type, "capacity-block")
        if row is None:
            known = ", ".join(sorted(book.reservations))
            raise InputError("llm-fleet:tco.reservation", config.reservation,
                             f"a capacity-block rate for {fleet.instance_type} in {region} in the price book, or one "
                             f"of: none, {known}")
        return node_price - row.usd, f"capacity block ${row.usd}/node-hour ({row.source}, {row.date})"
    row = book.reservations.get(config.reservation)
    if row is None:
        raise InputError("llm-fleet:tco.reservation", config.reservation,
                         f"a reservation in the price book: {', '.join(sorted(book.reservations)) or '(none)'}")
    return node_price * row.discount_pct / 100, f"{row.key} {row.discount_pct.normalize():f}% off ({row.source}, {row.date})"


def _costs(day_nodes: int, pool_nodes: int, fixed: Decimal, staffing: Decimal, node_price: Decimal,
           reserved_nodes: int, saving: Decimal) -> Costs:
    gpu = Decimal(day_nodes + 24 * pool_nodes) * node_price * DAYS_PER_MONTH
    return Costs(gpu, fixed, staffing, reserved_nodes * HOURS_PER_MONTH * saving)


def _mismatch_note(fleet: Fleet, capacity: Decimal) -> str | None:
    """Which side is wrong when demand and capacity within SLO differ by more than MISMATCH_RATIO."""
    demand = fleet.demand_output_tokens_per_s
    if not demand or not capacity:
        return None
    ratio = capacity / demand
    if Decimal(1) / MISMATCH_RATIO <= ratio <= MISMATCH_RATIO:
        return None
    if ratio < 1:
        return (f"under-provisioned: the declared demand, {demand:,.0f} output tokens/s ({fleet.demand_text}), is "
                f"{1 / ratio:.1f}x the {capacity:,.0f} the baseline fleet serves within SLO")
    parts = [f"capacity within SLO is {ratio:.1f}x the declared demand ({capacity:,.0f} against {demand:,.0f} output "
             f"tokens/s, {fleet.demand_text}): the $/1M tokens at demand pays for the difference"]
    implied = fleet.implied_output_tokens_per_s
    if fleet.demand_from == "workload.output_tokens_per_s" and implied > demand * MISMATCH_RATIO:
        parts.append(f"demand understated: workload.concurrent_requests at the simulated latency "
                     f"({fleet.latency_s:.2f} s) is {implied:,.0f} output tokens/s, {implied / demand:.1f}x "
                     "workload.output_tokens_per_s; if that concurrency is real, declare its rate")
    top = max(demand, implied)
    if capacity > top * MISMATCH_RATIO:
        absorbs = (f", of the {1 / fleet.served_share:.2f}x traffic it takes when another region is lost"
                   if fleet.served_share < 1 else "")
        parts.append(f"over-provisioned for sustained load: the baseline serves {capacity / top:.1f}x the larger "
                     f"of the two, the headroom of a {fleet.burst_factor.normalize():f}x burst the baseline must "
                     f"carry{absorbs} and of one AZ lost, paid every hour")
    return "; ".join(parts)


def _break_even(fleet: Fleet, config: TcoConfig, cost_of_day: Any, tokens_per_unit: Decimal,
                usd_per_token: Decimal) -> Decimal | None:
    """The least daily volume V with usd_per_token x V x DAYS_PER_MONTH >= TCO(V), where TCO(V) runs
    the profile scaled to V (nondecreasing in V, so the fixed point from 0 is the least one)."""
    if usd_per_token <= 0:
        return None
    per_day = usd_per_token * DAYS_PER_MONTH
    volume = ZERO
    for _ in range(_MAX_ITERATIONS):
        scale = volume / tokens_per_unit if tokens_per_unit else ZERO
        needed = cost_of_day(day_of(fleet, config.daily_profile, scale)).total / per_day
        if needed <= volume:
            return volume
        volume = needed
    return volume


def tco_of(report: CostReport, plan: FleetPlan | Mapping[str, Any], config: TcoConfig, *,
           declared_output_tokens_per_s: float | None, served_share: Decimal = Decimal(1),
           prices: PriceBook | None = None, today: date | None = None) -> TcoReport:
    """The TCO of a plan (a FleetPlan or its JSON) whose cost model `report` gives;
    `declared_output_tokens_per_s` is the sized-for workload's (None when it declares only
    concurrency); the stack serves `served_share` of it (a region's traffic share over the share
    it is sized for: below 1 when it is sized to absorb a lost region)."""
    if isinstance(plan, FleetPlan):
        plan = plan.to_dict()
    book = prices or load_price_book()
    day_today = today or clock.today()
    fleet = Fleet.of(plan, declared_output_tokens_per_s, served_share)
    pool_nodes = report.gpu["expected"].warm_pool_nodes  # RUNNING warm pool: billed every hour
    if report.gpu["worst"].nodes:  # the node groups the cost model priced bound the fleet (a PR may change them)
        fleet = replace(fleet, nodes_min=report.gpu["baseline"].nodes - report.gpu["baseline"].warm_pool_nodes,
                        nodes_max=report.gpu["worst"].nodes - report.gpu["worst"].warm_pool_nodes)
    notes: list[str] = []
    node_price = _node_hour_price(report, plan)
    fixed = report.total_month("expected") - report.gpu_month("expected")
    staffing = _d(config.oncall_fte) * config.usd_per_fte_year / 12
    saving, saving_source = _savings_per_node_hour(config, book, report.region, fleet, node_price)
    day = day_of(fleet, config.daily_profile)
    reserved = min(day.nodes) + pool_nodes if saving_source else 0

    def cost_of_day(d: Day) -> Costs:
        return _costs(d.node_hours, pool_nodes, fixed, staffing, node_price, reserved, saving)

    costs = cost_of_day(day)
    baseline_nodes = fleet.nodes_for(fleet.min_replicas)
    capacity_costs = _costs(24 * baseline_nodes, pool_nodes, fixed, staffing, node_price, reserved, saving)
    scenarios = {s: report.total_month(s) + staffing - reserved * HOURS_PER_MONTH * saving for s in SCENARIOS}
    scenarios = {"profiled": costs.total, **scenarios}

    per_output = fleet.tokens_per_output_token
    profile_sum = sum(_d(m) for m in config.daily_profile)
    tokens_demand = fleet.demand_output_tokens_per_s * SECONDS_PER_HOUR * profile_sum * per_output
    capacity = fleet.capacity_output_tokens_per_s(fleet.min_replicas)
    tokens_capacity = capacity * 24 * SECONDS_PER_HOUR * per_output
    peak = max(_d(m) for m in config.daily_profile)
    in_shape = (fleet.capacity_output_tokens_per_s(fleet.max_replicas) * SECONDS_PER_HOUR * profile_sum / peak
                * per_output)

    unknown = [k for k in config.compare_with if k not in book.api_models]
    if unknown:
        raise InputError("llm-fleet:tco.compare_with", unknown[0],
                         f"api_models of the price book: {', '.join(sorted(book.api_models))}")
    apis = []
    for key, row in sorted(book.api_models.items()):
        blended = row.blended_usd_per_million(fleet.input_tokens, fleet.output_tokens)
        bill = tokens_demand * DAYS_PER_MONTH * blended / MILLION
        even = _break_even(fleet, config, cost_of_day, tokens_demand, blended / MILLION)
        apis.append(ApiComparison(row, blended, bill, even, even is not None and even <= in_shape,
                                  is_stale(row.date, day_today, config.api_price_max_age_days), key in config.compare_with))

    mismatch = _mismatch_note(fleet, capacity)
    if mismatch:
        notes.append(mismatch)
    if EKS not in report.components():
        notes.append("fixed infrastructure not counted: GPU node groups only (`plan` and `tco` price the whole stack)")
    if saving_source:
        notes.append(f"reservation: {reserved} node(s) run every hour of the day and are committed at {saving_source}")
        if "override" in fleet.price_source or "capacity block" in fleet.price_source:
            notes.append(f"the plan's node price is already {fleet.price_source}: the reservation's discount comes on top")
    unconfirmed = [a.price.key for a in apis if not a.price.confirmed and not a.stale]
    if unconfirmed:
        notes.append(f"unconfirmed API prices (estimates): {', '.join(unconfirmed)}")
    elsewhere = sorted({a.price.region for a in apis if a.price.region and a.price.region != report.region})
    if elsewhere:
        notes.append(f"Bedrock prices are {', '.join(elsewhere)}'s; the stack is in {report.region}")
    return TcoReport(report.stack, report.region, config, fleet, day, costs, capacity_costs, scenarios, node_price,
                     reserved, tokens_demand, tokens_capacity, in_shape, tuple(apis), day_today, tuple(notes))


# --- rendering --------------------------------------------------------------------------------


def _usd(amount: Decimal | None, places: int = 2) -> str:
    if amount is None:
        return "n/a"
    return f"${amount:,.{places}f}"


def _ratio(x: Decimal | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}x"


def _even_text(t: TcoReport, a: ApiComparison) -> str:
    if a.break_even_tokens_per_day is None:
        return "never (free)"
    text = tokens_text(a.break_even_tokens_per_day)
    return text if a.within_capacity else f"{text} (beyond this plan)"


def _api_rows(t: TcoReport, apis: Sequence[ApiComparison]) -> list[list[str]]:
    return [[a.price.key + (" [stale]" if a.stale else ""), _usd(a.usd_per_million_tokens, 4),
             _usd(a.bill_usd_per_month), _ratio(t.cost_ratio(a)), _even_text(t, a)] for a in apis]


API_HEADERS = ["API", "$/1M tokens", "bill/month at demand", "self-hosted / API", "break-even tokens/day"]


def vs_api_lines(t: TcoReport) -> list[str]:
    """The short block `size` and `plan` print."""
    from infra.core.tables import table

    f = t.fleet
    lines = [
        f"vs API (TCO: GPU nodes through the daily profile, fixed infrastructure, {t.config.oncall_fte:g} on-call FTE; "
        f"`python -m infra tco --stack {t.stack or 'STACK'}` has the breakdown):",
        f"  self-hosted {_usd(t.costs.total)}/month: {_usd(t.usd_per_million_tokens('demand'), 4)} per 1M tokens at "
        f"the declared demand ({tokens_text(t.tokens_per_day_at_demand)} tokens/day, {f.input_tokens}:{f.output_tokens} "
        f"in:out), {_usd(t.usd_per_million_tokens('capacity'), 4)} at capacity within SLO "
        f"({tokens_text(t.tokens_per_day_at_capacity)}/day)",
    ]
    lines += ["  " + line for line in table(API_HEADERS, _api_rows(t, t.shown()), right=[1, 2, 3, 4]).splitlines()]
    lines += [f"  note: {n}" for n in [*t.notes, *t.stale_note(t.shown())]]
    return lines


def render_tco_table(t: TcoReport) -> str:
    """What `tco` prints: the month, the day, tokens, every API."""
    from infra.core.tables import table

    f, c, k = t.fleet, t.costs, t.capacity_costs
    out = [f"TCO of stack {t.stack or '(unnamed)'} in {t.region}: self-host or API (monthly = {HOURS_PER_MONTH} h; "
           f"API prices judged on {t.today.isoformat()})", ""]
    rows = [
        ["GPU nodes", _usd(c.gpu), _usd(k.gpu)],
        ["fixed infrastructure (cost model, expected)", _usd(c.fixed), _usd(k.fixed)],
        [f"staffing ({t.config.oncall_fte:g} FTE x {_usd(t.config.usd_per_fte_year, 0)}/year)", _usd(c.staffing),
         _usd(k.staffing)],
        [f"reservation ({t.config.reservation}, {t.reserved_nodes} nodes)", _usd(-c.reservation_savings),
         _usd(-k.reservation_savings)],
        ["total $/month", _usd(c.total), _usd(k.total)],
        ["tokens/day (input + output)", tokens_text(t.tokens_per_day_at_demand), tokens_text(t.tokens_per_day_at_capacity)],
        ["output tokens/s (peak hour / around the clock)", f"{f.demand_output_tokens_per_s * max(_d(m) for m in t.config.daily_profile):,.0f}",
         f"{t.capacity_output_tokens_per_s:,.0f}"],
        ["$ per 1M tokens", _usd(t.usd_per_million_tokens("demand"), 4), _usd(t.usd_per_million_tokens("capacity"), 4)],
        ["$ per 1M output tokens", _usd(t.usd_per_million_tokens("demand", True), 4),
         _usd(t.usd_per_million_tokens("capacity", True), 4)],
    ]
    out += [table(["", "at the declared demand", "at capacity within SLO"], rows, right=[1, 2]), ""]
    out.append(f"The day ({f.demand_text} = {f.demand_output_tokens_per_s:,.0f} output tokens/s as 1.0; KEDA wants "
               f"ceil(in flight / {f.threshold_per_replica}) replicas within {f.min_replicas}-{f.max_replicas}; "
               f"{_usd(t.usd_per_node_hour, 4)}/node-hour):")
    hours = list(range(24))
    out.append(table(["hour", *(f"{h:02d}" for h in hours)],
                     [["demand x", *(f"{m:g}" for m in t.config.daily_profile)],
                      ["replicas", *(str(r) for r in t.day.replicas)],
                      ["GPU nodes", *(str(n) for n in t.day.nodes)]], right=set(range(1, 25))))
    out.append(f"{t.day.node_hours} node-hours a day; utilisation {t.tokens_per_day_at_demand / t.tokens_per_day_at_capacity:.1%} "
               "of capacity within SLO" if t.tokens_per_day_at_capacity else f"{t.day.node_hours} node-hours a day")
    out.append("")
    out.append(f"Against managed APIs (blended at {f.input_tokens}:{f.output_tokens} in:out; the plan carries at most "
               f"{tokens_text(t.capacity_tokens_per_day_in_shape)} tokens/day with this day's shape):")
    out.append(table(API_HEADERS + ["price as of"],
                     [row + [f"{a.price.date}{'' if a.price.confirmed else ', unconfirmed'}"]
                      for row, a in zip(_api_rows(t, t.apis), t.apis)], right=[1, 2, 3, 4]))
    if t.all_notes():
        out += ["", "Notes:"] + [f"  - {n}" for n in t.all_notes()]
    return "\n".join(out).rstrip() + "\n"
