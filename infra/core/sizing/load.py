"""Latency and throughput of one replica under load (continuous batching, chunked prefill).

Steady state of the engine, solved as a fixed point on the mean step time `t`:

- `B` sequences run at once: the offered concurrency, capped by `max_num_seqs` and by the KV
  pool; the rest wait in the queue.
- Requests complete at rate `lam = B / residence`, with residence = prefill time + (O-1) steps.
- Each step carries `lam*(O-1)*t` decode tokens and `lam*I*t` prefill tokens; prefill gets the
  step's spare token budget (`max_num_batched_tokens` minus the decode tokens).

Percentiles come from the arrival process: prompts land in steps as a Poisson stream, so the
p95 request shares its prefill steps with the p95 number of other prompts, and its output
tokens are slowed by the p95 number of prefills that land while it decodes. Requests have the
declared (fixed) prompt and answer lengths.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from infra.core.sizing.perf import ReplicaModel

P95_Z = 0.95


def poisson_quantile(mean: float, q: float = P95_Z) -> int:
    """Smallest k with P(N <= k) >= q for N ~ Poisson(mean)."""
    if mean <= 0:
        return 0
    if mean > 400:  # normal approximation; exact summation underflows
        return math.ceil(mean + 1.6449 * math.sqrt(mean))
    term = math.exp(-mean)
    cdf, k = term, 0
    while cdf < q:
        k += 1
        term *= mean / k
        cdf += term
    return k


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (offered = lam x service time)."""
    if offered >= servers:
        return 1.0
    inv_b = 1.0  # Erlang B by recursion, then C from B
    for k in range(1, servers + 1):
        inv_b = 1.0 + inv_b * k / offered
    b = 1.0 / inv_b
    rho = offered / servers
    return b / (1 - rho + rho * b)


@dataclass(frozen=True)
class LoadResult:
    concurrency: float  # requests in the replica: running + waiting
    running: float
    waiting: float
    requests_per_s: float
    output_tokens_per_s: float
    step_ms: float
    ttft_ms_mean: float
    ttft_ms_p95: float
    tpot_ms_mean: float
    tpot_ms_p95: float
    itl_ms_p95: float
    e2e_ms_mean: float
    e2e_ms_p95: float
    kv_cache_tokens: int
    max_concurrency: int  # sequences that can run at once at this workload's context
    saturated: bool = False  # an open-loop arrival rate above what the replica can serve

    def to_dict(self) -> dict:
        return asdict(self)


def _solve(rm: ReplicaModel, running: float, input_tokens: int, output_tokens: int) -> tuple[float, float, float, float]:
    """Fixed point for `running` sequences: returns (t, lam, decode_tokens, prefill_tokens) per step."""
    i, o = input_tokens, output_tokens
    ctx = i + o / 2.0  # mean KV length a decoding sequence attends to
    budget = float(rm.max_num_batched_tokens)
    t = rm.step_s(running, ctx)
    lam = d = p = 0.0
    for _ in range(60):
        spare = max(budget - running, 1.0)
        # Residence: wait for the step in flight, then the prompt's chunks, then O-1 decode steps.
        prefill_steps = max(1.0, i / spare)
        lam = running / ((0.5 + prefill_steps) * t + (o - 1) * t)
        d = min(running, lam * (o - 1) * t)
        p = lam * i * t
        if p > spare:  # prefill cannot keep up: throughput is bounded by the token budget
            lam = spare / (i * t)
            p = spare
            d = min(running, lam * (o - 1) * t)
        t_new = rm.step_s(d, ctx, p, i / 2.0, lam * t)
        if abs(t_new - t) < 1e-7:
            t = t_new
            break
        t = 0.5 * (t + t_new)
    return t, lam, d, p


