"""What the plan and the simulator predict for the load a benchmark run offered. Pure.

The run's load is split evenly over the replicas serving it (the plan's baseline unless told):
a closed loop of C clients is C / replicas clients per replica, a rate R is R / replicas per
replica (`sizing.simulate.load_point`). The plan's figure is the closed form
(`sizing.load.steady_state`, what the search ranks by); the simulator's is the replica
simulation at that load (`simulate` replica mode), with the run's mean lengths and seed. Fleet
throughput is a replica's times the replicas kept busy (all of them, or the C clients' replicas
when C is below the replicas). Both use the plan's replica as sized, measured
corrections included (`sizing.measured`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from infra.core.bench.load import Schedule
from infra.core.sizing.simulate.load_point import LoadPoint, simulate_point
from infra.core.sizing.plan import FleetPlan


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else round(value, 3)


def load_point(sched: Schedule, replicas: int) -> LoadPoint:
    return LoadPoint.split(float(np.mean(sched.input_tokens)), float(np.mean(sched.output_tokens)), replicas=replicas,
                           requests=len(sched), seed=sched.seed, concurrency=sched.concurrency,
                           rate_per_s=None if sched.concurrency is not None else sched.rate_per_s)


def predict(plan: FleetPlan, sched: Schedule, replicas: int) -> dict[str, Any]:
    """{"replicas", "per_replica", "lengths", "plan": figures, "simulator": figures}; figures in
    the bench's JSON shape (ttft_ms/tpot_ms/e2e_ms as {mean, p50, p95, ...}, output_tokens_per_s)."""
    from infra.core.sizing.load import steady_state
    from infra.core.sizing.simulate.scenarios import replica_model

    rm = replica_model(plan)
    point = load_point(sched, replicas)
    # fewer clients than replicas keep only that many replicas busy (one request each)
    busy = min(replicas, sched.concurrency) if sched.concurrency is not None else replicas
    kw: dict[str, Any] = ({"concurrency": point.concurrency} if point.concurrency is not None
                          else {"arrival_rate_per_s": point.rate_per_s})
    try:
        cf = steady_state(rm, point.input_tokens, point.output_tokens,
                          request_overhead_ms=rm.engine.request_overhead_ms, **kw)
        closed: dict[str, Any] = {
            "ttft_ms": {"mean": _finite(cf.ttft_ms_mean), "p95": _finite(cf.ttft_ms_p95)},
            "tpot_ms": {"mean": _finite(cf.tpot_ms_mean), "p95": _finite(cf.tpot_ms_p95)},
            "e2e_ms": {"mean": _finite(cf.e2e_ms_mean), "p95": _finite(cf.e2e_ms_p95)},
            "output_tokens_per_s": _finite(cf.output_tokens_per_s * busy),
            "saturated": cf.saturated,
        }
    except ValueError as exc:  # a load the closed form cannot state (a prompt over the budget)
        closed = {"error": str(exc)}
    run = simulate_point(rm, point)
    doc = run.to_dict()
    simulated = {k: doc[k] for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "requests")}
    simulated["output_tokens_per_s"] = round(run.output_tokens_per_s * busy, 3)
    return {"replicas": replicas, "busy_replicas": busy, "per_replica": point.describe(),
            "lengths": {"input_tokens": point.input_tokens, "output_tokens": point.output_tokens},
            "plan": closed, "simulator": simulated}


def configuration(plan: FleetPlan, *, stack: str, plan_digest: str) -> dict[str, Any]:
    """What a run measured, as `calibrate --from-bench` keys it: the deployed configuration."""
    from infra.core.sizing.measured import engine_version

    v = plan.vllm
    return {"stack": stack, "model": plan.model, "served_name": plan.served_name, "gpu": plan.gpu,
            "tensor_parallel": plan.tensor_parallel, "precision": plan.precision, "kv_cache_dtype": v.kv_cache_dtype,
            "engine": plan.engine, "engine_version": engine_version(plan.engine), "max_num_seqs": v.max_num_seqs,
            "max_num_batched_tokens": v.max_num_batched_tokens, "gpu_memory_utilization": v.gpu_memory_utilization,
            "replicas_baseline": plan.control.min_replicas, "plan_digest": plan_digest}
