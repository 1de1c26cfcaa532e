"""One replica under load: closed loop (N clients) or open loop (Poisson, a profile, a trace).

`run_closed` keeps `concurrency` requests in flight: each client sends its next request when its
previous one ends. The first `concurrency` requests (the start-up wave) and the last
`concurrency` (the drain, when fewer clients are left) are not measured. `run_open` measures
every request, as `vllm bench serve` does for `--num-prompts`.

The engine's per-request overhead (HTTP, tokenisation: `request_overhead_ms`) is added to TTFT
and end-to-end latency. ITL is the distribution of the gaps between consecutive tokens of a
stream (each decode token's step), TPOT the per-request mean of them.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from infra.core.sizing.perf import ReplicaModel
from infra.core.sizing.simulate.engine import DONE, Engine, Requests, cached_tokens
from infra.core.sizing.simulate.stats import Latencies, weighted_percentiles_ms
from infra.core.sizing.simulate.workload import Lengths, OpenLoop


CLIENT_JITTER_S = 0.005  # a closed-loop client's time between an answer and its next request, at most
LIGHT_REQUESTS = 200  # the unloaded check of find_knee (its latency is the replica's best)


@dataclass(frozen=True)
class ReplicaRun:
    latencies: Latencies
    requests: int  # measured
    requests_per_s: float
    output_tokens_per_s: float
    itl_ms: dict[str, float | None]
    preemptions: int
    steps: int
    simulated_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.latencies.summaries(),
            "itl_ms": self.itl_ms,
            "requests": self.requests,
            "requests_per_s": round(self.requests_per_s, 4),
            "output_tokens_per_s": round(self.output_tokens_per_s, 2),
            "preemptions": self.preemptions,
            "steps": self.steps,
            "simulated_s": round(self.simulated_s, 3),
        }


def latencies_of(R: Requests, ids: np.ndarray, overhead_s: float) -> Latencies:
    """TTFT/TPOT/e2e of the requests `ids`; anything not DONE is a miss (inf)."""
    arrival = np.asarray(R.arrival)[ids]
    first = np.asarray(R.first_t)[ids]
    finish = np.asarray(R.finish_t)[ids]
    out = np.asarray(R.output)[ids]
    done = np.asarray(R.state)[ids] == DONE
    ttft = np.where(done, first - arrival + overhead_s, np.inf)
    e2e = np.where(done, finish - arrival + overhead_s, np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, np.where(done, (finish - first) / np.maximum(out - 1, 1), np.inf), np.nan)
    return Latencies(ttft, tpot, e2e)


def _result(R: Requests, engine: Engine, ids: np.ndarray, rm: ReplicaModel) -> ReplicaRun:
    lat = latencies_of(R, ids, rm.engine.request_overhead_ms / 1e3)
    arrival = np.asarray(R.arrival)[ids]
    finish = np.asarray(R.finish_t)[ids]
    span = float(finish.max() - arrival.min()) if len(ids) else 0.0
    outs = float(np.asarray(R.output)[ids].sum())
    itl = weighted_percentiles_ms(np.asarray(engine.step_dt), np.asarray(engine.step_dec))
    return ReplicaRun(lat, len(ids), len(ids) / span if span > 0 else 0.0, outs / span if span > 0 else 0.0,
                      itl, engine.preemptions, engine.s, engine.t)


def run_closed(rm: ReplicaModel, lengths: Lengths, concurrency: int, requests: int, seed: int = 0,
               prefix_hit_fraction: float = 0.0, jitter_s: float = CLIENT_JITTER_S) -> ReplicaRun:
    """`concurrency` clients, `requests` in total (at least 3 x concurrency are sent).

    Each client sends its next request U(0, jitter_s) after its previous one ends (network and
    client time), and the clients start spread over the first 10 x jitter_s: without it,
    identical requests sent at one instant stay in lock step forever, which no real load does.
    """
    rng = np.random.default_rng(seed)
    total = max(requests, 3 * concurrency)
    ins, outs = lengths.draw(rng, total)
    delays = (rng.random(total) * jitter_s).tolist()
    R = Requests()
    pending: list[tuple[float, int]] = []
    sent = [0]

    def send(t: float) -> None:
        i = sent[0]
        if i < total:
            sent[0] = i + 1
            p = int(ins[i])
            rid = R.add(t + delays[i], p, int(outs[i]), cached_tokens(p, prefix_hit_fraction))
            heapq.heappush(pending, (t + delays[i], rid))

    engine = Engine(rm, R, on_finish=lambda rid, t: send(t), record_steps=True)
    for k in range(concurrency):
        send(10 * jitter_s * k / concurrency)
    while pending or engine.busy:
        if not engine.busy and engine.t < pending[0][0]:
            engine.t = pending[0][0]
        while pending and pending[0][0] <= engine.t:
            engine.waiting.append(heapq.heappop(pending)[1])
        engine.step()
    return _result(R, engine, np.arange(concurrency, total - concurrency), rm)


def run_open(rm: ReplicaModel, load: OpenLoop, prefix_hit_fraction: float = 0.0) -> ReplicaRun:
    """Every request of `load`, arriving when it says."""
    return _run_open(rm, load, prefix_hit_fraction)[0]


def _run_open(rm: ReplicaModel, load: OpenLoop, prefix_hit_fraction: float,
              give_up_s: float | None = None) -> tuple[ReplicaRun, Engine]:
    """`give_up_s`: stop that long after the last arrival (what is still in flight then is a miss)."""
    arrivals = load.arrival_s.tolist()
    prompts = load.input_tokens.tolist()
    R = Requests.open_loop(arrivals, prompts, load.output_tokens.tolist(),
                           [cached_tokens(p, prefix_hit_fraction) for p in prompts])
    engine = Engine(rm, R, record_steps=True)
    n, i = len(arrivals), 0
    waiting = engine.waiting
    stop = arrivals[-1] + give_up_s if give_up_s is not None and n else math.inf
    while (i < n or engine.busy) and engine.t < stop:
        if not engine.busy and engine.t < arrivals[i]:
            engine.t = arrivals[i]
        t = engine.t
        while i < n and arrivals[i] <= t:
            waiting.append(i)
            i += 1
        engine.step()
    return _result(R, engine, np.arange(n), rm), engine


@dataclass(frozen=True)
class Knee:
    """The highest Poisson rate one replica serves within every declared p95 (and attainment)."""

    rate_per_s: float
    concurrency: float  # mean requests in flight there (Little's law)
    max_num_seqs: int  # the engine's cap the knee was found with
    run: ReplicaRun | None  # at the knee (None: not even the lowest rate passes)
    best: ReplicaRun  # at the lightest load tried (the unloaded latency)


def find_knee(rm: ReplicaModel, lengths: Lengths, targets_ms: dict[str, float | None], *,
              rate_hi_per_s: float, guess_per_s: float | None = None, guess_step: float = 1.25, seed: int = 0,
              requests: int = 1200, attainment_pct: float | None = None, prefix_hit_fraction: float = 0.0,
              tolerance: float = 0.02) -> Knee:
    """The knee rate, with common random numbers (the same draws at every rate).

    A light load (rate_hi / 64, the first LIGHT_REQUESTS draws) is tried first: when it fails,
    nothing passes. Then a bracket is
    walked from `guess_per_s` (x guess_step up, / guess_step down) and bisected to `tolerance`.
    """
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0, requests)
    ins, outs = lengths.draw(rng, requests)
    base_t = np.cumsum(gaps) - gaps[0]
    runs: dict[float, tuple[bool, ReplicaRun]] = {}

    # A request still unanswered this long after the last arrival misses an SLO whatever comes next.
    e2e_ms = targets_ms.get("e2e") or (targets_ms["ttft"] + float(np.max(outs)) * targets_ms["tpot"])
    give_up_s = 2 * e2e_ms / 1e3

    def at(rate: float, n: int = requests) -> bool:
        if rate not in runs:
            r, _ = _run_open(rm, OpenLoop(base_t[:n] / rate, ins[:n], outs[:n]), prefix_hit_fraction, give_up_s)
            ok = not r.latencies.broken(targets_ms)
            if ok and attainment_pct is not None:
                ok = r.latencies.attainment_pct(targets_ms) >= attainment_pct
            runs[rate] = (ok, r)
        return runs[rate][0]

    light = rate_hi_per_s / 64
    if not at(light, min(requests, LIGHT_REQUESTS)):  # a light load's steps are many and short: fewer requests
        return Knee(0.0, 0.0, rm.max_num_seqs, None, runs[light][1])
    g = min(max(guess_per_s or rate_hi_per_s / 2, light), rate_hi_per_s)
    step = guess_step  # squared after every step that does not cross: a wrong guess costs few runs
    if at(g):
        lo, hi = g, min(g * step, rate_hi_per_s)
        while hi < rate_hi_per_s and at(hi):
            step *= step
            lo, hi = hi, min(hi * step, rate_hi_per_s)
        if hi >= rate_hi_per_s and at(hi):
            lo = hi
    else:
        hi, lo = g, max(g / step, light)
        while lo > light and not at(lo):
            step *= step
            hi, lo = lo, max(lo / step, light)
    while hi - lo > tolerance * lo:
        mid = (lo + hi) / 2
        if at(mid):
            lo = mid
        else:
            hi = mid
    best_run = runs[lo][1]
    return Knee(lo, lo * float(np.mean(best_run.latencies.e2e_s)), rm.max_num_seqs, best_run, runs[light][1])


def concurrency_knee(rm_for: Callable[[int], ReplicaModel], lengths: Lengths, targets_ms: dict[str, float | None],
                     *, c_max: int, guess: int | None = None, seed: int = 0, requests: int = 100,
                     waves: int = 6, attainment_pct: float | None = None,
                     prefix_hit_fraction: float = 0.0) -> tuple[int, ReplicaRun]:
    """The largest closed-loop concurrency (clients per replica, all running: max_num_seqs = C)
    at which every declared p95 holds; (0, the run at 1) when not even one client's does.

    Each run sends max(requests, waves x C) requests (the first and last C are not measured).
    With a `guess` the bracket is walked from it (x 1.25) before the bisection."""
    runs: dict[int, tuple[bool, ReplicaRun]] = {}

    def at(c: int) -> bool:
        if c not in runs:
            r = run_closed(rm_for(c), lengths, c, max(requests, waves * c), seed=seed,
                           prefix_hit_fraction=prefix_hit_fraction)
            ok = not r.latencies.broken(targets_ms)
            if ok and attainment_pct is not None:
                ok = r.latencies.attainment_pct(targets_ms) >= attainment_pct
            runs[c] = (ok, r)
        return runs[c][0]

    if not at(1):
        return 0, runs[1][1]
    lo, hi = 1, max(1, c_max)
    if guess is not None and 1 < guess < c_max:
        g = int(guess)
        if at(g):
            lo, step = g, max(g + 1, int(g * 1.25))
            while step < c_max and at(step):
                lo, step = step, max(step + 1, int(step * 1.25))
            hi = min(step, c_max)
        else:
            hi, step = g, max(1, int(g / 1.25))
            while step > 1 and not at(step):
                hi, step = step, max(1, int(step / 1.25))
            lo = step
    if lo == 1 and at(hi):
        return hi, runs[hi][1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if at(mid):
            lo = mid
        else:
            hi = mid
    return lo, runs[lo][1]
