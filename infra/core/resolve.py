"""One resolver: a stack's config, its region share, its sizing spec and its fleet plan.

Everything that needs "the plan of this stack" calls `resolve` (the Pulumi program, the offline
plan, preflight, the rollout's dry run, the commands, the tests), so each of them sizes the
same spec the same way. A stack listed by an environment (`stacks/<env>.yaml`) is sized for its
traffic share (`infra.core.rollout.regions`); any other stack for the whole declared workload.

Sizing is the costly step (every plan is verified in the fleet simulator), so plans are
memoised by a digest of what they depend on: the regional sizing spec (the config with the
share applied), the catalog files and, for `size --trace`, the simulated requests. A process
pays for a stack's verification once.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

from infra.core.catalog import Catalog, catalog_digest
from infra.core.config import SizingSpec, StackConfig, parse_stack_config, stack_file_entries, stack_warnings
from infra.core.paths import REPO_ROOT
from infra.core.rollout.regions import HUNDRED, regional_spec, share_of, sizing_share_pct
from infra.core.rollout.spec import RegionShare, RolloutPlan
from infra.core.sizing.plan import FleetPlan
from infra.core.sizing.search import size
from infra.core.sizing.simulate.workload import Lengths

_MEMO_SIZE = 64
_memo: OrderedDict[str, FleetPlan] = OrderedDict()
_memo_lock = threading.Lock()


@dataclass(frozen=True)
class ResolvedStack:
    stack: str
    config: StackConfig
    spec: SizingSpec  # the declared workload scaled to the region's share
    plan: FleetPlan
    digest: str  # of the inputs the plan was sized from
    share: RegionShare | None = None  # None: no environment lists the stack
    environment: RolloutPlan | None = None
    environment_path: Path | None = None
    sizing_share_pct: Decimal = HUNDRED

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def warnings(self) -> list[str]:
        """Values that look copied from another stack (`config.stack_warnings`)."""
        return stack_warnings(self.stack, self.config, self.environment.environment if self.environment else None)


def lengths_digest(lengths: Lengths | None) -> str:
    """What simulated requests look like: the declared fixed lengths (None) or `Lengths.digest`."""
    return "declared" if lengths is None else lengths.digest()


def plan_digest(spec: SizingSpec, catalog: Catalog | None = None) -> str:
    """What a plan depends on: the sizing spec it was sized for and the catalog it was sized with."""
    h = hashlib.sha256(spec.model_dump_json().encode())
    h.update(b"\0" + catalog_digest(catalog).encode())
    return h.hexdigest()[:20]


def sized(spec: SizingSpec, catalog: Catalog | None = None, *, lengths: Lengths | None = None, seed: int = 0,
          verify_alternatives: bool = False, progress: Callable[[str], None] | None = None,
          rate_per_s: float | None = None) -> tuple[FleetPlan, str]:
    """`size(spec, ...)` (verified in the fleet simulator), memoised by `plan_digest` and the
    simulation's inputs (a synthetic catalog is sized every time)."""
    digest = plan_digest(spec, catalog)
    options = (lengths_digest(lengths), seed, verify_alternatives, rate_per_s)
    key = digest if options == ("declared", 0, False, None) else hashlib.sha256(
        "\0".join(map(str, (digest, *options))).encode()).hexdigest()[:20]
    kwargs: dict[str, Any] = dict(lengths=lengths, seed=seed, verify_alternatives=verify_alternatives, progress=progress,
                                  rate_per_s=rate_per_s)
    if catalog is not None:
        return size(spec, catalog, **kwargs), digest
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key], digest
    plan = size(spec, **kwargs)
    with _memo_lock:
        _memo[key] = plan
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return plan, digest


def resolve(
    stack: str,
    project_dir: Path | str = REPO_ROOT,
    *,
    entries: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> ResolvedStack:
    """The stack's config (from `entries`, else Pulumi.yaml + Pulumi.<stack>.yaml), its share and its plan.

    `entries` are full config keys to values, as the engine hands them to the program.
    """
    project_dir = Path(project_dir)
    if entries is None:
        entries = stack_file_entries(stack, project_dir)
    cfg = parse_stack_config(dict(entries), source=f"Pulumi.{stack}.yaml")
    found = share_of(stack, project_dir)
    spec = cfg.sizing_spec()
    if found is None:
        plan, digest = sized(spec, catalog)
        return ResolvedStack(stack, cfg, spec, plan, digest)
    share, environment, path = found
    spec = regional_spec(spec, share, environment.regions)
    plan, digest = sized(spec, catalog)
    return ResolvedStack(stack, cfg, spec, plan, digest, share, environment, path,
                         sizing_share_pct(share, environment.regions))
