"""Serving tunables that the stack config does not (yet) carry, each with its unit and why.

Everything the fleet plan knows (TP, GPUs per pod, replicas, thresholds, admission limits) is
NOT here: builders read it from the plan. What is here are operational choices (probe timings,
drain windows, Cluster Autoscaler timings). The time-to-serve assumptions live with their
model in infra/core/sizing/time_to_serve.py, and the KEDA/HPA pacing in the plan's control
block (infra/core/sizing/control.py): the fleet simulator reads both. Candidates for config
fields are listed in docs/serving.md ("Config fields wanted"). Pure: no pulumi import.
"""
from __future__ import annotations

from dataclasses import dataclass

from infra.core.sizing.control import METRICS_SCRAPE_INTERVAL_S


@dataclass(frozen=True)
class ServingDefaults:
    # --- where images come from -----------------------------------------------------------------
    # The stack's private ECR registry host (its pull-through cache and mirrors), set by the
    # composition from the account; None keeps upstream registries (builders tested alone).
    image_registry: str | None = None

    # --- namespaces and release names ---------------------------------------------------------
    gpu_namespace: str = "gpu-system"
    keda_namespace: str = "keda"
    gateway_namespace: str = "envoy-gateway-system"
    monitoring_namespace: str = "monitoring"
    autoscaler_namespace: str = "kube-system"
    vllm_release: str = "vllm"
    monitoring_release: str = "kps"
    autoscaler_service_account: str = "cluster-autoscaler"

    # --- vLLM pod -----------------------------------------------------------------------------
    # The chart's container/service ports (servingEngineSpec.containerPort / servicePort).
    vllm_container_port: int = 8000
    vllm_service_port: int = 80
    # Share of a node's vCPU and RAM per GPU handed to the vLLM pod (requests = limits, so the
    # pod is Guaranteed QoS); the rest is for kubelet, the CNI, the hydrator and exporters.
    host_share_fraction: float = 0.75
    # /dev/shm for NCCL between TP ranks (a memory-backed emptyDir; counts against the limit).
    shm_size_gib: int = 32

    # --- model load time (sizes the startup probe; the weights are already on NVMe) ----------
    # The load itself is part of the time-to-serve model (infra/core/sizing/time_to_serve.py).
    # The startup probe allows this multiple of the expected load time before a restart.
    startup_safety_factor: float = 2.0
    startup_probe_period_s: int = 10
    probe_timeout_s: int = 5  # /health answers from the API process; 1 s (the default) is tight under load
    readiness_period_s: int = 5
    readiness_failure_threshold: int = 3
    liveness_period_s: int = 10
    liveness_failure_threshold: int = 6

    # --- drain --------------------------------------------------------------------------------
    # preStop sleep: time for Envoy Gateway to drop the pod from its endpoints before SIGTERM.
    endpoint_propagation_s: int = 10
    # vLLM --shutdown-timeout (the requests in flight get this long to finish after SIGTERM) is
    # the plan's simulated e2e p99 (ServingSpec.e2e_p99_s), not a tunable.
    termination_margin_s: int = 15  # grace period = preStop + drain + margin

    # --- ingress ------------------------------------------------------------------------------
    tenant_claim: str = "sub"  # JWT claim naming the tenant (per-tenant rate limit key)
    tenant_header: str = "x-llm-fleet-tenant"  # set from the claim by the JWT filter
    # Modern TLS on the NLB listener (CKV_AWS_103): TLS 1.3 with 1.2 fallback.
    nlb_tls_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    connect_timeout_s: int = 5
    connect_retries: int = 2
    # Envoy's pending queue per proxy (requests waiting for a connection to the engine Envoy
    # picked): enough for connection set-up, too small to be a queue (the fleet simulator takes
    # it as none); past it the circuit breaker answers 503 at once.
    pending_requests_per_proxy: int = 16
    client_request_received_timeout_s: int = 30  # whole request body received (slow clients)
    client_idle_timeout_s: int = 900
    # The unauthenticated /health route (the rollout's HTTP gate, DNS health checks): a short
    # request budget, a few retries that reach other engines, and a per-proxy rate limit so an
    # anonymous flood cannot reach the engines.
    health_timeout_s: int = 10
    health_retries: int = 4
    health_requests_per_minute: int = 600

    # --- autoscaling --------------------------------------------------------------------------
    # Polling, thresholds and HPA behaviour come from the plan's control block (simulated).
    keda_cooldown_s: int = 300
    keda_fallback_failure_threshold: int = 3
    ca_scan_interval: str = "10s"
    ca_scale_down_unneeded_time: str = "15m"
    ca_scale_down_delay_after_add: str = "15m"
    ca_max_node_provision_time: str = "25m"  # p5 launches are slow; the default 15m gives up early
    # Pods below this priority neither trigger scale-up nor block scale-down (the autoscaler's
    # default, stated so that the placeholder priority can be checked against it).
    ca_expendable_pods_priority_cutoff: int = -10
    # The Pod Identity credentials check before the autoscaler starts: new pods with the Job's
    # exponential backoff (10 s, 20 s, ... capped at 6 min) within a deadline.
    ca_credentials_check_attempts: int = 6
    ca_credentials_check_deadline_s: int = 900

    # --- warm pool ----------------------------------------------------------------------------
    # Above the autoscaler's expendable cutoff (placeholders must trigger scale-up) and below
    # every serving pod (they must be preempted).
    placeholder_priority: int = -1
    serving_priority: int = 1000

    # --- observability ------------------------------------------------------------------------
    scrape_interval: str = f"{METRICS_SCRAPE_INTERVAL_S}s"  # the vLLM pods' is the plan's (control block)
    latency_rate_window: str = "5m"
    latency_alert_for: str = "10m"
    queue_alert_for: str = "15m"
    kv_cache_alert_ratio: float = 0.90
    kv_cache_alert_for: str = "10m"
    node_not_ready_for: str = "5m"
    # A new Xid (the gauge changed) within the window, seen on two evaluations: it fires once
    # per event and resolves when the window has passed (a benign Xid does not page forever).
    xid_window: str = "10m"
    xid_alert_for: str = "1m"
    metrics_absent_for: str = "10m"
    # Size-based retention stops this short of the volume (retention days and volume: config).
    prometheus_retention_size_fraction: float = 0.85
    storage_class: str = "llm-fleet-gp3"  # encrypted gp3 through the EBS CSI driver
    alertmanager_service_account: str = "alertmanager"  # bound to the SNS publisher role (Pod Identity)
