"""The control block: vLLM's max-num-seqs, the KEDA trigger and HPA behaviour, the admission limit.

Everything is set from the replica simulation's knee (infra/core/sizing/simulate/replica.py:
the highest Poisson rate per replica at which every declared p95 holds):

- max_num_seqs: the largest closed-loop concurrency (that many requests running all the time)
  at which every declared p95 holds, never more, so that under overload requests wait (and are
  shed at the gateway) instead of slowing every stream past its target. The knee rate is then
  found with that cap.
- The scale signal: running + waiting per replica, which rises with the load from the first
  request (the queue alone is 0 until max_num_seqs run). Its AverageValue threshold is the
  in-flight count at the moment the declared burst's ramp is one scale-up lag (signal, scrape,
  time to serve) short of KNEE_HEADROOM x the knee rate, so new replicas serve before the
  replicas reach the knee; in flight = rate x latency, the latency interpolated between the
  sustained load's and the knee's. It is at least the sustained per-replica load plus the HPA's
  tolerance and a margin (no scale-out at sustained load) and at most the knee concurrency.
- The admission limit per ready replica: max_num_seqs plus the requests that can wait for a
  slot and still get their first token within the TTFT target (slack at the knee x knee rate),
  rounded up to a multiple of the gateway's proxies. The mechanism is Envoy's per-endpoint
  circuit breaker (`circuitBreaker.perEndpoint.maxConnections`, the only per-endpoint limit
  Envoy Gateway v1.9 offers): each Envoy replica opens at most limit / proxies connections to
  one engine, and vLLM speaks HTTP/1.1 (one request per connection), so an engine never holds
  more than the limit, at every fleet size from min to max. The overflow waits in a pending
  queue kept small, then answers 503 with Retry-After (`retry_after_s`).
- HPA behaviour: scale up at once (no stabilization), by the warm spares' replicas or 100 % per
  period, whichever is more; scale down after a window longer than a cold node takes to serve,
  one replica per period (a replica costs minutes to bring back).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from infra.core import metrics
from infra.core.sizing.plan import Control, HpaBehavior

POLLING_INTERVAL_S = 15  # KEDA pollingInterval and the HPA sync period (kube-controller-manager default)
METRICS_SCRAPE_INTERVAL_S = 15  # Prometheus scrape of the vLLM pods (ServingDefaults.scrape_interval)
HPA_TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance default
SCALE_UP_PERIOD_S = 60
SCALE_UP_PERCENT = 100
SCALE_DOWN_STABILIZATION_S = 900
SCALE_DOWN_PERIOD_S = 300
# The threshold sits this far above the sustained per-replica load (beyond the HPA tolerance),
# so Poisson noise at sustained load does not add replicas.
SUSTAINED_MARGIN = 0.15
# New replicas should serve before the per-replica rate reaches this share of the knee rate (the
# knee is where the p95s just hold over a run; intervals near it already dip).
KNEE_HEADROOM = 0.9
# Envoy replicas of the gateway: one per AZ, at least two (a proxy restart must not drop the
# endpoint). Per-endpoint circuit-breaker budgets are counted per proxy, so the admission limit
# is split across them.
GATEWAY_PROXIES_MIN = 2
# The per-tenant rate limit's bucket refills every this many seconds (Envoy Gateway's unit
# "Minute"): a 429 says to come back after one refill.
RATE_LIMIT_UNIT = "Minute"
RATE_LIMIT_WINDOW_S = 60


def gateway_proxies(azs: int) -> int:
    return max(GATEWAY_PROXIES_MIN, azs)


def retry_after_s(e2e_p95_ms: float) -> int:
    """The Retry-After of a shed request (503): about one request's lifetime (the end-to-end
    p95 target), whole seconds, at least 1. The gateway sends it; the simulator's retrying
    clients wait it."""
    return max(1, math.ceil(e2e_p95_ms / 1e3))


@dataclass(frozen=True)
class KneeFigures:
    rate_per_replica: float
    concurrency_per_replica: float
    max_num_seqs: int  # the closed-loop knee: the most running requests that still meet every p95
    ttft_p95_ms: float  # at the knee rate


def derive_control(*, served_name: str, knee: KneeFigures, ttft_target_ms: float, sustained_rate_per_replica: float,
                   sustained_latency_s: float, burst_factor: float, burst_ramp_s: float, scale_up_lag_s: float,
                   min_replicas: int, max_replicas: int, warm_replicas: int, max_num_batched_tokens: int,
                   azs: int) -> Control:
    """The control block for one plan (see the module docstring for each figure)."""
    mns = max(1, min(knee.max_num_seqs, max_num_batched_tokens))
    rate0, w0 = sustained_rate_per_replica, sustained_latency_s
    sustained_per_replica = rate0 * w0
    floor_ = math.ceil(sustained_per_replica * (1 + HPA_TOLERANCE + SUSTAINED_MARGIN))
    ceiling = max(1, math.floor(knee.concurrency_per_replica))
    knee_latency_s = knee.concurrency_per_replica / knee.rate_per_replica if knee.rate_per_replica else w0
    lag_s = scale_up_lag_s + POLLING_INTERVAL_S + METRICS_SCRAPE_INTERVAL_S
    growth_per_s = rate0 * (burst_factor - 1) / max(burst_ramp_s, 1.0)  # req/s per replica, per second of ramp
    aim = KNEE_HEADROOM * knee.rate_per_replica
    at_rate = aim - growth_per_s * lag_s
    if growth_per_s <= 0 or at_rate >= aim:
        at_rate = aim
    share = (at_rate - rate0) / (knee.rate_per_replica - rate0) if knee.rate_per_replica > rate0 else 1.0
    latency = w0 + (knee_latency_s - w0) * min(1.0, max(0.0, share))
    lead = at_rate * latency
    threshold = min(ceiling, max(floor_, math.floor(lead)))
    slack_s = max(0.0, (ttft_target_ms - knee.ttft_p95_ms) / 1e3)
    queue = math.floor(slack_s * knee.rate_per_replica)
    proxies = gateway_proxies(azs)
    per_proxy = math.ceil((mns + max(1, queue)) / proxies)  # up: at least one may wait
    admission = per_proxy * proxies
    derivation = (
        f"max_num_seqs {mns}: the most requests a replica can run at once (closed loop) within every p95",
        (f"threshold {threshold} in flight per replica: the ramp ({growth_per_s:.3f} req/s per replica per s) is "
         f"{lag_s:.0f} s (scale-up lag + poll + scrape) short of {KNEE_HEADROOM:.0%} of the knee rate at "
         f"{at_rate:.2f} req/s, {lead:.1f} in flight" if at_rate > rate0 else
         f"threshold {threshold} in flight per replica: the ramp ({growth_per_s:.3f} req/s per replica per s) "
         f"reaches {KNEE_HEADROOM:.0%} of the knee rate sooner than a replica serves ({lag_s:.0f} s: scale-up "
         "lag + poll + scrape), so the signal is set as low as sustained load allows")
        + f"; within [{floor_} (sustained {sustained_per_replica:.1f} + tolerance + margin), {ceiling} (knee)]",
        f"admission {admission} per ready replica: max_num_seqs {mns} + {max(1, queue)} waiting "
        f"({slack_s * 1e3:.0f} ms TTFT slack at the knee x {knee.rate_per_replica:.2f} req/s), rounded up to "
        f"{per_proxy} connections per engine from each of {proxies} Envoy replicas",
    )
    return Control(
        knee_rate_per_replica=round(knee.rate_per_replica, 4),
        knee_concurrency_per_replica=round(knee.concurrency_per_replica, 2),
        max_num_seqs=mns,
        scale_metrics=metrics.IN_FLIGHT_GAUGES,
        scale_query=metrics.in_flight(served_name),
        scale_threshold_per_replica=threshold,
        scale_up_lag_s=round(scale_up_lag_s, 1),
        polling_interval_s=POLLING_INTERVAL_S,
        metrics_scrape_interval_s=METRICS_SCRAPE_INTERVAL_S,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        admission_limit_per_replica=admission,
        gateway_proxies=proxies,
        admission_connections_per_proxy=per_proxy,
        hpa=HpaBehavior(
            scale_up_stabilization_s=0,
            scale_up_pods=max(1, warm_replicas),
            scale_up_percent=SCALE_UP_PERCENT,
            scale_up_period_s=SCALE_UP_PERIOD_S,
            scale_down_stabilization_s=SCALE_DOWN_STABILIZATION_S,
            scale_down_pods=1,
            scale_down_period_s=SCALE_DOWN_PERIOD_S,
            tolerance=HPA_TOLERANCE,
        ),
        derivation=derivation,
    )
