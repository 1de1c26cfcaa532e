"""SLO search: the cheapest fleet that meets every SLO at sustained load with any one AZ lost.

For each candidate (instance type x TP x precision x max-num-seqs x token budget) the search
finds the highest per-replica concurrency at which every SLO still holds (latency rises with
concurrency, so a bisection finds it). Replicas needed follow from the declared concurrency
and output rate; replicas are packed onto whole instances (8/TP per p5.48xlarge) and spread
evenly over the AZs so that the AZs left after losing one still carry the load. The cheapest
candidate wins; the others become ranked alternatives with the reason they lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

from infra.core.catalog import Catalog, InstanceType, ModelArch, load_catalog
from infra.core.catalog.prices import PriceBook, load_price_book
from infra.core.config import SizingSpec, Workload
from infra.core.errors import InfeasibleError, InputError
from infra.core.sizing.load import LoadResult, steady_state
from infra.core.sizing.memory import valid_tp_degrees
from infra.core.sizing.perf import EngineParams, ReplicaModel, architecture_notes, engine_params
from infra.core.sizing.plan import Alternative, FleetPlan, NodeCounts, PlanCost, Predicted, VllmSettings

MAX_NUM_SEQS_CHOICES = (16, 32, 64, 128, 256, 512)
MAX_NUM_BATCHED_TOKENS_CHOICES = (2048, 8192)  # a small budget trims TPOT spikes from long prompts
# Share of the burst's extra nodes kept running as warm spares when not configured: a p5 cold
# start (EC2 launch, driver init, 70-140 GB hydration, model load) takes minutes, far longer
# than a burst takes to arrive; the spares absorb the first part while the rest boot.
WARM_SPARE_SHARE = 0.5
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
                for mns in MAX_NUM_SEQS_CHOICES:
                    for mbt in mbt_choices:
                        rm = ReplicaModel(
                            arch, gpu, tp, precision, spec.model.kv_cache_dtype, engine,
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


@dataclass(frozen=True)
class Shape:
    """Nodes per AZ of a feasible candidate: serving at baseline, burst, and warm spares."""

    serving: int
    burst: int
    warm: int
    replicas_max: int
    burst_capped: bool  # fleet.max_nodes_per_az stops the burst short of the declared factor

    @property
    def baseline(self) -> int:
        return self.serving + self.warm

    @property
    def max(self) -> int:
        return self.burst + self.warm


def _shape(e: Evaluation, spec: SizingSpec) -> Shape:
    w, f = spec.workload, spec.fleet
    rpn = e.cand.replicas_per_node
    # Burst: all AZs up, concurrency and rate x burst factor, same per-replica SLO limit.
    burst_tps = w.output_tokens_per_s * w.burst_factor if w.output_tokens_per_s else None
    burst_replicas = _replicas_for(
        w.concurrent_requests * w.burst_factor, e.concurrency_per_replica, burst_tps, e.at_best.output_tokens_per_s
    )
    burst = max(e.nodes_per_az, math.ceil(burst_replicas / (f.azs * rpn)))
    if f.warm_spares_per_az is not None:
        warm = f.warm_spares_per_az
    else:
        warm = math.ceil((burst - e.nodes_per_az) * WARM_SPARE_SHARE)
    warm = min(warm, max(0, f.max_nodes_per_az - e.nodes_per_az))
    capped = burst + warm > f.max_nodes_per_az
    if capped:
        burst = max(e.nodes_per_az, f.max_nodes_per_az - warm)
    return Shape(e.nodes_per_az, burst, warm, burst * rpn * f.azs, capped)


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


def _alternatives(chosen: Evaluation, evals: list[Evaluation], spec: SizingSpec, limit: int = 12) -> tuple[Alternative, ...]:
    """The best variant of every other (instance, TP, precision), ranked, each with its reason."""
    best_by_group: dict[tuple, Evaluation] = {}
    for e in evals:
        k = _group_key(e)
        cur = best_by_group.get(k)
        if cur is None or _rank_key(e, spec) < _rank_key(cur, spec):
            best_by_group[k] = e
    out = []
    for k, e in best_by_group.items():
        if k == _group_key(chosen):
            continue
        c = e.cand
        if e.feasible and e.usd_per_hour is not None:
            delta = e.usd_per_hour - chosen.usd_per_hour
            why = (
                f"feasible but ${delta:,.2f}/h more ({_shape(e, spec).baseline} node(s)/AZ with warm spares, "
                f"{e.replicas_sustained} replicas needed)"
            )
            if delta == 0:
                why = "feasible at the same price; ranked lower on GPU count or headroom"
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
                max_num_seqs=c.max_num_seqs, max_num_batched_tokens=c.max_num_batched_tokens,
                feasible=e.feasible and e.usd_per_hour is not None,
                gpus=_shape(e, spec).baseline * spec.fleet.azs * c.instance.gpu_count if e.feasible else None,
                usd_per_hour_baseline=float(e.usd_per_hour) if e.usd_per_hour is not None else None,
                why=why,
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


def size(spec: SizingSpec, catalog: Catalog | None = None, prices: PriceBook | None = None) -> FleetPlan:
    """The cheapest plan that meets every SLO; raises InfeasibleError naming the SLO if none."""
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
    best = min(feasible, key=lambda e: _rank_key(e, spec))
    return _build_plan(spec, arch, best, evals)


def _build_plan(spec: SizingSpec, arch: ModelArch, e: Evaluation, evals: list[Evaluation]) -> FleetPlan:
    w, f, ms = spec.workload, spec.fleet, spec.model
    c = e.cand
    rpn = c.replicas_per_node
    replicas_per_az = e.nodes_per_az * rpn
    sh = _shape(e, spec)
    nodes = NodeCounts(min=sh.baseline, desired=sh.baseline, max=sh.max)
    notes = []
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
    notes.extend(architecture_notes(arch))

    serving_azs = f.azs - 1 if f.survive_az_loss else f.azs
    predicted_lost = _predicted(c, w, replicas_per_az * serving_azs)
    predicted_all = _predicted(c, w, replicas_per_az * f.azs)

    # KEDA: a replica's queue may hold as many requests as it can absorb within the TTFT slack
    # left at the worst-case (AZ lost) load; beyond that, add a replica.
    slack_s = max(0.0, (w.ttft_p95_ms - predicted_lost.ttft_p95_ms) / 1e3)
    requests_per_s = predicted_lost.output_tokens_per_s_per_replica / w.output_tokens
    keda_threshold = max(1, math.floor(slack_s * requests_per_s))
    context = min(w.input_tokens + w.output_tokens, ms.max_model_len)
    running_cap = c.rm.running_cap(context)
    # Admission: what may wait beyond the running slots before the e2e SLO is lost anyway.
    e2e_target = w.e2e_p95_ms or (w.ttft_p95_ms + (w.output_tokens - 1) * w.tpot_p95_ms)
    e2e_slack_s = max(0.0, (e2e_target - predicted_lost.e2e_p95_ms) / 1e3)
    admission = running_cap + max(keda_threshold, math.floor(e2e_slack_s * requests_per_s))

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
        replicas_sustained=e.replicas_sustained,
        replicas_per_az=replicas_per_az,
        replicas_per_node=rpn,
        replicas_max=sh.replicas_max,
        nodes_per_az=nodes,
        warm_spares_per_az=sh.warm,
        keda_queue_threshold=keda_threshold,
        admission_limit_per_replica=admission,
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
        },
        vllm=VllmSettings(
            tensor_parallel_size=c.tp,
            max_num_seqs=c.max_num_seqs,
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
        alternatives=_alternatives(e, evals, spec),
        notes=tuple(notes),
    )
