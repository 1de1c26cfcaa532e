"""SLO search: the cheapest fleet that meets every SLO, sustained, with an AZ lost and in a burst.

Stage one, the closed form (a fast pre-filter): for each candidate (instance type x TP x
precision x max-num-seqs x token budget) the highest per-replica concurrency at which every SLO
still holds in the steady-state model (load.py), by bisection; replicas for the declared
concurrency and output rate, packed onto whole instances and spread so that the AZs left after
losing one still carry the load; candidates ranked by price.

Stage two (verified.py): the ranked candidates are simulated, cheapest proposal first, in the
three scenarios of simulate/scenarios.py, with control settings set at each one's simulated
knee; the first proposal that passes all three is the plan. The others become ranked
alternatives with the reason they lost (a simulated scenario and its figure where simulated).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Callable

from infra.core.catalog import Catalog, InstanceType, ModelArch, load_catalog
from infra.core.catalog.prices import PriceBook, load_price_book
from infra.core.config import SizingSpec, Workload
from infra.core.errors import InfeasibleError, InputError
from infra.core.sizing.load import LoadResult, steady_state
from infra.core.sizing.memory import valid_tp_degrees
from infra.core.sizing.measured import engine_for, measured_notes
from infra.core.sizing.perf import EngineParams, ReplicaModel, architecture_notes, engine_params
from infra.core.sizing.plan import Alternative, FleetPlan, NodeCounts, PlanCost, Predicted, VllmSettings
from infra.core.sizing.simulate.workload import Lengths
from infra.core.sizing.verified import WARM_SPARE_SHARE, CandidateKnee, Proposal, Shape, VerifiedSearch, shape_for

MAX_NUM_SEQS_CHOICES = (16, 32, 64, 128, 256, 512)
MAX_NUM_BATCHED_TOKENS_CHOICES = (2048, 8192)  # a small budget trims TPOT spikes from long prompts
QUANTIZATION_FLAG = {"bf16": None, "fp8": "fp8", "int8": "compressed-tensors", "int4": "awq_marlin"}
SLO_LABELS = {
    "ttft_p95_ms": "TTFT p95",
    "tpot_p95_ms": "TPOT p95",
    "e2e_p95_ms": "end-to-end p95",
}


@dataclass(frozen=True)
class Candidate:
    instance: InstanceType
    tp: int
    precision: str
    max_num_seqs: int
    max_num_batched_tokens: int
    rm: ReplicaModel

    @property
    def replicas_per_node(self) -> int:
        return self.instance.gpu_count // self.tp

    def label(self) -> str:
        return (
            f"{self.instance.name} TP={self.tp} {self.precision} "
            f"max-num-seqs={self.max_num_seqs} max-num-batched-tokens={self.max_num_batched_tokens}"
        )


@dataclass(frozen=True)
class Evaluation:
    cand: Candidate
    feasible: bool
    concurrency_per_replica: int = 0  # highest that meets every SLO
    at_best: LoadResult | None = None  # prediction at that concurrency
    broken: tuple[str, float, float] | None = None  # (slo key, target, best achievable)
    replicas_sustained: int = 0
    nodes_per_az: int = 0
    usd_per_node_hour: Decimal | None = None
    usd_per_hour: Decimal | None = None
    price_note: str = ""


def _slo_values(r: LoadResult) -> dict[str, float]:
    return {"ttft_p95_ms": r.ttft_ms_p95, "tpot_p95_ms": r.tpot_ms_p95, "e2e_p95_ms": r.e2e_ms_p95}


def _meets(r: LoadResult, w: Workload) -> bool:
    if r.waiting > 0 or r.saturated:
        return False
    v = _slo_values(r)
    return (
        v["ttft_p95_ms"] <= w.ttft_p95_ms
        and v["tpot_p95_ms"] <= w.tpot_p95_ms
        and (w.e2e_p95_ms is None or v["e2e_p95_ms"] <= w.e2e_p95_ms)
    )


def _predict(c: Candidate, w: Workload, concurrency: int) -> LoadResult:
    return steady_state(
        c.rm, w.input_tokens, w.output_tokens, concurrency=concurrency,
        request_overhead_ms=c.rm.engine.request_overhead_ms,
    )


def _worst_slo(r: LoadResult, w: Workload) -> tuple[str, float, float]:
    """The SLO broken by the widest margin at concurrency 1 (the best this candidate can do)."""
    targets = {"ttft_p95_ms": w.ttft_p95_ms, "tpot_p95_ms": w.tpot_p95_ms, "e2e_p95_ms": w.e2e_p95_ms}
    worst = max(
        ((k, t, v) for k, v in _slo_values(r).items() if (t := targets[k]) is not None),
        key=lambda kv: kv[2] / kv[1],
    )
    return worst


def _max_good_concurrency(c: Candidate, w: Workload, cap: int) -> tuple[int, LoadResult | None]:
    """Highest per-replica concurrency (<= cap) at which every SLO holds; 0 if none."""
    lo_r = _predict(c, w, 1)
    if not _meets(lo_r, w):
        return 0, lo_r
    hi_r = _predict(c, w, cap)
    if _meets(hi_r, w):
        return cap, hi_r
    lo, hi, best = 1, cap, lo_r
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = _predict(c, w, mid)
        if _meets(r, w):
            lo, best = mid, r
        else:
            hi = mid
    return lo, best


def candidates(spec: SizingSpec, arch: ModelArch, catalog: Catalog, engine: EngineParams) -> list[Candidate]:
    f = spec.fleet
    out = []
    mbt_choices = (f.max_num_batched_tokens,) if f.max_num_batched_tokens else MAX_NUM_BATCHED_TOKENS_CHOICES
    for itype in f.instance_types:
        inst = catalog.instance(itype, "fleet.instance_types")
        gpu = catalog.gpu(inst.gpu)
        for tp in valid_tp_degrees(arch, inst.gpu_count):
            for precision in f.precisions:
                # a configuration measured on a deployed fleet sizes with its corrected factors
                measured_engine, _ = engine_for(engine, arch.key, gpu.key, tp, precision)
                for mns in MAX_NUM_SEQS_CHOICES:
                    for mbt in mbt_choices:
                        rm = ReplicaModel(
                            arch, gpu, tp, precision, spec.model.kv_cache_dtype, measured_engine,
                            gpu_memory_utilization=f.gpu_memory_utilization,
                            max_num_seqs=mns, max_num_batched_tokens=mbt,
                        )
                        out.append(Candidate(inst, tp, precision, mns, mbt, rm))
    return out


def _node_price(spec: SizingSpec, inst: InstanceType, prices: PriceBook) -> tuple[Decimal | None, str]:
    """$/node-hour of the capacity the stack buys: fleet.instance_usd_per_hour, else the price book
    for fleet.capacity_type (on-demand, capacity-block or reservation)."""
    f = spec.fleet
    if inst.name in f.instance_usd_per_hour:
        return f.instance_usd_per_hour[inst.name], f"fleet.instance_usd_per_hour (override, {f.capacity_type})"
    row = prices.capacity_price(f.region, inst.name, f.capacity_type)
    if row is None:
        return None, (f"no {f.capacity_type} price for {inst.name} in {f.region}; "
                      f"set fleet.instance_usd_per_hour: {{{inst.name}: USD per instance-hour}}")
    return row.usd, f"{row.source} ({row.date}), {f.capacity_type} {f.region}"


def _kv_short_of_max_model_len(c: Candidate, spec: SizingSpec) -> tuple[str, float, float] | None:
    """vLLM refuses to start when the KV pool cannot hold one max_model_len request
    (check_enough_kv_cache_memory, vllm/v1/core/kv_cache_utils.py): (key, needed, held) then."""
    mem, need = c.rm.memory, spec.model.max_model_len
    if mem.holds_one_request(need, c.max_num_batched_tokens):
        return None
    return ("max_model_len", need, mem.kv_cache_tokens)


def evaluate(c: Candidate, spec: SizingSpec, prices: PriceBook) -> Evaluation:
    w, f = spec.workload, spec.fleet
    context = min(w.input_tokens + w.output_tokens, spec.model.max_model_len)
    if not c.rm.fits:
        return Evaluation(c, False, broken=("memory", 0, 0))
    short = _kv_short_of_max_model_len(c, spec)
    if short:
        return Evaluation(c, False, broken=short)
    # The plan never relies on preemption: a running sequence keeps KV for its whole context.
    cap = c.rm.running_cap(context)
    if cap < 1:
        return Evaluation(c, False, broken=("memory", 0, 0))
    good, at = _max_good_concurrency(c, w, cap)
    if good == 0:
        return Evaluation(c, False, at_best=at, broken=_worst_slo(at, w))
    replicas = _replicas_for(w.concurrent_requests, good, w.output_tokens_per_s, at.output_tokens_per_s)
    serving_azs = f.azs - 1 if f.survive_az_loss else f.azs
    nodes_per_az = math.ceil(replicas / (serving_azs * c.replicas_per_node))
    if nodes_per_az > f.max_nodes_per_az:
        return Evaluation(c, False, good, at, ("nodes", f.max_nodes_per_az, nodes_per_az), replicas, nodes_per_az)
    node_price, note = _node_price(spec, c.instance, prices)
    e = Evaluation(c, True, good, at, None, replicas, nodes_per_az, node_price, None, note)
    if node_price is None:
        return e
    return replace(e, usd_per_hour=node_price * f.azs * _shape(e, spec).baseline)


def _shape(e: Evaluation, spec: SizingSpec) -> Shape:
    """The closed form's shape: its serving nodes, and the burst at the same per-replica limit."""
    w = spec.workload
    burst_tps = w.output_tokens_per_s * w.burst_factor if w.output_tokens_per_s else None
    burst_replicas = _replicas_for(
        w.concurrent_requests * w.burst_factor, e.concurrency_per_replica, burst_tps, e.at_best.output_tokens_per_s
    )
    return shape_for(spec, e.cand.replicas_per_node, e.nodes_per_az, burst_replicas)


