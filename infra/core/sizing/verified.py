"""The search's second stage: simulate what the closed form recommends, cheapest first.

For a candidate replica (instance type, TP, precision, token budget) the replica simulation
finds the knee (`find_knee`); the knee sets max-num-seqs, the control block, the replicas the
declared rate needs with an AZ lost, the burst fleet and, through a fluid estimate of the
burst's first minutes (before new replicas serve), the baseline. That proposal is simulated in
the three scenarios (`scenarios.verify`). A failing proposal comes back with one more serving
node per AZ; the search always simulates the cheapest proposal left (a grown one, or the next
candidate), so "add replicas or move on" is decided by price.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Callable

import numpy as np

from infra.core.catalog import ModelArch
from infra.core.config import SizingSpec
from infra.core.sizing.control import KneeFigures, derive_control
from infra.core.sizing.load import steady_state
from infra.core.sizing.memory import checkpoint_gib
from infra.core.sizing.perf import ReplicaModel
from infra.core.sizing.plan import Control, FleetPlan, ScenarioResult
from infra.core.sizing.simulate.memo import memoised
from infra.core.sizing.simulate.replica import Knee, concurrency_knee, find_knee, run_open
from infra.core.sizing.simulate.scenarios import SCENARIOS, targets_ms, verify
from infra.core.sizing.simulate.workload import Lengths, OpenLoop
from infra.core.sizing.time_to_serve import after_signal_s, time_to_serve

VERIFY_LIMIT = 10  # proposals simulated before the search gives up
KNEE_REQUESTS = 1200
# Share of the burst's extra nodes kept running as warm spares when not configured: a p5 cold
# start (EC2 launch, driver init, 70-140 GB hydration, model load) takes minutes, far longer
# than a burst takes to arrive; the spares absorb the first part while the rest boot.
WARM_SPARE_SHARE = 0.5
# The fluid burst estimate must leave this share of requests over capacity at most (the p95s
# allow 5 %); the simulation decides.
FLUID_MISS_BUDGET = 0.03


@dataclass(frozen=True)
class Shape:
    """Nodes per AZ: serving at baseline, at the top of the burst, and warm spares."""

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


def shape_for(spec: SizingSpec, replicas_per_node: int, serving: int, burst_replicas: int,
              derived_warm_share: float = WARM_SPARE_SHARE) -> Shape:
    """Whole nodes for `serving` nodes per AZ and a burst of `burst_replicas` (all AZs up).

    Warm spares: fleet.warm_spares_per_az, else `derived_warm_share` of the burst's extra nodes
    (the closed form's heuristic; the verified search passes 0, see `VerifiedSearch`).
    """
    f = spec.fleet
    burst = max(serving, math.ceil(burst_replicas / (f.azs * replicas_per_node)))
    warm = f.warm_spares_per_az if f.warm_spares_per_az is not None else math.ceil((burst - serving) * derived_warm_share)
    warm = min(warm, max(0, f.max_nodes_per_az - serving))
    capped = burst + warm > f.max_nodes_per_az
    if capped:
        burst = max(serving, f.max_nodes_per_az - warm)
    return Shape(serving, burst, warm, burst * replicas_per_node * f.azs, capped)


@dataclass
class Proposal:
    """One shape of one candidate, with its control block; `plan` once built."""

    key: tuple  # (instance, tp, precision, max_num_batched_tokens)
    shape: Shape
    control: Control
    rate_per_s: float
    usd_per_hour: Decimal
    mean_e2e_s: float = 0.0  # the latency Little's law used for the rate
    note: str = ""  # when the declared load's two figures disagree
    plan: FleetPlan | None = None
    verification: tuple[ScenarioResult, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.verification) and all(v.passed for v in self.verification) and \
            len(self.verification) == len(SCENARIOS)

    @property
    def why(self) -> str:
        return next((v.why for v in self.verification if not v.passed), "")


@dataclass
class CandidateKnee:
    rm: ReplicaModel
    knee: Knee
    latency_memo: dict[float, float] = field(default_factory=dict)  # per-replica rate -> mean e2e (s)


def arrival_rate(spec: SizingSpec, mean_e2e_s: float, given_per_s: float | None = None) -> tuple[float, str]:
    """The larger of output_tokens_per_s / output_tokens and Little's law on concurrent_requests;
    a note when the two declared figures disagree by more than 20 %. `given_per_s` (a trace
    replayed at a stated rate) overrides both."""
    if given_per_s is not None:
        return given_per_s, f"simulated at the trace's rate, {given_per_s:,.2f} requests/s (not the declared load)"
    w = spec.workload
    little = w.concurrent_requests / mean_e2e_s
    if not w.output_tokens_per_s:
        return little, ""
    tps = w.output_tokens_per_s / w.output_tokens
    rate = max(tps, little)
    note = ""
    if abs(tps - little) > 0.2 * rate:
        note = (f"workload.concurrent_requests {w.concurrent_requests} at the simulated mean latency of "
                f"{mean_e2e_s:.2f} s is {little:,.1f} requests/s ({little * w.output_tokens:,.0f} output tokens/s); "
                f"workload.output_tokens_per_s {w.output_tokens_per_s:,.0f} is {tps:,.1f} requests/s: "
                f"the plan is simulated at the larger, {rate:,.1f} requests/s")
    return rate, note


class VerifiedSearch:
    """Knees per candidate, proposals and their verdicts, for one sizing spec.

    Unless fleet.warm_spares_per_az asks for them, proposals have no warm spare nodes: a spare
    node costs what a serving node costs and serves nothing until a burst, while a replica on
    that node serves from the start (in a burst, minutes before a spare could); the burst
    headroom comes from the node tier instead (a STOPPED warm pool costs only its EBS).
    """

    def __init__(self, spec: SizingSpec, arch: ModelArch, lengths: Lengths, seed: int,
                 node_price: Callable[[object], Decimal], build: Callable[[object, Proposal, CandidateKnee], FleetPlan],
                 progress: Callable[[str], None] | None = None, rate_per_s: float | None = None) -> None:
        self.spec, self.arch, self.lengths, self.seed = spec, arch, lengths, seed
        self.rate_per_s = rate_per_s
        self.node_price, self.build, self.progress = node_price, build, progress
        self.knees: dict[tuple, CandidateKnee | None] = {}
        self.first: dict[tuple, Proposal | None] = {}
        self.why_not: dict[tuple, str] = {}  # candidates with no proposal, and why
        self.tried: list[Proposal] = []
        # Fewer requests per knee run for long answers: the same simulated time, about.
        self.knee_requests = max(300, min(KNEE_REQUESTS, int(150_000 / spec.workload.output_tokens)))

    # --- knee ----------------------------------------------------------------------------------
    def knee(self, cand, guess_per_s: float | None = None, guess_concurrency: int | None = None) -> CandidateKnee:
        key = group_key(cand)
        if key not in self.knees:
            sibling = next((k.knee for g, k in self.knees.items() if g[:3] == key[:3] and k.knee.run), None)
            # (the same replica with another token budget: its knees are where to start)
            if sibling is not None:
                self.knees[key] = self._knee(cand, sibling.rate_per_s, 1.03, sibling.max_num_seqs)
            else:
                self.knees[key] = self._knee(cand, guess_per_s, 1.25, guess_concurrency)
        return self.knees[key]

    def _knee(self, cand, guess_per_s: float | None, guess_step: float,
              guess_concurrency: int | None) -> CandidateKnee:
        """max-num-seqs from the closed-loop knee, then the rate knee with that cap."""
        spec, w = self.spec, self.spec.workload
        inputs = ("knee", self.arch, cand.rm.gpu, cand.tp, cand.precision, spec.model.kv_cache_dtype, cand.rm.engine,
                  spec.fleet.gpu_memory_utilization, cand.max_num_batched_tokens, spec.model.max_model_len,
                  w.input_tokens, w.output_tokens, targets_ms(w), w.slo_attainment_pct, self.lengths.digest(),
                  self.seed, self.knee_requests, guess_per_s, guess_step, guess_concurrency)
        return memoised(inputs, lambda: self._simulate_knee(cand, guess_per_s, guess_step, guess_concurrency))

    def _simulate_knee(self, cand, guess_per_s: float | None, guess_step: float,
                       guess_concurrency: int | None) -> CandidateKnee:
        spec, w = self.spec, self.spec.workload
        engine = cand.rm.engine
        models: dict[int, ReplicaModel] = {}

        def rm_for(max_num_seqs: int) -> ReplicaModel:
            if max_num_seqs not in models:
                models[max_num_seqs] = ReplicaModel(
                    self.arch, cand.rm.gpu, cand.tp, cand.precision, spec.model.kv_cache_dtype, engine,
                    gpu_memory_utilization=spec.fleet.gpu_memory_utilization, max_num_seqs=max_num_seqs,
                    max_num_batched_tokens=cand.max_num_batched_tokens)
            return models[max_num_seqs]

        attainment = (w.slo_attainment_pct or {}).get("sustained")
        context = min(w.input_tokens + w.output_tokens, spec.model.max_model_len)
        widest = rm_for(engine.default_max_num_seqs)
        c_max = min(engine.default_max_num_seqs, cand.max_num_batched_tokens, widest.running_cap(context))
        mns, at_mns = concurrency_knee(rm_for, self.lengths, targets_ms(w), c_max=c_max, guess=guess_concurrency,
                                       seed=self.seed, attainment_pct=attainment)
        if mns == 0:
            return CandidateKnee(rm_for(1), Knee(0.0, 0.0, 0, None, at_mns))
        rm = rm_for(mns)
        hi = steady_state(rm, w.input_tokens, w.output_tokens, max_load=True).requests_per_s * 1.3
        if guess_step > 1.1 or mns != guess_concurrency:  # the closed loop at max-num-seqs bounds the knee rate
            guess_per_s, guess_step = 0.85 * at_mns.requests_per_s, 1.12
        k = find_knee(rm, self.lengths, targets_ms(w), rate_hi_per_s=hi, guess_per_s=guess_per_s,
                      guess_step=guess_step, seed=self.seed, requests=self.knee_requests, attainment_pct=attainment)
        return CandidateKnee(rm, replace(k, max_num_seqs=mns))

    def mean_latency_s(self, ck: CandidateKnee, per_replica_per_s: float) -> float:
        """Mean end-to-end latency of one replica at a Poisson rate (the knee's draws)."""
        key = round(math.log(per_replica_per_s) / math.log(1.01))  # rates within 1 % share a run:
        if key not in ck.latency_memo:  # the bucket's own rate, so the answer has no history
            n, rate = self.knee_requests, 1.01 ** key
            gaps = np.random.default_rng(self.seed).exponential(1.0 / rate, n)
            ins, outs = self.lengths.draw(np.random.default_rng(self.seed + 1), n)
            r = run_open(ck.rm, OpenLoop(np.cumsum(gaps) - gaps[0], ins, outs))
            ck.latency_memo[key] = float(np.mean(r.latencies.e2e_s))
        return ck.latency_memo[key]

    # --- proposals -----------------------------------------------------------------------------
    def first_proposal(self, cand, guess_per_s: float | None = None,
                       guess_concurrency: int | None = None) -> Proposal | None:
        """The cheapest shape the knee and the fluid burst estimate allow, at a self-consistent rate.

        The rate: Little's law needs the latency at the plan's own sustained load, and the plan
        depends on the rate; start from the unloaded latency (the highest rate the declared
        concurrency can send) and iterate rate -> shape -> latency at the shape's baseline.
        """
        key = group_key(cand)
        if key in self.first:
            return self.first[key]
        ck = self.knee(cand, guess_per_s, guess_concurrency)
        p = None
        if ck.knee.run is None:
            broken = ck.knee.best.latencies.broken(targets_ms(self.spec.workload))
            self.why_not[key] = "fails in the replica simulation at one request at a time: " + "; ".join(
                f"{m} p95 {v:,.0f} ms > {t:g} ms" for m, t, v in broken)
        else:
            e2e = float(np.mean(ck.knee.best.latencies.e2e_s))
            seen: set[float] = set()
            for _ in range(4):
                rate, note = arrival_rate(self.spec, e2e, self.rate_per_s)
                p = self._cheapest_shape(cand, ck, rate, e2e, note)
                if p is None or round(rate, 1) in seen:
                    break
                seen.add(round(rate, 1))
                e2e = self.mean_latency_s(ck, min(rate / p.control.min_replicas, ck.knee.rate_per_s))
        self.first[key] = p
        return p

    def _cheapest_shape(self, cand, ck: CandidateKnee, rate: float, mean_e2e_s: float, note: str) -> Proposal | None:
        f, w = self.spec.fleet, self.spec.workload
        rpn = cand.replicas_per_node
        serving_azs = f.azs - 1 if f.survive_az_loss else f.azs
        needed = math.ceil(rate / ck.knee.rate_per_s)
        serving = math.ceil(needed / (serving_azs * rpn))
        burst_replicas = math.ceil(rate * w.burst_factor / ck.knee.rate_per_s)
        miss = 1.0
        while serving <= f.max_nodes_per_az:
            shape = shape_for(self.spec, rpn, serving, burst_replicas, derived_warm_share=0.0)
            p = self._proposal(cand, ck, shape, rate, mean_e2e_s, note)
            miss = fluid_burst_miss(self.spec, p, ck, rpn)
            if miss <= FLUID_MISS_BUDGET:
                return p
            serving += 1
        self.why_not[group_key(cand)] = (
            f"the {w.burst_factor:g}x burst leaves {miss:.0%} of its requests beyond the capacity of "
            f"fleet.max_nodes_per_az {f.max_nodes_per_az} nodes per AZ (fluid estimate: knee "
            f"{ck.knee.rate_per_s:.2f} req/s per replica, {rate:,.1f} req/s offered at 1x)")
        return None

    def grown(self, cand, p: Proposal) -> Proposal | None:
        ck = self.knee(cand)
        if p.shape.serving + 1 > self.spec.fleet.max_nodes_per_az:
            return None
        burst_replicas = max(p.shape.replicas_max, (p.shape.serving + 1) * cand.replicas_per_node * self.spec.fleet.azs)
        shape = shape_for(self.spec, cand.replicas_per_node, p.shape.serving + 1, burst_replicas,
                          derived_warm_share=0.0)
        return self._proposal(cand, ck, shape, p.rate_per_s, p.mean_e2e_s, p.note)

    def _proposal(self, cand, ck: CandidateKnee, shape: Shape, rate: float, mean_e2e_s: float,
                  note: str) -> Proposal:
        f, w = self.spec.fleet, self.spec.workload
        rpn = cand.replicas_per_node
        replicas_baseline = shape.serving * rpn * f.azs
        paths = time_to_serve(checkpoint_gib_of(ck.rm))
        lag_path = "placeholder" if shape.warm else "warm_node"
        lag = after_signal_s(paths[lag_path])
        run = ck.knee.run
        knee = KneeFigures(ck.knee.rate_per_s, ck.knee.concurrency, ck.knee.max_num_seqs, run.latencies.p95_ms("ttft"))
        control = derive_control(
            served_name=self.spec.model.served_name or self.arch.hf_id or self.arch.key, knee=knee,
            ttft_target_ms=w.ttft_p95_ms, sustained_rate_per_replica=rate / replicas_baseline,
            sustained_latency_s=mean_e2e_s, burst_factor=w.burst_factor,
            burst_ramp_s=w.burst_ramp_s, scale_up_lag_s=lag, min_replicas=replicas_baseline,
            max_replicas=shape.replicas_max, warm_replicas=shape.warm * rpn * f.azs,
            max_num_batched_tokens=cand.max_num_batched_tokens, azs=f.azs,
        )
        usd = self.node_price(cand) * shape.baseline * f.azs
        return Proposal(group_key(cand), shape, control, rate, usd, mean_e2e_s=mean_e2e_s, note=note)

    # --- the loop ------------------------------------------------------------------------------
    def run(self, ranked: list) -> tuple[Proposal | None, object | None]:
        """Simulate proposals cheapest first until one passes every scenario."""
        heap: list[tuple[Decimal, int, int, object, Proposal | None]] = []
        order = 0
        seen = set()
        for e in ranked:  # the best-ranked variant of each candidate replica
            if group_key(e.cand) not in seen:
                seen.add(group_key(e.cand))
                heapq.heappush(heap, (e.usd_per_hour, 0, order, e, None))
                order += 1
        verified = 0
        while heap and verified < VERIFY_LIMIT:
            cost, _, _, e, proposal = heapq.heappop(heap)
            if proposal is None:
                proposal = self.first_proposal(e.cand, e.at_best.requests_per_s, e.concurrency_per_replica)
                if proposal is not None:
                    heapq.heappush(heap, (proposal.usd_per_hour, 1, order, e, proposal))
                    order += 1
                continue
            self.check(e.cand, proposal)
            verified += 1
            if proposal.passed:
                return proposal, e
            bigger = self.grown(e.cand, proposal)
            if bigger is not None:
                heapq.heappush(heap, (bigger.usd_per_hour, 1, order, e, bigger))
                order += 1
        return None, None

    def replica(self, rm: ReplicaModel, max_num_seqs: int) -> ReplicaModel:
        """The knee's replica with the plan's max-num-seqs (what the plan deploys)."""
        return ReplicaModel(rm.arch, rm.gpu, rm.tp, rm.precision, rm.kv_dtype, rm.engine,
                            gpu_memory_utilization=self.spec.fleet.gpu_memory_utilization,
                            max_num_seqs=max_num_seqs, max_num_batched_tokens=rm.max_num_batched_tokens)

    def check(self, cand, p: Proposal, stop_at_first_failure: bool = True) -> Proposal:
        ck = self.knee(cand)
        p.plan = self.build(cand, p, ck)
        if self.progress:
            self.progress(f"simulating {cand.label()} with {p.shape.serving} serving node(s) per AZ")
        p.verification = verify(p.plan, self.spec.workload, lengths=self.lengths, rate_per_s=p.rate_per_s,
                                seed=self.seed, rm=self.replica(ck.rm, p.control.max_num_seqs),
                                stop_at_first_failure=stop_at_first_failure)
        self.tried.append(p)
        return p


def group_key(cand) -> tuple:
    return (cand.instance.name, cand.tp, cand.precision, cand.max_num_batched_tokens)


def checkpoint_gib_of(rm: ReplicaModel) -> float:
    """What a new replica of `rm` hydrates and loads: its checkpoint, not its weights in HBM."""
    return checkpoint_gib(rm.arch, rm.precision)


def fluid_burst_miss(spec: SizingSpec, p: Proposal, ck: CandidateKnee, rpn: int) -> float:
    """Share of the burst scenario's requests beyond the ready replicas' knee capacity, in a fluid
    model of the burst: baseline replicas until the signal crosses the threshold, then new ones
    after the scale-up lag (warm spares first, then the node tier)."""
    from infra.core.sizing.simulate.scenarios import BURST_START_S, WARMUP_S

    w, f = spec.workload, spec.fleet
    c = p.control
    dt = 1.0
    end = BURST_START_S + w.burst_ramp_s + w.burst_hold_s
    t = np.arange(WARMUP_S, end, dt)
    mult = np.interp(t, [BURST_START_S, BURST_START_S + max(w.burst_ramp_s, 1e-9)], [1.0, w.burst_factor])
    offered = p.rate_per_s * mult
    paths = time_to_serve(checkpoint_gib_of(ck.rm))
    warm_s = after_signal_s(paths["placeholder"]) + c.polling_interval_s
    cold_s = after_signal_s(paths["warm_node"]) + c.polling_interval_s
    base = c.min_replicas
    warm_replicas = p.shape.warm * rpn * f.azs
    # Replicas asked for as soon as the in-flight signal passes the threshold.
    in_flight = offered * p.mean_e2e_s
    wanted = np.minimum(c.max_replicas, np.maximum(base, np.ceil(in_flight / c.scale_threshold_per_replica)))
    ready = np.full_like(t, float(base))
    asked_at: list[float] = []
    for i, ti in enumerate(t):
        while len(asked_at) < wanted[i] - base:
            asked_at.append(ti)
    for k, ta in enumerate(asked_at):
        ready += (t >= ta + (warm_s if k < warm_replicas else cold_s))
    capacity = ready * ck.knee.rate_per_s
    return float(np.sum(np.maximum(0.0, offered - capacity)) / np.sum(offered))
