"""The three scenarios every recommended plan is verified in, run on the plan's own control block.

    sustained   the declared load, all AZs up, for SUSTAINED_S after a WARMUP_S warm-up;
    az-loss     the same, with the AZ holding the most replicas lost at AZ_LOSS_AT_S;
    burst       1x until BURST_START_S, up to burst_factor x over workload.burst_ramp_s, held
                for workload.burst_hold_s.

Arrivals are open loop at the plan's arrival rate (Poisson, or a trace replayed at that mean
rate and time-warped by the burst profile). Requests arriving in the measured window count;
the run continues until they end (or a drain limit, after which they are misses). A scenario
passes when every declared p95 holds over its requests, rejected and lost ones counted as
misses, and its joint attainment reaches `workload.slo_attainment_pct[scenario]` when given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from infra.core.catalog import Catalog, load_catalog
from infra.core.config import Workload
from infra.core.sizing.measured import engine_for
from infra.core.sizing.memory import checkpoint_gib
from infra.core.sizing.perf import ReplicaModel, engine_params
from infra.core.sizing.plan import FleetPlan, ScenarioResult
from infra.core.sizing.simulate.engine import DONE
from infra.core.sizing.simulate.fleet import FleetRun, FleetShape, simulate_fleet
from infra.core.sizing.simulate.memo import memoised
from infra.core.sizing.simulate.replica import latencies_of
from infra.core.sizing.simulate.stats import SLO_METRICS, SLO_QUANTILE_PCT, Latencies
from infra.core.sizing.simulate.workload import Lengths, RateProfile, open_loop
from infra.core.sizing.time_to_serve import NODE_TIER_PATH, after_signal_s, time_to_serve

SCENARIOS = ("sustained", "az-loss", "burst")
WARMUP_S = 20.0
SUSTAINED_S = 180.0
AZ_LOSS_AT_S = 60.0
BURST_START_S = 40.0
LABELS = {"ttft": "TTFT p95", "tpot": "TPOT p95", "e2e": "end-to-end p95"}


def targets_ms(w: Workload) -> dict[str, float | None]:
    return {"ttft": w.ttft_p95_ms, "tpot": w.tpot_p95_ms, "e2e": w.e2e_p95_ms}


def drain_s(w: Workload) -> float:
    """How long the run continues after the last arrival for requests still in flight."""
    e2e = w.e2e_p95_ms or (w.ttft_p95_ms + (w.output_tokens - 1) * w.tpot_p95_ms)
    return max(30.0, 3.0 * e2e / 1e3)


@dataclass(frozen=True)
class Window:
    name: str
    arrivals_until_s: float
    measure_from_s: float
    profile: RateProfile
    az_loss_at_s: float | None


def window(name: str, w: Workload) -> Window:
    if name == "sustained":
        return Window(name, WARMUP_S + SUSTAINED_S, WARMUP_S, RateProfile(), None)
    if name == "az-loss":
        return Window(name, WARMUP_S + SUSTAINED_S, WARMUP_S, RateProfile(), AZ_LOSS_AT_S)
    if name == "burst":
        end = BURST_START_S + w.burst_ramp_s + w.burst_hold_s
        return Window(name, end, WARMUP_S, RateProfile.burst(BURST_START_S, w.burst_ramp_s, w.burst_hold_s,
                                                              w.burst_factor), None)
    raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")


def replica_model(plan: FleetPlan, catalog: Catalog | None = None) -> ReplicaModel:
    """The replica the plan deploys, as the step model sees it."""
    catalog = catalog or load_catalog()
    v = plan.vllm
    engine, _ = engine_for(engine_params(plan.engine), plan.model, plan.gpu, plan.tensor_parallel, plan.precision)
    return ReplicaModel(
        catalog.model(plan.model), catalog.gpu(plan.gpu), plan.tensor_parallel, plan.precision, v.kv_cache_dtype,
        engine, gpu_memory_utilization=v.gpu_memory_utilization,
        max_num_seqs=v.max_num_seqs, max_num_batched_tokens=v.max_num_batched_tokens,
    )


def fleet_shape(plan: FleetPlan, rm: ReplicaModel, warm_pool_state: str = "STOPPED") -> FleetShape:
    """The plan's nodes and replicas; new replicas start after the time to serve `rm`'s checkpoint."""
    paths = time_to_serve(checkpoint_gib(rm.arch, rm.precision))
    return FleetShape(
        azs=plan.azs,
        replicas_per_node=plan.replicas_per_node,
        serving_nodes_per_az=plan.nodes_per_az.min - plan.warm_spares_per_az,
        warm_nodes_per_az=plan.warm_spares_per_az,
        max_nodes_per_az=plan.nodes_per_az.max,
        placeholder_s=after_signal_s(paths["placeholder"]),
        node_tier_s=after_signal_s(paths[NODE_TIER_PATH[warm_pool_state]]),
    )


@dataclass
class ScenarioRun:
    result: ScenarioResult
    latencies: Latencies
    fleet: FleetRun
    measured: np.ndarray  # request ids in the window
    window: Window
    overhead_s: float  # the engine's per-request overhead, added to TTFT and e2e

    def timeline(self, targets: dict[str, float | None], interval_s: float = 10.0) -> list[dict[str, Any]]:
        """Per interval of arrival: offered load, replicas, spares in use, shed/lost per second,
        TTFT and e2e p95 (None: a miss), joint attainment."""
        R = self.fleet.requests
        arrival = np.asarray(R.arrival)
        state = np.asarray(R.state)
        lat = latencies_of(R, np.arange(len(R)), self.overhead_s)
        ok = lat.within(targets)
        samples = self.fleet.samples
        rows = []
        for k in range(int(np.ceil(self.window.arrivals_until_s / interval_s))):
            a, b = k * interval_s, (k + 1) * interval_s
            sel = (arrival >= a) & (arrival < b)
            n = int(sel.sum())
            snap = [s for s in samples if a <= s.t_s < b] or [max((s for s in samples if s.t_s <= a),
                                                                  key=lambda s: s.t_s, default=samples[0])]
            rows.append({
                "t_s": a,
                "offered_per_s": round(n / interval_s, 3),
                "replicas_ready": max(s.ready for s in snap),
                "replicas_starting": max(s.starting for s in snap),
                "replicas_desired": max(s.desired for s in snap),
                "spares_in_use": max(s.spares_used for s in snap),
                "signal_per_replica": round(snap[-1].signal / max(1, snap[-1].ready), 2),
                "rejected_per_s": round(int(((state != DONE) & sel).sum()) / interval_s, 3),
                "ttft_p95_ms": _p95_ms(lat.ttft_s[sel]),
                "e2e_p95_ms": _p95_ms(lat.e2e_s[sel]),
                "attainment_pct": round(100.0 * float(ok[sel].mean()), 2) if n else None,
            })
        return rows


def _p95_ms(values_s: np.ndarray) -> float | None:
    if values_s.size == 0:
        return None
    q = float(np.percentile(values_s, SLO_QUANTILE_PCT, method="inverted_cdf"))
    return round(q * 1e3, 1) if np.isfinite(q) else None


def run_scenario(plan: FleetPlan, w: Workload, name: str, *, lengths: Lengths, rate_per_s: float, seed: int = 0,
                 catalog: Catalog | None = None, rm: ReplicaModel | None = None, retry_after_s: float | None = None,
                 prefix_hit_fraction: float = 0.0, warm_pool_state: str = "STOPPED",
                 progress: Callable[[float], None] | None = None) -> ScenarioRun:
    """Simulate one scenario of `plan` (its control block, its shape) under workload `w`."""
    win = window(name, w)
    rm = rm or replica_model(plan, catalog)
    rng = np.random.default_rng(seed)
    load = open_loop(rng, lengths, rate_per_s, win.arrivals_until_s, win.profile)
    run = simulate_fleet(
        rm, fleet_shape(plan, rm, warm_pool_state), plan.control, load, seed=seed,
        until_s=win.arrivals_until_s + drain_s(w), az_loss_at_s=win.az_loss_at_s,
        prefix_hit_fraction=prefix_hit_fraction, retry_after_s=retry_after_s,
        max_model_len=plan.vllm.max_model_len, progress=progress,
    )
    overhead = rm.engine.request_overhead_ms / 1e3
    measured = np.flatnonzero(load.arrival_s >= win.measure_from_s)
    lat = latencies_of(run.requests, measured, overhead)
    targets = targets_ms(w)
    broken = lat.broken(targets)
    attainment = lat.attainment_pct(targets)
    need = (w.slo_attainment_pct or {}).get(name)
    why = "; ".join(f"{name}: {LABELS[m]} {value:,.0f} ms > {target:g} ms" if np.isfinite(value)
                    else f"{name}: {LABELS[m]} is a miss (over 5 % of requests shed or unanswered) > {target:g} ms"
                    for m, target, value in broken)
    if need is not None and attainment < need:
        why = "; ".join(filter(None, [why, f"{name}: joint attainment {attainment:.1f} % < {need:g} %"]))
    states = np.asarray(run.requests.state)[measured]
    p95 = {m: lat.p95_ms(m) for m in SLO_METRICS}
    result = ScenarioResult(
        name=name,
        passed=not why,
        requests=int(measured.size),
        rejected=int((states != DONE).sum()),
        attainment_pct=round(attainment, 2),
        ttft_p95_ms=_round(p95["ttft"]),
        tpot_p95_ms=_round(p95["tpot"]),
        e2e_p95_ms=_round(p95["e2e"]),
        e2e_p99_ms=lat.summaries()["e2e_ms"]["p99"],
        replicas_min=run.replicas_min,
        replicas_max=run.replicas_max,
        why=why,
    )
    return ScenarioRun(result, lat, run, measured, win, overhead)


def _round(ms: float) -> float | None:
    return round(ms, 1) if np.isfinite(ms) else None


def verify(plan: FleetPlan, w: Workload, *, lengths: Lengths, rate_per_s: float, seed: int = 0,
           catalog: Catalog | None = None, rm: ReplicaModel | None = None, stop_at_first_failure: bool = True,
           names: tuple[str, ...] = SCENARIOS) -> tuple[ScenarioResult, ...]:
    """The plan's verdict in each scenario (cheapest first; by default stopping at the first failure)."""
    rm = rm or replica_model(plan, catalog)

    def run() -> tuple[ScenarioResult, ...]:
        out = []
        for name in names:
            r = run_scenario(plan, w, name, lengths=lengths, rate_per_s=rate_per_s, seed=seed, rm=rm).result
            out.append(r)
            if stop_at_first_failure and not r.passed:
                break
        return tuple(out)

    # What the fleet simulation reads of the plan: its shape, control block and context window.
    inputs = ("verify", rm.identity, fleet_shape(plan, rm), plan.control, plan.vllm.max_model_len, w, lengths.digest(),
              rate_per_s, seed, stop_at_first_failure, names)
    return memoised(inputs, run)