def _rank_key(e: Evaluation, spec: SizingSpec) -> tuple:
    # Cheapest baseline (warm spares included), then cheapest burst, then fewer GPUs, then
    # more requests per node (headroom), then smaller blast radius (lower TP), then the
    # smallest max-num-seqs and vLLM's default token budget that give the same result.
    if e.usd_per_node_hour is None or not e.feasible:
        return (Decimal("Infinity"),) * 2 + (math.inf, 0, e.cand.tp, e.cand.max_num_seqs, 0)
    sh = _shape(e, spec)
    return (
        e.usd_per_node_hour * sh.baseline,
        e.usd_per_node_hour * sh.max,
        sh.baseline * e.cand.instance.gpu_count,
        -e.concurrency_per_replica * e.cand.replicas_per_node,
        e.cand.tp,
        e.cand.max_num_seqs,
        -e.cand.max_num_batched_tokens,
    )


def _replicas_for(concurrency: float, good: int, output_tps: float | None, per_replica_tps: float) -> int:
    n = math.ceil(concurrency / good)
    if output_tps:
        n = max(n, math.ceil(output_tps / per_replica_tps))
    return n


def _predicted(c: Candidate, w: Workload, replicas: int) -> Predicted:
    per_replica = max(1, math.ceil(w.concurrent_requests / replicas))
    r = _predict(c, w, per_replica)
    return Predicted(
        concurrency_per_replica=per_replica,
        ttft_p95_ms=round(r.ttft_ms_p95, 1),
        ttft_mean_ms=round(r.ttft_ms_mean, 1),
        tpot_p95_ms=round(r.tpot_ms_p95, 2),
        tpot_mean_ms=round(r.tpot_ms_mean, 2),
        e2e_p95_ms=round(r.e2e_ms_p95, 1),
        output_tokens_per_s_per_replica=round(r.output_tokens_per_s, 1),
    )


