"""vLLM through the production-stack chart (`vllm-stack`), sized by the fleet plan.

Every engine flag the plan decides (TP, max-num-seqs, max-num-batched-tokens, max-model-len,
gpu-memory-utilization, KV-cache dtype, quantization, prefix caching, chunked prefill) and the
GPUs per pod (= TP) come from `plan.vllm`; the model is read from the node-local NVMe copy that
the weights hydrator wrote (init container waits for its marker). Every flag we pass exists in
the pinned vLLM's CLI (tests/serving/schemas/vllm/: the flags of `vllm/engine/arg_utils.py` and
the OpenAI server's `cli_args.py` at the image's tag).

Replicas: the HPA owns them. The chart renders autoscaling.py's ScaledObject from
`modelSpec.keda`, and with it enabled renders no `replicas`, so a Helm upgrade cannot reset
the count.

What the chart cannot express is added by a server-side-apply patch of the Deployment it
renders: zone topology spread (maxSkew 1, ScheduleAnyway: with an AZ lost the planned replicas
still schedule in the others), no service-account token, and the drain sequence (preStop sleep,
then vLLM's `--shutdown-timeout` = the plan's simulated e2e p99, inside a termination grace
period above both). The PodDisruptionBudget and the serving PriorityClass are ours too (the
chart's PDB template arrived after 0.1.12).

Pod security: seccomp RuntimeDefault, no privilege escalation, every capability dropped, no
service-account token (the engine calls no Kubernetes API). It runs as root: the vLLM image
declares no other user, writes its caches (Triton, torch.compile, Hugging Face) under /root, and
reads the checkpoint from a hostPath the hydrator wrote. Guaranteed QoS: every container,
the wait-for-weights init container included, has requests equal to limits.

Router: disabled. The gateway routes straight to the engine Service so that Envoy's
least-request balancing, circuit breaker and retries see every engine pod; the chart's router
would add a hop and balance round-robin behind Envoy's back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.core.catalog.charts import chart, image
from infra.program.serving import kube
from infra.program.serving.autoscaling import keda_chart_values
from infra.program.serving.spec import (
    GPU_NODE_SELECTOR,
    ZONE_KEY,
    ServingSpec,
    common_labels,
    gpu_toleration,
)
from infra.program.serving import hydrator as weights_k8s

SERVING_PRIORITY_CLASS = "llm-fleet-serving"
HEALTH_PATH = "/health"
CONTAINER_NAME = "vllm"  # the chart's engine container
CONTAINER_PORT_NAME = "container-port"  # the chart's engine container port name
# Pulumi's SSA patch resources take ownership of fields another manager (Helm) may have set.
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"


# --- timings derived from the plan ---------------------------------------------------------------

def drain_timeout_s(spec: ServingSpec) -> int:
    """vLLM `--shutdown-timeout`: the requests in flight at SIGTERM finish within the plan's
    simulated e2e p99 (the rare longer one is cut, and the client retries)."""
    return math.ceil(spec.e2e_p99_s)


def termination_grace_s(spec: ServingSpec) -> int:
    """Above preStop + drain, so kubelet never SIGKILLs a pod that is still draining."""
    d = spec.defaults
    return d.endpoint_propagation_s + drain_timeout_s(spec) + d.termination_margin_s


# The chart renders `initialDelaySeconds: {{ .initialDelaySeconds | default 15 }}` (_helpers.tpl,
# chart.templateProbe): 0 is empty to Go templates and becomes 15. The smallest delay that
# renders as written is 1 s.
PROBE_INITIAL_DELAY_S = 1


def probes(spec: ServingSpec) -> dict[str, dict]:
    d = spec.defaults
    http = {"path": HEALTH_PATH, "port": d.vllm_container_port}
    startup_budget_s = d.startup_safety_factor * spec.expected_load_s
    return {
        # Liveness and readiness wait for this one: a 70B load never trips them.
        "startupProbe": {
            "httpGet": dict(http),
            "initialDelaySeconds": PROBE_INITIAL_DELAY_S,
            "periodSeconds": d.startup_probe_period_s,
            "timeoutSeconds": d.probe_timeout_s,
            "failureThreshold": math.ceil(startup_budget_s / d.startup_probe_period_s),
        },
        # /health turns 503 while vLLM drains, which takes the pod out of Envoy's endpoints.
        "readinessProbe": {
            "httpGet": dict(http),
            "initialDelaySeconds": PROBE_INITIAL_DELAY_S,
            "periodSeconds": d.readiness_period_s,
            "timeoutSeconds": d.probe_timeout_s,
            "failureThreshold": d.readiness_failure_threshold,
        },
        "livenessProbe": {
            "httpGet": dict(http),
            "initialDelaySeconds": PROBE_INITIAL_DELAY_S,
            "periodSeconds": d.liveness_period_s,
            "timeoutSeconds": d.probe_timeout_s,
            "failureThreshold": d.liveness_failure_threshold,
        },
    }


# --- chart values ------------------------------------------------------------------------------

def engine_args(spec: ServingSpec) -> list[str]:
    """Flags the chart has no value for, from the plan (and the drain window)."""
    v = spec.plan.vllm
    args = [
        "--served-model-name", spec.served_name,
        "--max-num-batched-tokens", str(v.max_num_batched_tokens),
        "--kv-cache-dtype", v.kv_cache_dtype,
    ]
    if v.quantization:
        args += ["--quantization", v.quantization]
    args += ["--shutdown-timeout", str(drain_timeout_s(spec))]
    return args


def pod_resources(spec: ServingSpec) -> dict[str, object]:
    """CPU and RAM in proportion to the GPUs the pod takes (requests = limits)."""
    inst, share = spec.instance, spec.defaults.host_share_fraction * spec.gpus_per_pod / spec.instance.gpu_count
    cpu = int(inst.vcpu * share)
    mem_gib = int(inst.ram_gib * share)
    return {
        "requestCPU": cpu,
        "limitCPU": str(cpu),
        "requestMemory": f"{mem_gib}Gi",
        "limitMemory": f"{mem_gib}Gi",
        "requestGPU": spec.gpus_per_pod,
    }


def wait_for_weights_init(spec: ServingSpec) -> dict:
    """The weights module's init container, in the chart's `initContainer` shape (the chart
    renders name/image/command/args/env/resources/extraVolumeMounts, and the engine's
    containerSecurityContext)."""
    c = weights_k8s.wait_for_weights_init_container(spec.hydrator)
    return {
        "name": c["name"],
        "image": c["image"],
        "command": c["command"],
        "args": c["args"],
        "resources": c["resources"],
        "extraVolumeMounts": c["volumeMounts"],
    }


# The engine's pod and container security contexts (the chart copies them with toYaml; the
# container one goes on the init container too).
POD_SECURITY_CONTEXT = {"seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "privileged": False,
                              "capabilities": {"drop": ["ALL"]}}
# The chart's example labels (values.yaml: servingEngineSpec.labels) land in the Deployment's
# immutable selector; a null deletes a default key in Helm's values merge. Our own labels would
# repeat the chart's app.kubernetes.io/* ones, so none are added there.
CHART_EXAMPLE_LABELS = ("environment", "release")


def vllm_stack_values(spec: ServingSpec) -> dict:
    d, v = spec.defaults, spec.plan.vllm
    img = image("vllm")
    model = {
        "name": spec.model_key,
        "repository": spec.image_repository("vllm"),
        "tag": img.tag + (f"@{img.digest}" if img.digest else ""),
        "modelURL": spec.model_dir,
        # The ScaledObject, rendered by the chart; then the Deployment has no `replicas`.
        "keda": keda_chart_values(spec),
        **pod_resources(spec),
        "shmSize": f"{d.shm_size_gib}Gi",
        "priorityClassName": SERVING_PRIORITY_CLASS,
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": k, "operator": "In", "values": [val]} for k, val in GPU_NODE_SELECTOR.items()
        ]}],
        "initContainer": wait_for_weights_init(spec),
        "extraVolumes": [weights_k8s.models_volume(spec.hydrator)],
        "extraVolumeMounts": [weights_k8s.models_volume_mount(read_only=True)],
        "env": [
            # Weights come from NVMe only; never reach for the Hugging Face Hub.
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        ],
        "vllmConfig": {
            "tensorParallelSize": v.tensor_parallel_size,
            "maxNumSeqs": v.max_num_seqs,
            "maxModelLen": v.max_model_len,
            "gpuMemoryUtilization": v.gpu_memory_utilization,
            "enablePrefixCaching": v.enable_prefix_caching,
            "enableChunkedPrefill": v.enable_chunked_prefill,
            "extraArgs": engine_args(spec),
        },
    }
    return {
        "servingEngineSpec": {
            "enableEngine": True,
            # No RuntimeClass: nvidia is containerd's default runtime on the AL2023 NVIDIA AMI
            # (gpu_plumbing.py). The chart's default "nvidia" exists only with the GPU Operator.
            "runtimeClassName": "",
            # Drop the chart's example labels (environment/release: test) from the selector.
            "labels": dict.fromkeys(CHART_EXAMPLE_LABELS),
            "securityContext": POD_SECURITY_CONTEXT,
            "containerSecurityContext": CONTAINER_SECURITY_CONTEXT,
            "containerPort": d.vllm_container_port,
            "servicePort": d.vllm_service_port,
            "imagePullPolicy": "IfNotPresent",  # the tag is pinned
            "tolerations": [gpu_toleration()],
            # A surge pod lands on a warm-pool node (it preempts a placeholder) instead of
            # waiting for a cold one; no serving replica is taken down first.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": max(1, spec.placeholders), "maxUnavailable": 0}},
            **probes(spec),
            "modelSpec": [model],
        },
        "routerSpec": {"enableRouter": False},
    }


# --- objects the chart does not render -----------------------------------------------------------

def serving_priority_class(spec: ServingSpec) -> dict:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": SERVING_PRIORITY_CLASS, "labels": common_labels("vllm")},
        "value": spec.defaults.serving_priority,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority",
        "description": "llm-fleet vLLM engines: preempt the warm-pool placeholders.",
    }


def pod_disruption_budget(spec: ServingSpec) -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": f"{spec.deployment_name}-pdb", "namespace": spec.namespace,
                     "labels": common_labels("vllm")},
        "spec": {
            # One engine at a time through node drains and node-group updates (max_unavailable
            # 1 on the GPU groups); the survivors absorb its share.
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(spec.vllm_pod_labels)},
            # A pod that never became ready (e.g. waiting for weights) must not block a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def zone_spread(spec: ServingSpec) -> list[dict]:
    """Even across AZs where nodes allow, never a reason to leave a replica pending: with
    DoNotSchedule (and minDomains = AZs) a lost AZ counts as a domain with no replicas, so no
    new replica could land anywhere (tests/serving/test_placement.py shows both)."""
    return [{
        "maxSkew": 1,
        "topologyKey": ZONE_KEY,
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": dict(spec.vllm_pod_labels)},
        # Spread each rollout revision on its own.
        "matchLabelKeys": ["pod-template-hash"],
    }]


def deployment_patch(spec: ServingSpec) -> dict:
    """Server-side-apply patch of the chart's Deployment: spread, token and drain."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.deployment_name,
            "namespace": spec.namespace,
            "annotations": {PATCH_FORCE_ANNOTATION: "true"},
        },
        "spec": {"template": {"spec": {
            "terminationGracePeriodSeconds": termination_grace_s(spec),
            # The engine calls no Kubernetes API (the chart has no value for this).
            "automountServiceAccountToken": False,
            "topologySpreadConstraints": zone_spread(spec),
            "containers": [{
                "name": CONTAINER_NAME,
                # Envoy stops sending new requests before SIGTERM starts vLLM's drain.
                "lifecycle": {"preStop": {"sleep": {"seconds": spec.defaults.endpoint_propagation_s}}},
            }],
        }}},
    }


