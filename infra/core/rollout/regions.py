"""Region shares: one declared workload, split over region stacks by traffic share. Pure.

An environment (`stacks/<env>.yaml`) lists its region stacks, each with the percent of the
environment's traffic it serves. Every `Pulumi.<stack>.yaml` of the environment carries the
FULL declared workload (the same block in every file); sizing for one region scales the
load-carrying fields by that region's *sizing share*:

* `traffic_share_pct` when the region does not absorb failures;
* `traffic_share_pct` + the largest other region's share when `absorb_region_failure` is set
  (N+1 across regions: if any one other region fails, this one carries its traffic too),
  capped at 100 %.

Scaled: `concurrent_requests` (rounded up, at least 1) and `output_tokens_per_s`. Unchanged:
per-request shape (token counts), latency SLOs, burst factor and availability, which hold per
request whatever the share. `infra.core.resolve` is the one caller: every plan of a region stack
is sized through it.
"""
from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from infra.core.config import SizingSpec, Workload
from infra.core.errors import UserError
from infra.core.paths import STACKS_DIRNAME
from infra.core.rollout.spec import RegionShare, RolloutPlan, load_rollout_plan

HUNDRED = Decimal(100)


def sizing_share_pct(share: RegionShare, regions: Sequence[RegionShare] = ()) -> Decimal:
    """The percent of the declared workload a region is sized for (see the module docstring)."""
    pct = share.traffic_share_pct
    if share.absorb_region_failure:
        others = [r.traffic_share_pct for r in regions if r.stack != share.stack]
        pct += max(others, default=Decimal(0))
    return min(pct, HUNDRED)


def _scale_int(value: int, pct: Decimal) -> int:
    return max(1, math.ceil(Decimal(value) * pct / HUNDRED))


def regional_workload(workload: Workload, share: RegionShare, regions: Sequence[RegionShare] = ()) -> Workload:
    pct = sizing_share_pct(share, regions)
    data = workload.model_dump()
    data["concurrent_requests"] = _scale_int(workload.concurrent_requests, pct)
    if workload.output_tokens_per_s is not None:
        data["output_tokens_per_s"] = float(Decimal(str(workload.output_tokens_per_s)) * pct / HUNDRED)
    return Workload.model_validate(data)


def regional_spec(spec: SizingSpec, share: RegionShare, regions: Sequence[RegionShare] = ()) -> SizingSpec:
    """`spec` with its load scaled to the region's sizing share; everything else unchanged.

    `regions` is every region of the environment (needed when the share absorbs a failure).
    """
    return SizingSpec(workload=regional_workload(spec.workload, share, regions), model=spec.model, fleet=spec.fleet)


# --- where a stack's share is declared -------------------------------------------------------


def find_environment(stack: str, project_dir: Path | str = ".") -> tuple[RolloutPlan, Path] | None:
    """The rollout plan (stacks/*.yaml) that lists `stack` as a region, or None.

    A stack listed by two environments is a configuration error (its share would be ambiguous).
    """
    directory = Path(project_dir) / STACKS_DIRNAME
    found: list[tuple[RolloutPlan, Path]] = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
        plan = load_rollout_plan(path)
        if any(r.stack == stack for r in plan.regions):
            found.append((plan, path))
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(project_dir)) for _, p in found)
        raise UserError(f"stack {stack!r} is listed as a region by more than one rollout plan ({names}); list it in one")
    return found[0] if found else None


def share_of(stack: str, project_dir: Path | str = ".") -> tuple[RegionShare, RolloutPlan, Path] | None:
    """(the stack's RegionShare, its environment's rollout plan, that plan's path), or None."""
    env = find_environment(stack, project_dir)
    if env is None:
        return None
    plan, path = env
    return plan.region_of(stack), plan, path