def _group_key(e: Evaluation) -> tuple:
    return (e.cand.instance.name, e.cand.tp, e.cand.precision)


def _alternatives(chosen: tuple, chosen_usd: Decimal, evals: list[Evaluation], spec: SizingSpec,
                  tried: dict[tuple, Proposal], proposed: dict[tuple, Proposal | str] | None = None,
                  limit: int = 12) -> tuple[Alternative, ...]:
    """The best variant of every other (instance, TP, precision), ranked, each with its reason.

    A variant the search simulated carries the simulated verdict (the scenario and figure that
    failed, or its verified price); the others the closed form's reason.
    """
    best_by_group: dict[tuple, Evaluation] = {}
    for e in evals:
        k = _group_key(e)
        cur = best_by_group.get(k)
        if cur is None or _rank_key(e, spec) < _rank_key(cur, spec):
            best_by_group[k] = e
    out = []
    for k, e in best_by_group.items():
        if k == chosen:
            continue
        c = e.cand
        p = tried.get(k)
        gpus = _shape(e, spec).baseline * spec.fleet.azs * c.instance.gpu_count if e.feasible else None
        usd = e.usd_per_hour
        feasible = e.feasible and e.usd_per_hour is not None
        verification: tuple = ()
        if p is not None:
            verification, usd = p.verification, p.usd_per_hour
            gpus = p.shape.baseline * spec.fleet.azs * c.instance.gpu_count
            feasible = p.passed
            delta = usd - chosen_usd
            why = (f"verified, but ${delta:,.2f}/h more ({p.shape.baseline} node(s)/AZ)" if p.passed else
                   f"fails in simulation with {p.shape.serving} serving node(s) per AZ (${usd:,.2f}/h): {p.why}")
        elif k in (proposed or {}) and isinstance(proposed[k], Proposal):
            q = proposed[k]
            usd, gpus = q.usd_per_hour, q.shape.baseline * spec.fleet.azs * c.instance.gpu_count
            why = (f"the simulated knee ({q.control.knee_rate_per_replica:.2f} req/s per replica) needs "
                   f"{q.shape.baseline} node(s)/AZ, ${q.usd_per_hour - chosen_usd:,.2f}/h more; not run in the fleet "
                   "simulator (--verify-alternatives runs it)")
        elif k in (proposed or {}):
            feasible, why = False, f"simulated: {proposed[k]}"
        elif feasible:
            delta = e.usd_per_hour - chosen_usd
            why = (
                f"closed form: ${delta:,.2f}/h more ({_shape(e, spec).baseline} node(s)/AZ with warm spares, "
                f"{e.replicas_sustained} replicas needed); not simulated"
            )
            if delta == 0:
                why = "closed form: the same price; ranked lower on GPU count or headroom; not simulated"
        elif e.feasible:
            why = e.price_note
        elif e.broken and e.broken[0] == "memory":
            why = "does not fit: weights + activations leave no KV cache at this context"
        elif e.broken and e.broken[0] == "max_model_len":
            why = _max_model_len_why(e)
        elif e.broken and e.broken[0] == "nodes":
            why = f"needs {e.broken[2]} nodes per AZ > fleet.max_nodes_per_az {e.broken[1]}"
        else:
            key, target, best = e.broken
            why = f"breaks {SLO_LABELS[key]}: {best:,.1f} ms at 1 request per replica > {target:,.0f} ms"
        out.append(
            Alternative(
                instance_type=c.instance.name, tensor_parallel=c.tp, precision=c.precision,
                max_num_seqs=p.control.max_num_seqs if p else c.max_num_seqs,
                max_num_batched_tokens=c.max_num_batched_tokens,
                feasible=feasible, gpus=gpus,
                usd_per_hour_baseline=float(usd) if usd is not None else None,
                why=why, verification=verification,
            )
        )
    out.sort(key=lambda a: (not a.feasible, a.usd_per_hour_baseline or math.inf, a.instance_type, a.tensor_parallel))
    return tuple(out[:limit])


