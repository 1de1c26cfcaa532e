"""A fleet of replicas behind the gateway, with the KEDA/HPA loop, warm spares, cold nodes and AZ loss.

What it models, in the order a request meets it:

- Gateway: Envoy's least-request balancer (power of two random choices, its default) picks
  a ready replica; the request is shed (503, a miss) when that replica already holds
  `admission_limit_per_replica` requests: the per-endpoint circuit breaker as deployed
  (`gateway_proxies` Envoys x `admission_connections_per_proxy` connections per engine, one
  HTTP/1.1 request per connection; Envoy's pending queue is kept to a few requests, so it
  is taken as none). Rejected requests are not retried unless `retry_after_s` is set (then
  up to `max_attempts` sends, each after the Retry-After delay, latency counted from the first).
- Replicas: one vLLM V1 engine each (engine.py), per AZ.
- Autoscaling: Prometheus scrapes the engines every `metrics_scrape_interval_s`; every
  `polling_interval_s` the HPA reads the control block's signal (the sum of the gauges it
  names over the ready replicas), computes ceil(signal / threshold) (AverageValue), skips
  changes within its tolerance, applies the scale-up policies (Pods or Percent per period,
  the larger) and the scale-down stabilization window and policy, and clamps to min/max.
- A new replica lands on an AZ with the fewest replicas among those that can take it (the
  deployed zone spread is maxSkew 1 with `ScheduleAnyway`: the scheduler prefers the emptiest
  AZ but never leaves a replica pending for the spread's sake): on a warm spare node if that AZ
  has one free (ready after the placeholder path), else on a node from the node tier (ready
  after that path) while the AZ is below its node ceiling. A consumed spare is replaced from
  the node tier. Paths come from the time-to-serve model, without its scale-signal step (the
  loop above is that step).
- AZ loss at `az_loss_at_s`: the AZ with the most replicas loses its replicas, their requests
  in flight (misses), its spares and its pending nodes. New replicas then land in the
  surviving AZs, within their node ceilings.

Routing sees a replica's in-flight count as of its last step end (one step, ~10-50 ms, stale).
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from infra.core.sizing.perf import ReplicaModel
from infra.core.sizing.plan import Control
from infra.core.sizing.simulate.engine import FAILED, REJECTED, Engine, Requests, cached_tokens
from infra.core.sizing.simulate.workload import OpenLoop

# The gauges a scale signal may sum, and what each is in an engine's state.
GAUGES: dict[str, Callable[[Engine], int]] = {
    "vllm:num_requests_running": lambda e: e.running,
    "vllm:num_requests_waiting": lambda e: len(e.waiting),
}
STARTING, READY, DRAINING, LOST = range(4)


@dataclass(frozen=True)
class FleetShape:
    """What the plan deploys, per AZ (replicas = nodes x replicas_per_node)."""

    azs: int
    replicas_per_node: int
    serving_nodes_per_az: int
    warm_nodes_per_az: int
    max_nodes_per_az: int
    placeholder_s: float  # time to serve on a warm spare, after the scale signal
    node_tier_s: float  # time to serve on a node from the node tier, after the scale signal


@dataclass
class Pod:
    az: int
    engine: Engine
    state: int
    ready_at_s: float = 0.0  # when it started serving (created, until then)


@dataclass
class Sample:
    """The fleet at one instant (one row of the timeline)."""

    t_s: float
    ready: int
    starting: int
    desired: int
    spares_used: int
    signal: float


@dataclass
class FleetRun:
    requests: Requests
    samples: list[Sample] = field(default_factory=list)
    replicas_min: int = 0
    replicas_max: int = 0
    lost_az: int | None = None
    steps: int = 0
    end_s: float = 0.0
    attempts: list[int] = field(default_factory=list)


class _Hpa:
    """The HPA's replica recommendation for the control block's behaviour."""

    def __init__(self, control: Control) -> None:
        self.c = control
        self.history: list[tuple[float, int]] = []  # (t, recommendation) for scale-down stabilization
        self.changes: list[tuple[float, int]] = []  # (t, replicas added (+) or removed (-))

    def desired(self, t: float, current: int, signal: float) -> int:
        c, h = self.c, self.c.hpa
        ratio = signal / (c.scale_threshold_per_replica * current) if current else math.inf
        rec = current if abs(ratio - 1) <= h.tolerance else math.ceil(signal / c.scale_threshold_per_replica)
        rec = min(c.max_replicas, max(c.min_replicas, rec))
        self.history.append((t, rec))
        self.history = [(ts, r) for ts, r in self.history if ts > t - max(h.scale_down_stabilization_s,
                                                                           h.scale_up_stabilization_s)]
        if rec > current:
            window = [r for ts, r in self.history if ts > t - h.scale_up_stabilization_s] or [rec]
            rec = min(window) if h.scale_up_stabilization_s else rec
            added = sum(d for ts, d in self.changes if ts > t - h.scale_up_period_s and d > 0)
            start = current - added
            limit = max(start + h.scale_up_pods, math.ceil(start * (1 + h.scale_up_percent / 100)))
            rec = max(current, min(rec, limit))
        elif rec < current:  # the highest recommendation of the window, never above the current count
            rec = min(current, max(r for ts, r in self.history if ts > t - h.scale_down_stabilization_s))
            removed = -sum(d for ts, d in self.changes if ts > t - h.scale_down_period_s and d < 0)
            rec = max(rec, current - max(0, h.scale_down_pods - removed))
        if rec != current:
            self.changes.append((t, rec - current))
        return rec


def simulate_fleet(rm: ReplicaModel, shape: FleetShape, control: Control, load: OpenLoop, *, seed: int = 0,
                   until_s: float, az_loss_at_s: float | None = None, prefix_hit_fraction: float = 0.0,
                   retry_after_s: float | None = None, max_attempts: int = 3, sample_every_s: float = 10.0,
                   max_model_len: int | None = None, progress: Callable[[float], None] | None = None) -> FleetRun:
    """Run `load` through the fleet until every request has ended or `until_s` (then still in flight = miss)."""
    rng = np.random.default_rng(seed + 7919)
    arrivals = load.arrival_s.tolist()
    prompts = load.input_tokens.tolist()
    R = Requests.open_loop(arrivals, prompts, load.output_tokens.tolist(),
                           [cached_tokens(p, prefix_hit_fraction) for p in prompts])
    run = FleetRun(R, attempts=[1] * len(arrivals))
    gauges = [GAUGES[g] for g in control.scale_metrics]
    pods: list[Pod] = []
    # Engines do not interact between arrivals and control events, so each runs lazily: up to
    # time t when the router or a controller reads it (`advance`), in a tight loop of its own.
    active: dict[int, None] = {}  # busy engines (pod indices)
    steps = 0
    seq = [0]
    in_flight = [0]  # over READY and DRAINING pods
    azs = shape.azs
    spare_slots = [shape.warm_nodes_per_az * shape.replicas_per_node] * azs
    spare_total = sum(spare_slots)
    nodes = [shape.serving_nodes_per_az + shape.warm_nodes_per_az] * azs  # existing or coming
    node_slots_free = [0] * azs  # replica slots on non-spare nodes nobody uses
    az_up = [True] * azs
    events: list[tuple[float, int, str, int]] = []  # (t, seq, kind, arg)
    hpa = _Hpa(control)
    desired = [control.min_replicas]

    def finished(rid: int, t: float) -> None:
        in_flight[0] -= 1

    def advance(pi: int, t: float) -> None:
        """Run pod `pi`'s engine steps that start before `t`."""
        nonlocal steps
        p = pods[pi]
        e = p.engine
        step = e.step
        n = 0
        while e.t < t:
            step()
            n += 1
            if not (e.n_dec or e.pf or e.waiting):  # idle (Engine.busy, inlined: the hot loop)
                del active[pi]
                if p.state == DRAINING:
                    p.state = LOST
                    node_slots_free[p.az] += 1
                break
        steps += n

    def advance_all(t: float) -> None:
        for pi in list(active):
            advance(pi, t)

    def event(t: float, kind: str, arg: int = 0) -> None:
        seq[0] += 1
        heapq.heappush(events, (t, seq[0], kind, arg))

    def new_pod(az: int, state: int, t: float) -> int:
        pods.append(Pod(az, Engine(rm, R, t0=t, index=len(pods), on_finish=finished), state, t))
        return len(pods) - 1

    per_az = shape.serving_nodes_per_az * shape.replicas_per_node
    for az in range(azs):
        for _ in range(per_az):
            new_pod(az, READY, 0.0)
    ready = [i for i, p in enumerate(pods) if p.state == READY]

    def counts() -> list[int]:
        n = [0] * azs
        for p in pods:
            if p.state in (STARTING, READY):
                n[p.az] += 1
        return n

    def place(t: float) -> bool:
        """One more replica where the zone spread allows; False when it cannot be placed now."""
        n = counts()
        allowed = [az for az in range(azs) if az_up[az]]  # ScheduleAnyway: any AZ still up
        for az in sorted(allowed, key=lambda a: (spare_slots[a] == 0 and node_slots_free[a] == 0, n[a], a)):
            if node_slots_free[az]:
                node_slots_free[az] -= 1
                i = new_pod(az, STARTING, t)
                event(t + shape.placeholder_s, "ready", i)  # the node is up and holds the weights
                return True
            if spare_slots[az]:
                spare_slots[az] -= 1
                i = new_pod(az, STARTING, t)
                event(t + shape.placeholder_s, "ready", i)
                if spare_slots[az] % shape.replicas_per_node == shape.replicas_per_node - 1 or shape.replicas_per_node == 1:
                    request_node(az, t, spare=True)  # the evicted placeholder's node comes back
                return True
        for az in sorted(allowed, key=lambda a: (n[a], a)):
            if request_node(az, t, spare=False):
                i = new_pod(az, STARTING, t)
                event(t + shape.node_tier_s, "ready", i)
                return True
        return False

    def request_node(az: int, t: float, spare: bool) -> bool:
        if nodes[az] >= shape.max_nodes_per_az:
            return False
        nodes[az] += 1
        if spare:
            event(t + shape.node_tier_s, "spare", az)
        elif shape.replicas_per_node > 1:
            event(t + shape.node_tier_s, "slots", az)
        return True

    def scale_to(target: int, t: float) -> None:
        live = [i for i, p in enumerate(pods) if p.state in (STARTING, READY)]
        if target > len(live):
            for _ in range(target - len(live)):
                if not place(t):
                    break
        elif target < len(live):
            # The ReplicaSet deletes pods that do not serve yet first, then the newest.
            victims = sorted(live, key=lambda i: (pods[i].state == READY, -pods[i].ready_at_s))
            for i in victims[: len(live) - target]:
                p = pods[i]
                if p.state == READY:
                    ready.remove(i)
                if p.state == STARTING or not p.engine.busy:
                    p.state = LOST  # gone at once; its slot is freed
                    node_slots_free[p.az] += 1
                else:
                    p.state = DRAINING  # finishes what it has, then goes

    # Control events.
    scrape = control.metrics_scrape_interval_s
    event(scrape, "scrape")
    event(control.polling_interval_s, "poll")
    event(0.0, "sample")
    if az_loss_at_s is not None:
        event(az_loss_at_s, "az_loss")
    last_scrape = [0.0]
    attempt_of = run.attempts
    retries: list[tuple[float, int]] = []  # (resend time, rid)
    limit = control.admission_limit_per_replica
    n_arr, ai = len(arrivals), 0
    inf = math.inf
    next_progress = 0.0

    # Envoy's least-request balancer draws two hosts at random: the draws, in bulk.
    draws = rng.random(2 * n_arr + 64).tolist()
    di = 0

    def shed(rid: int, t: float) -> None:
        if retry_after_s is not None and attempt_of[rid] < max_attempts:
            attempt_of[rid] += 1
            heapq.heappush(retries, (t + retry_after_s, rid))
        else:
            R.state[rid] = REJECTED
            R.finish_t[rid] = t

    def route(rid: int, t: float) -> None:
        nonlocal di, draws
        n_ready = len(ready)
        if n_ready == 0 or (max_model_len and R.prompt[rid] + R.output[rid] > max_model_len):
            shed(rid, t)
            return
        if n_ready == 1:
            pi = ready[0]
        else:
            if di + 2 > len(draws):
                draws, di = rng.random(1024).tolist(), 0
            a = int(draws[di] * n_ready)
            b = int(draws[di + 1] * (n_ready - 1))
            di += 2
            pa, pb = ready[a], ready[b + (b >= a)]
            if pa in active:
                advance(pa, t)
            if pb in active:
                advance(pb, t)
            pi = pa if pods[pa].engine.in_flight <= pods[pb].engine.in_flight else pb
        if pi in active:
            advance(pi, t)
        e = pods[pi].engine
        if e.in_flight >= limit:  # the per-endpoint circuit breaker is open for this engine
            shed(rid, t)
            return
        e.waiting.append(rid)
        R.replica[rid] = pi
        in_flight[0] += 1
        if pi not in active:
            if e.t < t:
                e.t = t
            active[pi] = None

    def control_event(t: float) -> None:
        nonlocal spare_total
        _, _, kind, arg = heapq.heappop(events)
        if kind in ("scrape", "poll", "az_loss", "sample"):
            advance_all(t)  # these read (or drop) every engine's state at t
        if kind == "ready":
            p = pods[arg]
            if p.state == STARTING and az_up[p.az]:
                p.state = READY
                p.ready_at_s = p.engine.t = t
                ready.append(arg)
        elif kind == "spare":
            if az_up[arg]:
                spare_slots[arg] += shape.replicas_per_node
        elif kind == "slots":
            if az_up[arg]:
                node_slots_free[arg] += shape.replicas_per_node - 1
        elif kind == "scrape":
            last_scrape[0] = float(sum(g(pods[i].engine) for i in ready for g in gauges))
            event(t + scrape, "scrape")
        elif kind == "poll":
            # The HPA's current replicas are the Deployment's (pending pods included).
            desired[0] = hpa.desired(t, desired[0], last_scrape[0])
            scale_to(desired[0], t)
            event(t + control.polling_interval_s, "poll")
        elif kind == "az_loss":
            n = [0] * azs
            for i in ready:
                n[pods[i].az] += 1
            az = max(range(azs), key=lambda a: (n[a], -a))
            run.lost_az = az
            az_up[az] = False
            spare_total -= spare_slots[az]
            spare_slots[az] = node_slots_free[az] = 0
            for i, p in enumerate(pods):
                if p.az == az and p.state != LOST:
                    if p.state in (READY, DRAINING):
                        in_flight[0] -= len(p.engine.drop_all(FAILED, t))
                    p.state = LOST
                    active.pop(i, None)
            ready[:] = [i for i in ready if pods[i].state == READY]
        elif kind == "sample":
            live = [p for p in pods if p.state in (STARTING, READY)]
            run.samples.append(Sample(t, len(ready), sum(p.state == STARTING for p in live), desired[0],
                                      max(0, spare_total - sum(spare_slots)), last_scrape[0]))
            event(t + sample_every_s, "sample")

    heappop = heapq.heappop
    t = 0.0
    while True:
        t_arr = arrivals[ai] if ai < n_arr else inf
        t_retry = retries[0][0] if retries else inf
        t_ev = events[0][0]
        t = min(t_arr, t_retry, t_ev, until_s)
        if t >= until_s:
            advance_all(until_s)
            break
        if t_arr == inf and t_retry == inf:
            advance_all(t)
            if not active and in_flight[0] == 0:
                break
        if progress is not None and t >= next_progress:
            progress(t)
            next_progress = t + 5.0
        if t_ev == t:
            control_event(t)
        elif t_arr == t:
            route(ai, t)
            ai += 1
        else:
            _, rid = heappop(retries)
            route(rid, t)
    run.steps = steps
    run.end_s = min(t, until_s)
    live_counts = [s.ready for s in run.samples] or [len(ready)]
    run.replicas_min, run.replicas_max = min(live_counts), max(live_counts)
    return run

