"""Traffic between an environment's regions: the global stack's Route 53 weights, what each region
would serve, and whether what it is sized for carries that. Pure.

Weights are whole percents of the environment's traffic, one per region stack; 0 takes a region
out of DNS. The declared weights are the regions' `traffic_share_pct`; a wave's `traffic` (a
rollout's drain or canary) names some regions' percents and the others share the rest by their
shares. What a region serves, worst case:

* weighted routing: its weight over the weights of the regions in DNS (Route 53 answers with a
  healthy record in proportion to its weight, so a failed region's share spreads over the rest);
* latency routing: its own share (the clients nearest to it) plus, worst case, the whole share
  of every region out of DNS (their clients may all be nearest to this one).

A region must be sized (its sizing share, `regions.sizing_share_pct`) for what it serves in
every scenario the records allow: the declared weights, any one region lost (its health check
failing), and every wave's traffic step. `routing_problems` names each breach with both numbers.
"""
from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Mapping, Sequence

import yaml

from infra.core.labels import GLOBAL_PROJECT
from infra.core.rollout.regions import HUNDRED
from infra.core.rollout.spec import RegionShare, RolloutPlan, Routing, Wave

WEIGHTS_KEY = f"{GLOBAL_PROJECT}:weights"  # the global stack's config key a traffic step sets
ZERO = Decimal(0)


def _pct(d: Decimal) -> str:
    return f"{d.quantize(Decimal('0.1')).normalize():f}"


def declared_weights(plan: RolloutPlan) -> dict[str, int]:
    """Each region's weight when no rollout holds it: its traffic share, a whole percent."""
    return {r.stack: int(r.traffic_share_pct.to_integral_value(ROUND_HALF_EVEN)) for r in plan.regions}


def _split(total: int, shares: Mapping[str, Decimal]) -> dict[str, int]:
    """`total` whole percents split in proportion to `shares` (largest remainder: they add up)."""
    whole = sum(shares.values(), ZERO)
    if not shares or whole == 0:
        return {s: 0 for s in shares}
    exact = {s: Decimal(total) * v / whole for s, v in shares.items()}
    out = {s: int(v.to_integral_value(ROUND_FLOOR)) for s, v in exact.items()}
    for s in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: total - sum(out.values())]:
        out[s] += 1
    return out


def weights_during(plan: RolloutPlan, wave: Wave) -> dict[str, int]:
    """The weights while `wave` holds its traffic step (the declared ones when it has none)."""
    declared = declared_weights(plan)
    if not wave.traffic:
        return declared
    named = {s: int(p) for s, p in wave.traffic.items()}
    rest = {r.stack: r.traffic_share_pct for r in plan.regions if r.stack not in named}
    if plan.global_ is not None and plan.global_.routing == "latency":  # latency records take no weight
        return {s: named.get(s, declared[s]) for s in declared}
    merged = {**_split(100 - sum(named.values()), rest), **named}
    return {s: merged[s] for s in declared}


def routed_pct(regions: Sequence[RegionShare], weights: Mapping[str, int], routing: Routing) -> dict[str, Decimal]:
    """Worst-case percent of the environment's traffic each region in DNS serves (module docstring)."""
    live = [r for r in regions if weights.get(r.stack, 0) > 0]
    if routing == "weighted":
        total = Decimal(sum(weights[r.stack] for r in live))
        return {r.stack: HUNDRED * weights[r.stack] / total for r in live}
    out_of_dns = sum((r.traffic_share_pct for r in regions if weights.get(r.stack, 0) == 0), ZERO)
    return {r.stack: min(r.traffic_share_pct + out_of_dns, HUNDRED) for r in live}


def scenarios(plan: RolloutPlan) -> list[tuple[str, dict[str, int]]]:
    """(what happens, the weights Route 53 then answers with): declared, one region lost, each wave's step."""
    declared = declared_weights(plan)
    out = [("", declared)]
    if len(plan.regions) > 1:
        out += [(f"with {r.stack} lost (its health check failing)", {**declared, r.stack: 0}) for r in plan.regions]
    out += [(f"during wave {w.name}'s traffic step", weights_during(plan, w)) for w in plan.waves if w.traffic]
    return out