def _max_model_len_why(e: Evaluation) -> str:
    _, need, held = e.broken
    return (f"KV pool holds {held:,.0f} tokens, less than one model.max_model_len {need:,.0f}-token request: "
            "vLLM refuses to start")


def _infeasible_message(spec: SizingSpec, evals: list[Evaluation], arch: ModelArch) -> str:
    w = spec.workload
    too_big = [e for e in evals if e.broken and e.broken[0] == "nodes"]
    if too_big:
        e = min(too_big, key=lambda e: e.broken[2])
        return (
            f"fleet.max_nodes_per_az: {spec.fleet.max_nodes_per_az} is too low; the smallest fleet meeting every SLO "
            f"needs {e.broken[2]} x {e.cand.instance.name} per AZ (TP={e.cand.tp})"
        )
    fitting = [e for e in evals if e.broken and e.broken[0] in SLO_LABELS and e.at_best is not None]
    too_short = [e for e in evals if e.broken and e.broken[0] == "max_model_len"]
    if not fitting and too_short:
        e = max(too_short, key=lambda e: e.broken[2])
        return (f"model.max_model_len {spec.model.max_model_len} is too long for {arch.key} on "
                f"{', '.join(spec.fleet.instance_types)}: the largest KV pool ({e.cand.label()}) holds "
                f"{e.broken[2]:,.0f} tokens, and vLLM refuses to start unless it holds one max_model_len request; "
                "lower model.max_model_len, allow more GPUs per replica, or use fp8 KV cache")
    if not fitting:
        return (
            f"{arch.key} does not fit with a usable KV cache on any of {', '.join(spec.fleet.instance_types)} "
            f"at precisions {', '.join(spec.fleet.precisions)} and a {w.input_tokens + w.output_tokens}-token "
            "context; allow larger instances, a lower precision, or fp8 KV cache"
        )
    # Name the SLO that no candidate can meet even at one request per replica, with the best value.
    targets = {"ttft_p95_ms": w.ttft_p95_ms, "tpot_p95_ms": w.tpot_p95_ms, "e2e_p95_ms": w.e2e_p95_ms}
    lines = []
    for key, target in targets.items():
        if target is None:
            continue
        best = min(fitting, key=lambda e: _slo_values(e.at_best)[key])
        value = _slo_values(best.at_best)[key]
        if value > target:
            c = best.cand
            lines.append(
                f"{SLO_LABELS[key]} {target:g} ms is not achievable for {arch.key} ({c.precision}); best achievable "
                f"{value:,.1f} ms on {c.instance.name} TP={c.tp} at 1 request per replica"
            )
    if not lines:  # each SLO is reachable alone but never all together
        e = min(fitting, key=lambda e: max(v / targets[k] for k, v in _slo_values(e.at_best).items() if targets[k]))
        key, target, value = e.broken
        lines.append(
            f"no configuration meets every SLO at once; closest: {e.cand.label()} with {SLO_LABELS[key]} "
            f"{value:,.1f} ms > {target:g} ms"
        )
    return "; ".join(lines)


