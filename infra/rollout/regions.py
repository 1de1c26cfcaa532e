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
request whatever the share. The `regional_sizing_spec` hook is what the Pulumi program (and
preflight) call to size a stack for its share.
"""
from __future__ import annotations

import contextlib
import math
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from infra.config import SizingSpec, Workload

if TYPE_CHECKING:  # pragma: no cover
    from infra.rollout.spec import RolloutPlan

STACK_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
REGION_RE = r"^[a-z]{2}(-[a-z]+)+-\d$"
HUNDRED = Decimal(100)


class RegionShare(BaseModel):
    """One region stack of an environment and the share of its traffic it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = Field(pattern=STACK_NAME_RE, description="Pulumi stack name (reads Pulumi.<stack>.yaml).")
    region: str = Field(pattern=REGION_RE, description="AWS region of the stack; must equal its aws:region.")
    traffic_share_pct: Decimal = Field(
        gt=0, le=100, description="Percent of the environment's declared traffic this region serves."
    )
    absorb_region_failure: bool = Field(
        default=False,
        description="Also size for the largest other region's share (the region survives another region's loss).",
    )


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

STACKS_DIR = "stacks"


def find_environment(stack: str, project_dir: Path | str = ".") -> tuple["RolloutPlan", Path] | None:
    """The rollout plan (stacks/*.yaml) that lists `stack` as a region, or None.

    A stack listed by two environments is a configuration error (its share would be ambiguous).
    """
    from infra.errors import UserError
    from infra.rollout.spec import load_rollout_plan

    directory = Path(project_dir) / STACKS_DIR
    found: list[tuple[RolloutPlan, Path]] = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
        plan = load_rollout_plan(path)
        if any(r.stack == stack for r in plan.regions):
            found.append((plan, path))
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(project_dir)) for _, p in found)
        raise UserError(f"stack {stack!r} is listed as a region by more than one rollout plan ({names}); list it in one")
    return found[0] if found else None


def share_of(stack: str, project_dir: Path | str = ".") -> tuple[RegionShare, tuple[RegionShare, ...]] | None:
    """(the stack's RegionShare, all regions of its environment), or None when no plan lists it."""
    env = find_environment(stack, project_dir)
    if env is None:
        return None
    plan, _ = env
    share = next(r for r in plan.regions if r.stack == stack)
    return share, plan.regions


# Set while a caller runs the program on config whose workload it has already scaled (the
# rollout's dry run does, so its plans are regional whether or not the program calls the hook
# below); the hook then leaves the spec alone instead of scaling it twice.
_prescaled = 0


@contextlib.contextmanager
def share_applied_by_caller() -> Iterator[None]:
    global _prescaled
    _prescaled += 1
    try:
        yield
    finally:
        _prescaled -= 1


def regional_sizing_spec(spec: SizingSpec, stack: str, project_dir: Path | str = ".") -> SizingSpec:
    """The hook for the Pulumi program and preflight: `spec` sized for `stack`'s share.

    A stack that no rollout plan lists (a dev stack) is sized for the whole declared workload;
    inside `share_applied_by_caller()` the spec is returned unchanged (already scaled).
    """
    if _prescaled:
        return spec
    found = share_of(stack, project_dir)
    if found is None:
        return spec
    share, regions = found
    return regional_spec(spec, share, regions)