def steady_state(
    rm: ReplicaModel,
    input_tokens: int,
    output_tokens: int,
    *,
    concurrency: float | None = None,
    arrival_rate_per_s: float | None = None,
    max_load: bool = False,
    request_overhead_ms: float = 0.0,
) -> LoadResult:
    """Predict one replica at a closed-loop concurrency, an open-loop arrival rate, or max load."""
    if sum(x is not None and x is not False for x in (concurrency, arrival_rate_per_s, max_load or None)) != 1:
        raise ValueError("give exactly one of concurrency, arrival_rate_per_s, max_load")
    i, o = input_tokens, output_tokens
    ctx = i + o / 2.0
    # Engines that reserve KV for the whole answer at admission (TensorRT-LLM's default
    # GUARANTEED_NO_EVICT) fit fewer sequences than those that grow blocks on demand (vLLM).
    cap = rm.running_cap(i + o if rm.engine.reserve_full_context else math.ceil(ctx))
    if cap < 1:
        raise ValueError("the KV pool cannot hold one sequence at this context")
    budget = float(rm.max_num_batched_tokens)

    waiting = 0.0
    wait_mean_s = wait_p95_s = 0.0
    saturated = False
    if max_load:
        running = float(cap)
        t, lam, d, p = _solve(rm, running, i, o)
        offered = running
    elif concurrency is not None:
        offered = float(concurrency)
        running = min(offered, float(cap))
        t, lam, d, p = _solve(rm, running, i, o)
        waiting = offered - running
        wait_mean_s = wait_p95_s = waiting / lam if waiting > 0 else 0.0  # FIFO, closed loop
    else:
        # Open loop: find the running count whose completion rate equals the arrival rate.
        lam_in = float(arrival_rate_per_s)
        lam_cap = _solve(rm, float(cap), i, o)[1]
        if lam_in >= lam_cap:
            saturated, running = True, float(cap)
            t, lam, d, p = _solve(rm, running, i, o)
            wait_mean_s = wait_p95_s = math.inf
        else:
            lo, hi = 0.0, float(cap)
            for _ in range(40):
                mid = (lo + hi) / 2
                if _solve(rm, max(mid, 1e-6), i, o)[1] < lam_in:
                    lo = mid
                else:
                    hi = mid
            running = hi
            t, lam, d, p = _solve(rm, running, i, o)
            residence = running / lam
            pw = erlang_c(cap, lam_in * residence)
            gap = (cap - lam_in * residence) / residence
            wait_mean_s = pw / gap
            wait_p95_s = max(0.0, math.log(pw / (1 - P95_Z)) / gap) if pw > 1 - P95_Z else 0.0
        offered = running + lam_in * wait_mean_s if not saturated else math.inf

    spare = max(budget - d, 1.0)
    arrivals_per_step = lam * t
    base = rm.step_s(d, ctx)

    def prefill_phase_s(others: float) -> float:
        tokens = i * (1 + others)
        steps = max(1.0, tokens / spare)
        return steps * rm.step_s(d, ctx, min(spare, tokens), i / 2.0, 1 + others)

    ttft_mean_s = wait_mean_s + 0.5 * t + prefill_phase_s(arrivals_per_step)
    ttft_p95_s = wait_p95_s + P95_Z * t + prefill_phase_s(poisson_quantile(arrivals_per_step))

    # Extra decode time a prompt of I tokens adds to the step it lands in.
    delta = max(0.0, rm.step_s(d, ctx, min(spare, i), i / 2.0, 1) - base)
    decode_steps = max(o - 1, 1)
    tpot_mean_s = t
    landing = lam * t * decode_steps  # prompts that land while one request decodes
    tpot_p95_s = max(t, base + poisson_quantile(landing) * delta / decode_steps)
    itl_p95_s = max(t, rm.step_s(d, ctx, min(spare, i * poisson_quantile(arrivals_per_step)), i / 2.0, 1))

    overhead_s = request_overhead_ms / 1e3
    ttft_mean_s += overhead_s
    ttft_p95_s += overhead_s
    return LoadResult(
        concurrency=offered,
        running=running,
        waiting=waiting,
        requests_per_s=lam,
        output_tokens_per_s=lam * o,
        step_ms=t * 1e3,
        ttft_ms_mean=ttft_mean_s * 1e3,
        ttft_ms_p95=ttft_p95_s * 1e3,
        tpot_ms_mean=tpot_mean_s * 1e3,
        tpot_ms_p95=tpot_p95_s * 1e3,
        itl_ms_p95=itl_p95_s * 1e3,
        e2e_ms_mean=(ttft_mean_s + (o - 1) * tpot_mean_s) * 1e3,
        e2e_ms_p95=(ttft_p95_s + (o - 1) * tpot_p95_s) * 1e3,
        kv_cache_tokens=rm.memory.kv_cache_tokens,
        max_concurrency=cap,
        saturated=saturated,
    )


def static_batch(rm: ReplicaModel, batch: int, input_tokens: int, output_tokens: int) -> tuple[float, float]:
    """A batch that starts together (offline `generate`, static batching): (latency_s, output tok/s).

    One prefill pass over every prompt, then O-1 decode steps at the mean context.
    """
    i, o = input_tokens, output_tokens
    prefill_s = rm.step_s(0, 0, batch * i, i / 2.0, batch)
    decode_s = (o - 1) * rm.step_s(batch, i + o / 2.0)
    latency = prefill_s + decode_s
    return latency, batch * o / latency


def prefill_latency_s(rm: ReplicaModel, input_tokens: int) -> float:
    """Time to first token of a lone request (batch 1)."""
    return rm.step_s(0, 0, input_tokens, input_tokens / 2.0, 1)