def size(spec: SizingSpec, catalog: Catalog | None = None, prices: PriceBook | None = None, *,
         simulate: bool = True, lengths: Lengths | None = None, seed: int = 0, verify_alternatives: bool = False,
         progress: Callable[[str], None] | None = None, rate_per_s: float | None = None) -> FleetPlan:
    """The cheapest plan that meets every SLO; raises InfeasibleError naming the SLO if none.

    simulate: verify in the fleet simulator (the default; `False` returns the closed-form
    pre-filter's plan, unverified). lengths: how the simulated requests' lengths are drawn
    (default: the declared fixed lengths; a trace's for `size --trace`). rate_per_s: the arrival
    rate to verify at (default: what the declared load implies).
    """
    catalog = catalog or load_catalog()
    prices = prices or load_price_book()
    w, f, ms = spec.workload, spec.fleet, spec.model
    arch = catalog.model(ms.name, "model.name")
    if w.input_tokens + w.output_tokens > ms.max_model_len:
        raise InputError(
            "model.max_model_len", ms.max_model_len,
            f"at least input_tokens + output_tokens = {w.input_tokens + w.output_tokens}",
        )
    if ms.max_model_len > arch.max_position_embeddings:
        raise InputError(
            "model.max_model_len", ms.max_model_len, f"at most {arch.max_position_embeddings} for {arch.key}",
        )
    if w.availability_pct >= 99.9 and not f.survive_az_loss:
        # 99.9 % allows 43 minutes of downtime a month; an AZ outage lasts hours.
        raise InputError(
            "fleet.survive_az_loss", False,
            f"true when workload.availability_pct is {w.availability_pct} (>= 99.9): a lost AZ would exhaust the error budget",
        )
    engine = engine_params(f.engine)
    evals = [evaluate(c, spec, prices) for c in candidates(spec, arch, catalog, engine)]
    feasible = [e for e in evals if e.feasible and e.usd_per_hour is not None]
    if not feasible:
        priced_out = [e for e in evals if e.feasible]
        if priced_out:
            raise InfeasibleError(priced_out[0].price_note)
        raise InfeasibleError(_infeasible_message(spec, evals, arch))
    ranked = sorted(feasible, key=lambda e: _rank_key(e, spec))
    if not simulate:
        best = ranked[0]
        return _build_plan(spec, arch, best, evals, _closed_form_proposal(spec, arch, best), None, {})
    lengths = lengths or Lengths(w.input_tokens, w.output_tokens)
    search = VerifiedSearch(
        spec, arch, lengths, seed, node_price=lambda c: _node_price(spec, c.instance, prices)[0],
        build=lambda c, p, ck: _build_plan(spec, arch, _evaluation_of(c, evals), evals, p, ck, {}),
        progress=progress, rate_per_s=rate_per_s,
    )
    proposal, chosen = search.run(ranked)
    if proposal is None:
        raise InfeasibleError(_unverified_message(spec, search))
    tried = {}
    for p in search.tried:  # the largest simulated shape of each other group
        k = p.key[:3]
        if k != _group_key(chosen) and (k not in tried or p.shape.serving >= tried[k].shape.serving):
            tried[k] = p
    if verify_alternatives:
        for e in ranked:
            k = _group_key(e)
            if k == _group_key(chosen) or k in tried:
                continue
            first = search.first_proposal(e.cand)
            if first is not None:
                tried[k] = search.check(e.cand, first)
    proposed: dict[tuple, Proposal | str] = {}
    for key, p in search.first.items():
        if p is not None:
            proposed.setdefault(key[:3], p)
    for key, why in search.why_not.items():
        proposed.setdefault(key[:3], why)
    return _build_plan(spec, arch, chosen, evals, proposal, search.knee(chosen.cand), tried,
                       simulated=len(search.tried), proposed=proposed)


