"""Metric names and the PromQL built from them: the one place a metric name is spelled.

KEDA's trigger, the alert rules and the Grafana dashboard all call these builders. vLLM labels
its metrics `model_name` (the served name), not `model` as the production-stack chart's own
KEDA template assumes. Pure: no pulumi import.
"""
from __future__ import annotations

# --- vLLM (label: model_name) --------------------------------------------------------------
VLLM_MODEL_LABEL = "model_name"
VLLM_REQUESTS_WAITING = "vllm:num_requests_waiting"  # gauge: queued in the scheduler
VLLM_REQUESTS_RUNNING = "vllm:num_requests_running"  # gauge: in the running batch
VLLM_KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"  # gauge 0-1 (was vllm:gpu_cache_usage_perc)
VLLM_TTFT = "vllm:time_to_first_token_seconds"  # histogram
VLLM_ITL = "vllm:inter_token_latency_seconds"  # histogram: time per output token after the first
VLLM_E2E = "vllm:e2e_request_latency_seconds"  # histogram
VLLM_REQUEST_SUCCESS = "vllm:request_success_total"  # counter (label finished_reason)
VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"  # counter

# --- DCGM exporter ---------------------------------------------------------------------------
DCGM_XID_ERRORS = "DCGM_FI_DEV_XID_ERRORS"  # gauge: the LAST Xid error code (0 when none): it stays set
# dcgm-exporter labels the node `Hostname` up to 4.8.2 and `hostname` after: queries copy the old
# label into the new one, so alerts and panels group by `hostname` on either version.
DCGM_HOST_LABEL = "hostname"
DCGM_HOST_LABEL_OLD = "Hostname"
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"
DCGM_GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
DCGM_POWER = "DCGM_FI_DEV_POWER_USAGE"

# --- kube-state-metrics ----------------------------------------------------------------------
KSM_NODE_CONDITION = "kube_node_status_condition"
KSM_NODE_LABELS = "kube_node_labels"
KSM_DEPLOYMENT_AVAILABLE = "kube_deployment_status_replicas_available"


def ksm_label(k8s_label: str) -> str:
    """How kube-state-metrics exposes an allow-listed Kubernetes label (`label_` + sanitized)."""
    out = "".join(c if c.isalnum() else "_" for c in k8s_label)
    return f"label_{out}"


def _selector(served_name: str) -> str:
    if '"' in served_name or "\\" in served_name:
        raise ValueError(f"served name {served_name!r} cannot be quoted in PromQL")
    return f'{{{VLLM_MODEL_LABEL}="{served_name}"}}'


def queue_depth(served_name: str) -> str:
    """Requests waiting across the fleet: KEDA divides it by the per-replica threshold."""
    return f"sum({VLLM_REQUESTS_WAITING}{_selector(served_name)})"


# The autoscaling signal: requests in a replica's engine, running or waiting. It rises with the
# load from the first request on; the queue alone stays 0 until max_num_seqs run.
IN_FLIGHT_GAUGES = (VLLM_REQUESTS_RUNNING, VLLM_REQUESTS_WAITING)


def in_flight(served_name: str) -> str:
    """Requests running or waiting across the fleet: KEDA divides it by the per-replica threshold."""
    sel = _selector(served_name)
    return " + ".join(f"sum({g}{sel})" for g in IN_FLIGHT_GAUGES)


def queue_depth_per_replica(served_name: str) -> str:
    sel = _selector(served_name)
    return f"sum({VLLM_REQUESTS_WAITING}{sel}) / clamp_min(count({VLLM_REQUESTS_WAITING}{sel}), 1)"


def histogram_p95(metric: str, served_name: str, window: str) -> str:
    return (
        f"histogram_quantile(0.95, sum by (le) "
        f"(rate({metric}_bucket{_selector(served_name)}[{window}])))"
    )


def ttft_p95(served_name: str, window: str) -> str:
    return histogram_p95(VLLM_TTFT, served_name, window)


def tpot_p95(served_name: str, window: str) -> str:
    return histogram_p95(VLLM_ITL, served_name, window)


def e2e_p95(served_name: str, window: str) -> str:
    return histogram_p95(VLLM_E2E, served_name, window)


# The SLOs a query may name (`slo: ttft_p95` in a rollout plan's health gate): the PromQL that
# measures each, and the workload field (milliseconds) that holds its target.
SLO_QUERIES = {"ttft_p95": ttft_p95, "tpot_p95": tpot_p95, "e2e_p95": e2e_p95}
SLO_TARGET_FIELDS = {"ttft_p95": "ttft_p95_ms", "tpot_p95": "tpot_p95_ms", "e2e_p95": "e2e_p95_ms"}


def slo_query(slo: str, served_name: str, window: str) -> str:
    """The PromQL whose value (seconds) is compared with the SLO's target."""
    return SLO_QUERIES[slo](served_name, window)


def kv_cache_usage_max(served_name: str) -> str:
    return f"max by (pod) ({VLLM_KV_CACHE_USAGE}{_selector(served_name)})"


def engine_up(served_name: str) -> str:
    return f"{VLLM_REQUESTS_RUNNING}{_selector(served_name)}"


def dcgm_host(expr: str) -> str:
    """`expr` with the node name in `hostname` whichever label the exporter version sets."""
    return f'label_replace({expr}, "{DCGM_HOST_LABEL}", "$1", "{DCGM_HOST_LABEL_OLD}", "(.+)")'


def xid_errors(window: str) -> str:
    """A GPU reported a new Xid within `window`: the gauge holds the last code, so a change of
    it (not its value) is the event; the code itself is in the alert's annotation query."""
    return f"max by ({DCGM_HOST_LABEL}, gpu) ({dcgm_host(f'changes({DCGM_XID_ERRORS}[{window}])')}) > 0"


def by_host(agg: str, metric: str, *extra: str) -> str:
    """`agg by (hostname, ...) (metric)`, the node name normalised (dcgm_host)."""
    return f"{agg} by ({', '.join((DCGM_HOST_LABEL,) + extra)}) ({dcgm_host(metric)})"


def gpu_nodes_not_ready(role_label: str, role_value: str) -> str:
    """Not-Ready nodes among those carrying the GPU role label (allow-listed in KSM)."""
    return (
        f'({KSM_NODE_CONDITION}{{condition="Ready",status="true"}} == 0) '
        f'and on (node) {KSM_NODE_LABELS}{{{ksm_label(role_label)}="{role_value}"}}'
    )


# Every metric a dashboard panel or alert may name (the dashboard test checks against this).
ALL_METRICS = frozenset({
    VLLM_REQUESTS_WAITING, VLLM_REQUESTS_RUNNING, VLLM_KV_CACHE_USAGE, VLLM_TTFT, VLLM_ITL, VLLM_E2E,
    VLLM_REQUEST_SUCCESS, VLLM_GENERATION_TOKENS, DCGM_XID_ERRORS, DCGM_GPU_UTIL, DCGM_FB_USED,
    DCGM_GPU_TEMP, DCGM_POWER, KSM_NODE_CONDITION, KSM_NODE_LABELS, KSM_DEPLOYMENT_AVAILABLE,
})