def _how(routing: Routing, region: RegionShare, weights: Mapping[str, int], regions: Sequence[RegionShare]) -> str:
    if routing == "weighted":
        live = sum(w for w in weights.values() if w > 0)
        return f"weighted routing: weight {weights[region.stack]} of {live} in DNS"
    out = [r for r in regions if weights.get(r.stack, 0) == 0]
    return (f"latency routing: its own {_pct(region.traffic_share_pct)}% plus, worst case, "
            + " and ".join(f"all of {r.stack}'s {_pct(r.traffic_share_pct)}%" for r in out)
            + " from clients nearest to it")


def routing_problems(plan: RolloutPlan, sized_pct: Mapping[str, Decimal]) -> list[str]:
    """Every (scenario, region) where a region would serve more than it is sized for; [] when the
    plan has no global endpoint (each region then serves its own hostname only)."""
    if plan.global_ is None:
        return []
    routing = plan.global_.routing
    by_stack = {r.stack: (i, r) for i, r in enumerate(plan.regions)}
    problems: list[str] = []
    for scenario, weights in scenarios(plan):
        for stack, routed in routed_pct(plan.regions, weights, routing).items():
            i, region = by_stack[stack]
            sized = sized_pct[stack]
            if routed <= sized:
                continue
            sizing = (f"traffic_share_pct {_pct(region.traffic_share_pct)}, "
                      + ("absorbing the largest other region's share" if region.absorb_region_failure
                         else "absorb_region_failure false"))
            fix = ("set absorb_region_failure: true (it is then sized for its share plus the largest other region's)"
                   if not region.absorb_region_failure else "give the wave's traffic step a smaller change")
            problems.append(
                f"regions.{i} ({stack}): {scenario + ', ' if scenario else ''}{stack} would serve {_pct(routed)}% of the "
                f"environment's traffic ({_how(routing, region, weights, plan.regions)}), but it is sized for "
                f"{_pct(sized)}% ({sizing}); {fix}"
            )
    return list(dict.fromkeys(problems))


def weights_config_text(weights: Mapping[str, int]) -> str:
    """The global stack's config file of a traffic step (`pulumi up --config-file`)."""
    return yaml.safe_dump({"config": {WEIGHTS_KEY: {s: int(weights[s]) for s in sorted(weights)}}}, sort_keys=False)


def changes(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    """`prod-us-west-2 40 -> 10, prod 60 -> 90`: the weights that change ('no change' when none do)."""
    moved = [f"{s} {before.get(s, 0)} -> {after[s]}" for s in after if before.get(s, 0) != after[s]]
    return ", ".join(moved) or "no change"


def served_text(plan: RolloutPlan, weights: Mapping[str, int]) -> str:
    """`prod-us-west-2 serves 10%, prod 90%` (worst case under latency routing); out-of-DNS regions named."""
    assert plan.global_ is not None
    routed = routed_pct(plan.regions, weights, plan.global_.routing)
    first, *rest = [f"{s} {_pct(p)}%" for s, p in routed.items()]
    text = first.replace(" ", " serves ", 1) + "".join(f", {r}" for r in rest)
    out = [s for s in weights if weights[s] == 0]
    text += " (worst case)" if plan.global_.routing == "latency" and out else ""
    return text + (f"; out of DNS: {', '.join(out)}" if out else "")


def parse_weights(value: object, plan: RolloutPlan, where: str = WEIGHTS_KEY) -> dict[str, int]:
    """A traffic step's weights as the global program reads them back from its config (a mapping,
    or its JSON text): region stacks to whole percents 0-100."""
    import json

    from infra.core.errors import InputError

    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(where, value, "a mapping of region stack to weight (JSON or YAML)") from None
    if not isinstance(value, Mapping):
        raise InputError(where, value, "a mapping of region stack to weight")
    stacks = [r.stack for r in plan.regions]
    out: dict[str, int] = {}
    for stack, weight in value.items():
        if stack not in stacks:
            raise InputError(f"{where}.{stack}", stack, f"a region stack of {plan.environment}: {', '.join(stacks)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight != int(weight) \
                or not 0 <= weight <= 100:
            raise InputError(f"{where}.{stack}", weight, "a whole percent from 0 to 100")
        out[str(stack)] = int(weight)
    return out