# --- component ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VllmArgs:
    spec: ServingSpec
    # What the release waits for: the KEDA release (the ScaledObject's CRD) and Prometheus.
    release_after: tuple[pulumi.Resource, ...]


class VllmServing(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: VllmArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:VllmServing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = args.spec

        pc = serving_priority_class(spec)
        priority = k8s.scheduling.v1.PriorityClass(
            f"{name}-priority", metadata=pc["metadata"], value=pc["value"], global_default=pc["globalDefault"],
            preemption_policy=pc["preemptionPolicy"], description=pc["description"], opts=child,
        )
        self.release = kube.release(
            f"{name}-stack", chart("vllm-stack"), release_name=spec.defaults.vllm_release,
            namespace=spec.namespace, values=vllm_stack_values(spec), allow_null_values=True,
            # A 70B engine takes minutes to load; waiting here would also leave the spread and
            # drain patch unapplied for that long. The patch follows immediately instead, and
            # readiness is watched by the startup probe, the PDB and the alerts.
            atomic=False, skip_await=True,
            opts=kube.with_deps(child, [priority, *args.release_after]),
        )
        patch = deployment_patch(spec)
        self.patch = k8s.apps.v1.DeploymentPatch(
            f"{name}-spread-drain", metadata=patch["metadata"], spec=patch["spec"],
            opts=kube.with_deps(child, [self.release]),
        )
        pdb = pod_disruption_budget(spec)
        self.pdb = k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=pdb["metadata"], spec=pdb["spec"], opts=child)
        self.register_outputs({
            "deployment": spec.deployment_name,
            "service": spec.engine_service_name,
            "gpus_per_pod": spec.gpus_per_pod,
        })
