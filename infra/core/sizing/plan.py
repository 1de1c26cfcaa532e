"""The FleetPlan: the one place every count, setting and dollar figure downstream comes from.

Components, the control block (KEDA trigger and HPA behaviour, admission limit), vLLM flags,
node-group sizes, cost and policies all read the plan; none of them recompute what is here. The
fleet simulator reads the same control block, and the plan carries its verdicts. `to_dict()` is the JSON that `size --json` prints
and that `plan --json` embeds under "plan".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from infra.core.money import usd_exact, usd_rate


@dataclass(frozen=True)
class NodeCounts:
    min: int
    desired: int
    max: int


@dataclass(frozen=True)
class VllmSettings:
    tensor_parallel_size: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    gpu_memory_utilization: float
    kv_cache_dtype: str  # "auto" or "fp8"
    quantization: str | None  # None for bf16 weights
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True


@dataclass(frozen=True)
class Predicted:
    """Predicted per-replica behaviour at a stated per-replica concurrency."""

    concurrency_per_replica: int
    ttft_p95_ms: float
    ttft_mean_ms: float
    tpot_p95_ms: float
    tpot_mean_ms: float
    e2e_p95_ms: float
    output_tokens_per_s_per_replica: float


@dataclass(frozen=True)
class PlanCost:
    """GPU-node cost. Fixed infrastructure (EKS, NAT, NLB, S3...) is added by infra/core/cost."""

    usd_per_gpu_hour: float
    usd_per_node_hour: float
    price_source: str
    usd_per_hour_baseline: float  # min nodes in every AZ, warm spares included
    usd_per_hour_max: float  # max nodes in every AZ (burst) plus warm spares
    usd_per_million_output_tokens: float  # baseline $/h over the declared sustained output rate


@dataclass(frozen=True)
class HpaBehavior:
    """The HPA behaviour KEDA renders (autoscaling/v2 `behavior`) and the simulator runs."""

    scale_up_stabilization_s: int
    scale_up_pods: int  # per scale_up_period_s ...
    scale_up_percent: int  # ... or this percentage of the replicas, whichever is more
    scale_up_period_s: int
    scale_down_stabilization_s: int
    scale_down_pods: int
    scale_down_period_s: int
    tolerance: float  # kube-controller-manager's --horizontal-pod-autoscaler-tolerance (not in the object)


@dataclass(frozen=True)
class Control:
    """The control settings the serving layer deploys and the fleet simulator runs, set at the knee.

    knee: the highest Poisson arrival rate per replica at which every declared p95 holds in the
    replica simulation, and the mean requests in flight there. The scale signal is the sum of
    `scale_metrics` over the replicas (running + waiting: it rises with load before any request
    waits, unlike the queue alone), with an AverageValue target per replica.
    """

    knee_rate_per_replica: float  # requests/s
    knee_concurrency_per_replica: float  # mean requests in flight at the knee rate
    max_num_seqs: int  # = vllm.max_num_seqs: the running requests the knee needs, never more
    scale_metrics: tuple[str, ...]  # gauges summed by the trigger query
    scale_query: str  # the PromQL KEDA runs (infra/core/metrics.py)
    scale_threshold_per_replica: int  # AverageValue target of the query per replica
    scale_up_lag_s: float  # signal to a replica serving from a warm spare
    polling_interval_s: int
    metrics_scrape_interval_s: int
    min_replicas: int
    max_replicas: int
    admission_limit_per_replica: int  # requests in flight per ready replica past which the gateway sheds (503)
    # The mechanism (control.py): each of `gateway_proxies` Envoy replicas opens at most
    # `admission_connections_per_proxy` connections to one engine; their product is the limit.
    gateway_proxies: int
    admission_connections_per_proxy: int
    hpa: HpaBehavior
    derivation: tuple[str, ...] = field(default_factory=tuple)  # how each figure was set, in words


@dataclass(frozen=True)
class ScenarioResult:
    """One verification scenario of the fleet simulator (p95s in ms; None: infinite, i.e. missed)."""

    name: str  # "sustained" | "az-loss" | "burst"
    passed: bool
    requests: int
    rejected: int  # shed by the gateway, lost with an AZ, or still unanswered at the end
    attainment_pct: float  # share of requests within every SLO at once
    ttft_p95_ms: float | None
    tpot_p95_ms: float | None
    e2e_p95_ms: float | None
    # The long tail of requests in flight (e2e p99): the serving layer's drain window covers it.
    e2e_p99_ms: float | None
    replicas_min: int
    replicas_max: int
    why: str = ""  # the scenario and figure that failed, when not passed


@dataclass(frozen=True)
class Alternative:
    instance_type: str
    tensor_parallel: int
    precision: str
    max_num_seqs: int
    max_num_batched_tokens: int
    feasible: bool
    gpus: int | None  # total GPUs in the fleet at baseline, when feasible
    usd_per_hour_baseline: float | None
    why: str  # why it lost to the chosen plan, or which SLO (or simulated scenario) it breaks
    verification: tuple[ScenarioResult, ...] = field(default_factory=tuple)  # when it was simulated


@dataclass(frozen=True)
class FleetPlan:
    model: str
    served_name: str
    region: str
    engine: str
    instance_type: str
    gpu: str
    gpus_per_node: int
    tensor_parallel: int
    precision: str
    azs: int
    survive_az_loss: bool
    # Replicas: sustained = fewest that meet every SLO at the declared load (all AZs up);
    # per_az = what each AZ runs at baseline, so that (azs - 1) AZs still carry the load.
    replicas_sustained: int
    replicas_per_az: int
    replicas_per_node: int
    replicas_max: int  # at the burst, all AZs up
    nodes_per_az: NodeCounts
    warm_spares_per_az: int
    kv_cache_tokens_per_replica: int
    max_concurrency_per_replica: int  # min(max_num_seqs, KV pool at the workload's context)
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    load: dict[str, float]  # declared load the plan was sized for
    vllm: VllmSettings
    predicted: Predicted  # at sustained load with one AZ lost (the worst case the plan guarantees)
    predicted_all_azs: Predicted  # at sustained load, all AZs up
    cost: PlanCost
    control: Control
    verification: tuple[ScenarioResult, ...] = field(default_factory=tuple)  # the fleet simulator's verdicts
    alternatives: tuple[Alternative, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)  # caveats an SRE should read

    @property
    def replicas_baseline(self) -> int:
        return self.replicas_per_az * self.azs

    @property
    def gpus_baseline(self) -> int:
        return self.nodes_per_az.desired * self.azs * self.gpus_per_node

    @property
    def verified(self) -> bool:
        return bool(self.verification) and all(v.passed for v in self.verification)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON; money as decimal strings (infra.core.money), the rest as numbers."""
        out = asdict(self)
        c = self.cost
        out["cost"] = {
            "usd_per_gpu_hour": usd_exact(c.usd_per_gpu_hour), "usd_per_node_hour": usd_exact(c.usd_per_node_hour),
            "price_source": c.price_source, "usd_per_hour_baseline": usd_rate(c.usd_per_hour_baseline),
            "usd_per_hour_max": usd_rate(c.usd_per_hour_max),
            "usd_per_million_output_tokens": usd_rate(c.usd_per_million_output_tokens),
        }
        out["alternatives"] = [dict(asdict(a), usd_per_hour_baseline=usd_rate(a.usd_per_hour_baseline))
                               for a in self.alternatives]
        out["verification"] = [asdict(v) for v in self.verification]
        out["notes"] = list(self.notes)
        out["replicas_baseline"] = self.replicas_baseline
        out["gpus_baseline"] = self.gpus_baseline
        return out