def _evaluation_of(c: Candidate, evals: list[Evaluation]) -> Evaluation:
    return next(e for e in evals if e.cand is c)


def _closed_form_proposal(spec: SizingSpec, arch: ModelArch, e: Evaluation) -> Proposal:
    """The pre-filter's shape and a control block from its own figures (no simulation)."""
    from infra.core.sizing.control import KneeFigures, derive_control
    from infra.core.sizing.time_to_serve import after_signal_s, time_to_serve
    from infra.core.sizing.verified import checkpoint_gib_of

    f, w = spec.fleet, spec.workload
    sh = _shape(e, spec)
    rpn = e.cand.replicas_per_node
    baseline = sh.serving * rpn * f.azs
    r = e.at_best
    lag = after_signal_s(time_to_serve(checkpoint_gib_of(e.cand.rm))["placeholder" if sh.warm else "warm_node"])
    control = derive_control(
        served_name=spec.model.served_name or arch.hf_id or arch.key,
        knee=KneeFigures(r.requests_per_s, e.concurrency_per_replica, e.concurrency_per_replica, r.ttft_ms_p95),
        ttft_target_ms=w.ttft_p95_ms, sustained_rate_per_replica=r.requests_per_s * w.concurrent_requests / baseline
        / max(e.concurrency_per_replica, 1), sustained_latency_s=r.e2e_ms_mean / 1e3,
        burst_factor=w.burst_factor, burst_ramp_s=w.burst_ramp_s, scale_up_lag_s=lag, min_replicas=baseline,
        max_replicas=sh.replicas_max, warm_replicas=sh.warm * rpn * f.azs,
        max_num_batched_tokens=e.cand.max_num_batched_tokens, azs=f.azs,
    )
    rate = w.output_tokens_per_s / w.output_tokens if w.output_tokens_per_s else r.requests_per_s * baseline
    return Proposal(_group_key(e) + (e.cand.max_num_batched_tokens,), sh, control, rate,
                    e.usd_per_node_hour * sh.baseline * f.azs, mean_e2e_s=r.e2e_ms_mean / 1e3)


