"""The warm pool, sized per AZ by the plan (`warm_spares_per_az`).

Two tiers:

  node level  the GPU node groups' EKS warm pool (infra/program/components/gpu_node_group.py, not
              this file): the burst headroom pre-initialised and STOPPED (EBS cost only), so
              a burst node skips EC2 launch and AMI boot and only refills its NVMe cache.
  pod level   this file: placeholder pods at a negative priority, each asking for a whole
              node's GPUs, `warm_spares_per_az x azs` of them spread one per AZ group. They make
              the Cluster Autoscaler keep that many GPU nodes in service, where the hydrator has
              already put the weights on NVMe and the engine image is already pulled (the
              placeholder runs the vLLM image). A scale-up preempts a placeholder and pays only
              the local model load; the evicted placeholder goes pending and the autoscaler
              replaces the node behind it.

Each placeholder starts with the weights module's wait-for-weights init container, so a
placeholder is Running exactly when its node is warm (`kubectl get pods -l
app.kubernetes.io/component=warm-pool`).

`time_to_serve` and `warm_pool_cost` are the numbers behind docs/serving.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import pulumi
import pulumi_kubernetes as k8s

from infra.core.catalog import HOURS_PER_MONTH
from infra.core.catalog.charts import image
from infra.core.catalog.prices import load_price_book
from infra.program.serving import kube
from infra.program.serving.spec import (
    GPU_NODE_SELECTOR,
    ZONE_KEY,
    ServingSpec,
    common_labels,
    gpu_toleration,
)
from infra.core.labels import GPU_RESOURCE
from infra.core.sizing import time_to_serve as ttsmodel
from infra.program.serving import hydrator as weights_k8s

PLACEHOLDER_PRIORITY_CLASS = "llm-fleet-warm-placeholder"
PLACEHOLDER_NAME = "gpu-warm-placeholder"
NOBODY_UID = 65534


def placeholder_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": PLACEHOLDER_NAME, **common_labels("warm-pool")}


def placeholder_priority_class(spec: ServingSpec) -> dict:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": PLACEHOLDER_PRIORITY_CLASS, "labels": common_labels("warm-pool")},
        "value": spec.defaults.placeholder_priority,
        "globalDefault": False,
        # Placeholders hold capacity; they never take it from anyone.
        "preemptionPolicy": "Never",
        "description": "llm-fleet warm GPU nodes: preempted by any serving pod.",
    }


def placeholder_deployment(spec: ServingSpec) -> dict:
    labels = placeholder_labels()
    selector = {"app.kubernetes.io/name": PLACEHOLDER_NAME}
    hydrator = spec.hydrator
    gpus = spec.plan.gpus_per_node  # a whole node, whatever the TP
    security = {
        "runAsNonRoot": True, "runAsUser": NOBODY_UID, "runAsGroup": NOBODY_UID,
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": PLACEHOLDER_NAME, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "replicas": spec.placeholders,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": PLACEHOLDER_PRIORITY_CLASS,
                    # Preemption should be instant: nothing runs here worth a grace period.
                    "terminationGracePeriodSeconds": 0,
                    "automountServiceAccountToken": False,
                    "nodeSelector": dict(GPU_NODE_SELECTOR),
                    "tolerations": [gpu_toleration()],
                    # Soft, as the engines' (vllm.zone_spread): with an AZ lost, spares stay in the others.
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": ZONE_KEY,
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": selector},
                    }],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": [weights_k8s.wait_for_weights_init_container(hydrator)],
                    "containers": [{
                        "name": "hold",
                        # The engine image: holding the node also keeps the image pulled on it.
                        "image": image("vllm").ref,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sleep", "infinity"],
                        "resources": {
                            "requests": {GPU_RESOURCE: gpus, "cpu": "10m", "memory": "32Mi"},
                            "limits": {GPU_RESOURCE: gpus, "cpu": "100m", "memory": "64Mi"},
                        },
                        "securityContext": security,
                    }],
                    "volumes": [weights_k8s.models_volume(hydrator)],
                },
            },
        },
    }


# --- the numbers behind docs/serving.md ------------------------------------------------------------

def time_to_serve(spec: ServingSpec) -> dict[str, dict[str, float]]:
    """Seconds per step from "the queue grows" to "a new replica is ready", for each path
    (the model and its assumptions: infra/core/sizing/time_to_serve.py)."""
    return ttsmodel.time_to_serve(spec.checkpoint_gib)


total_s = ttsmodel.total_s


def warm_pool_cost(spec: ServingSpec) -> dict[str, Decimal]:
    """Monthly cost of both tiers at the plan's prices.

    Placeholders: `warm_spares_per_az x azs` nodes in service at the node price (the plan
    already counts them in nodes_per_az.min and usd_per_hour_baseline). The node tier: the
    STOPPED warm pool holding the burst headroom bills only its EBS root volumes.
    """
    plan = spec.plan
    cent = Decimal("0.01")
    nodes = Decimal(spec.placeholders)
    node_hour = Decimal(str(plan.cost.usd_per_node_hour))
    pool_instances = Decimal(max(plan.warm_spares_per_az, plan.nodes_per_az.max - plan.nodes_per_az.min) * plan.azs)
    gp3 = load_price_book().require_service(plan.region, "ebs_gp3_usd_per_gb_month").usd
    disk_gb = Decimal(spec.config.gpu_nodes.root_volume_gib)
    return {
        "nodes": nodes,
        "usd_per_node_hour": node_hour,
        "usd_per_month_placeholders": (nodes * node_hour * HOURS_PER_MONTH).quantize(cent, ROUND_HALF_UP),
        "stopped_pool_instances": pool_instances,
        "usd_per_month_stopped_pool": (pool_instances * disk_gb * gp3).quantize(cent, ROUND_HALF_UP),
    }


# --- component ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class WarmPoolArgs:
    spec: ServingSpec


class WarmPool(pulumi.ComponentResource):
    def __init__(self, name: str, args: WarmPoolArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:WarmPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = args.spec
        pc = placeholder_priority_class(spec)
        self.priority_class = k8s.scheduling.v1.PriorityClass(
            f"{name}-priority", metadata=pc["metadata"], value=pc["value"], global_default=pc["globalDefault"],
            preemption_policy=pc["preemptionPolicy"], description=pc["description"], opts=child,
        )
        dep = placeholder_deployment(spec)
        self.placeholders = k8s.apps.v1.Deployment(
            f"{name}-placeholders",
            # Ready only once the autoscaler has added and the hydrator filled the nodes.
            metadata=kube.skip_await(dep["metadata"]), spec=dep["spec"],
            opts=kube.with_deps(child, [self.priority_class]),
        )
        cost = warm_pool_cost(spec)
        self.register_outputs({
            "placeholders": spec.placeholders,
            "placeholders_per_az": spec.plan.warm_spares_per_az,
            "usd_per_month_placeholders": str(cost["usd_per_month_placeholders"]),
            "usd_per_month_stopped_pool": str(cost["usd_per_month_stopped_pool"]),
        })