def _unverified_message(spec: SizingSpec, search: VerifiedSearch) -> str:
    if not search.tried:
        reasons = sorted(set(search.why_not.values()))
        return "no candidate the closed form accepts holds up in simulation: " + "; ".join(reasons[:3])
    best = min(search.tried, key=lambda p: p.usd_per_hour)
    last = search.tried[-1]
    return (f"no plan passed the fleet simulation within {len(search.tried)} simulated proposals "
            f"(fleet.max_nodes_per_az {spec.fleet.max_nodes_per_az}); the last: {last.key[0]} TP={last.key[1]} "
            f"with {last.shape.serving} serving node(s) per AZ: {last.why}; the cheapest tried "
            f"(${best.usd_per_hour:,.2f}/h): {best.why}")


def _build_plan(spec: SizingSpec, arch: ModelArch, e: Evaluation, evals: list[Evaluation], proposal: Proposal,
                ck: CandidateKnee | None, tried: dict[tuple, Proposal], simulated: int = 0,
                proposed: dict[tuple, Proposal | str] | None = None) -> FleetPlan:
    w, f, ms = spec.workload, spec.fleet, spec.model
    control = proposal.control
    rm = ReplicaModel(
        arch, e.cand.rm.gpu, e.cand.tp, e.cand.precision, ms.kv_cache_dtype, e.cand.rm.engine,
        gpu_memory_utilization=f.gpu_memory_utilization, max_num_seqs=control.max_num_seqs,
        max_num_batched_tokens=e.cand.max_num_batched_tokens,
    )
    c = replace(e.cand, max_num_seqs=control.max_num_seqs, rm=rm)
    rpn = c.replicas_per_node
    sh = proposal.shape
    replicas_per_az = sh.serving * rpn
    nodes = NodeCounts(min=sh.baseline, desired=sh.baseline, max=sh.max)
    notes = [proposal.note] if proposal.note else []
    if sh.burst_capped:
        notes.append(
            f"fleet.max_nodes_per_az {f.max_nodes_per_az} caps the burst at {sh.replicas_max} replicas; "
            f"a {w.burst_factor:g}x burst needs more: expect queueing (TTFT) beyond that"
        )
    if sh.warm and f.warm_spares_per_az is None:
        notes.append(
            f"{sh.warm} warm spare node(s) per AZ hold {WARM_SPARE_SHARE:.0%} of the burst's extra nodes "
            "while the rest cold-start; set fleet.warm_spares_per_az to override"
        )
    if ck is not None and f.warm_spares_per_az is None:
        notes.append(
            "no warm spare nodes: a spare costs a serving node's price and serves nothing until a burst, while a "
            "replica on that node serves from the start; burst nodes come from the node tier "
            f"({'none needed' if sh.max == sh.baseline else f'{sh.max - sh.baseline} per AZ'})"
        )
    if ck is None:
        notes.append("closed-form pre-filter only: not verified in the fleet simulator")
    elif proposal.verification and simulated > 1:
        notes.append(f"{simulated} proposals simulated before this one passed every scenario "
                     "(the cheaper ones, and what each broke, are among the alternatives)")
    notes.extend(architecture_notes(arch))
    notes.extend(measured_notes(arch.key, c.instance.gpu, c.tp, c.precision, f.engine))

    serving_azs = f.azs - 1 if f.survive_az_loss else f.azs
    predicted_lost = _predicted(c, w, replicas_per_az * serving_azs)
    predicted_all = _predicted(c, w, replicas_per_az * f.azs)
    context = min(w.input_tokens + w.output_tokens, ms.max_model_len)
    running_cap = c.rm.running_cap(context)
    node_usd = e.usd_per_node_hour
    baseline = node_usd * nodes.desired * f.azs
    worst = node_usd * nodes.max * f.azs
    declared_tps = w.output_tokens_per_s or (predicted_all.output_tokens_per_s_per_replica * replicas_per_az * f.azs)
    per_million = baseline / (Decimal(str(declared_tps)) * 3600 / Decimal(1_000_000))
    mem = c.rm.memory
    return FleetPlan(
        model=arch.key,
        served_name=ms.served_name or arch.hf_id or arch.key,
        region=f.region,
        engine=f.engine,
        instance_type=c.instance.name,
        gpu=c.instance.gpu,
        gpus_per_node=c.instance.gpu_count,
        tensor_parallel=c.tp,
        precision=c.precision,
        azs=f.azs,
        survive_az_loss=f.survive_az_loss,
        replicas_sustained=max(e.replicas_sustained, replicas_per_az * serving_azs if ck else 0),
        replicas_per_az=replicas_per_az,
        replicas_per_node=rpn,
        replicas_max=sh.replicas_max,
        nodes_per_az=nodes,
        warm_spares_per_az=sh.warm,
        kv_cache_tokens_per_replica=mem.kv_cache_tokens,
        max_concurrency_per_replica=running_cap,
        weights_gib_per_gpu=round(mem.weights_bytes / 2**30, 2),
        kv_cache_gib_per_gpu=round(mem.kv_pool_bytes / 2**30, 2),
        load={
            "concurrent_requests": w.concurrent_requests,
            "burst_concurrent_requests": w.concurrent_requests * w.burst_factor,
            "output_tokens_per_s": float(declared_tps),
            "input_tokens": w.input_tokens,
            "output_tokens": w.output_tokens,
            "arrival_rate_per_s": round(proposal.rate_per_s, 3),
        },
        vllm=VllmSettings(
            tensor_parallel_size=c.tp,
            max_num_seqs=control.max_num_seqs,
            max_num_batched_tokens=c.max_num_batched_tokens,
            max_model_len=ms.max_model_len,
            gpu_memory_utilization=f.gpu_memory_utilization,
            kv_cache_dtype=ms.kv_cache_dtype,
            quantization=QUANTIZATION_FLAG[c.precision],
        ),
        predicted=predicted_lost,
        predicted_all_azs=predicted_all,
        cost=PlanCost(
            usd_per_gpu_hour=float(round(node_usd / c.instance.gpu_count, 4)),
            usd_per_node_hour=float(node_usd),
            price_source=e.price_note,
            usd_per_hour_baseline=float(round(baseline, 2)),
            usd_per_hour_max=float(round(worst, 2)),
            usd_per_million_output_tokens=float(round(per_million, 4)),
        ),
        control=control,
        verification=proposal.verification,
        alternatives=_alternatives(_group_key(e), baseline, evals, spec, tried, proposed),
        notes=tuple(notes),
    )
