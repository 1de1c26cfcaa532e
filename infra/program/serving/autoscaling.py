"""Autoscaling: KEDA scales vLLM replicas on queue depth; the Cluster Autoscaler adds GPU nodes.

Pods: a ScaledObject on the vLLM Deployment with a Prometheus trigger on
`sum(vllm:num_requests_waiting{model_name="<served name>"})` and an AverageValue target of the
plan's `keda_queue_threshold` waiting requests per replica, between the plan's baseline and
burst replica counts. (The chart's own KEDA block filters on label `model`, which vLLM does
not set.) Scale-up is immediate and may add a warm pool's worth of replicas per minute;
scale-down waits 15 minutes and removes one replica per 5 minutes, because a replica costs
minutes to bring back. If Prometheus cannot answer, KEDA's fallback keeps the current replicas
(never scales down on missing data) and brings the fleet to at least the baseline.

Nodes: the Cluster Autoscaler follows pending GPU pods. It discovers the per-AZ managed node
groups by the tags EKS puts on their Auto Scaling groups, balances similar groups (one per AZ,
so scale-ups stay spread) and expands with least-waste. Its IAM role is assumed through EKS Pod
Identity (trust pinned to this account and cluster) and may only change the desired capacity
of, or terminate instances in, Auto Scaling groups tagged as owned by this cluster. That role
and its association are AWS resources, so they live in the base project
(`identities.ClusterAutoscalerIdentity`); this component only installs the chart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi

from infra.core.catalog.charts import chart, image
from infra.core.labels import AZ_LABEL
from infra.program.components.common import AwsContext, policy_json
from infra.program.serving import kube
from infra.core.metrics import queue_depth
from infra.program.serving.spec import SYSTEM_NODE_SELECTOR, ServingSpec, common_labels
from infra.program.serving.vllm import expected_load_s

PROMETHEUS_SERVICE = "prometheus-operated"  # created by the Prometheus operator for every Prometheus
PROMETHEUS_PORT = 9090
# Node-group labels that differ between otherwise identical per-AZ groups.
BALANCING_IGNORED_LABELS = (AZ_LABEL,)


def prometheus_address(spec: ServingSpec) -> str:
    return f"http://{PROMETHEUS_SERVICE}.{spec.defaults.monitoring_namespace}.svc:{PROMETHEUS_PORT}"


# --- KEDA ----------------------------------------------------------------------------------------

def keda_values(spec: ServingSpec) -> dict:
    return {"nodeSelector": dict(SYSTEM_NODE_SELECTOR)}


def hpa_behavior(spec: ServingSpec) -> dict:
    d = spec.defaults
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                # At least the warm pool at once (those replicas start in ~a minute) ...
                {"type": "Pods", "value": max(1, spec.placeholders), "periodSeconds": d.scale_up_period_s},
                # ... or doubling, whichever is more.
                {"type": "Percent", "value": 100, "periodSeconds": d.scale_up_period_s},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": d.scale_down_stabilization_s,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": d.scale_down_period_s}],
        },
    }


def scaled_object(spec: ServingSpec) -> dict:
    d, plan = spec.defaults, spec.plan
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": spec.deployment_name, "namespace": spec.namespace, "labels": common_labels("autoscaling")},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.deployment_name},
            "minReplicaCount": spec.replicas_min,
            "maxReplicaCount": spec.replicas_max,
            "pollingInterval": d.keda_polling_interval_s,
            "cooldownPeriod": d.keda_cooldown_s,
            # Do not judge a fresh fleet before its engines could have loaded.
            "initialCooldownPeriod": math.ceil(expected_load_s(spec)),
            "fallback": {
                "failureThreshold": d.keda_fallback_failure_threshold,
                "replicas": spec.replicas_min,
                "behavior": "currentReplicasIfHigher",
            },
            "advanced": {
                "restoreToOriginalReplicaCount": False,
                "horizontalPodAutoscalerConfig": {"name": f"{spec.deployment_name}-keda",
                                                  "behavior": hpa_behavior(spec)},
            },
            "triggers": [{
                "type": "prometheus",
                "name": "queue-depth",
                # desired replicas = ceil(sum waiting / threshold)
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": prometheus_address(spec),
                    "query": queue_depth(spec.served_name),
                    "threshold": str(plan.keda_queue_threshold),
                    "activationThreshold": "0",
                    # No series (no engine reporting) is an error, so the fallback applies.
                    "ignoreNullValues": "false",
                },
            }],
        },
    }


# --- Cluster Autoscaler --------------------------------------------------------------------------

def cluster_autoscaler_values(spec: ServingSpec, cluster_name: str) -> dict:
    d, cfg = spec.defaults, spec.config
    img = image("cluster-autoscaler")
    return {
        "cloudProvider": "aws",
        "awsRegion": cfg.region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"repository": img.repository, "tag": img.tag_for_kubernetes(cfg.cluster.kubernetes_version)},
        "rbac": {"serviceAccount": {"create": True, "name": d.autoscaler_service_account}},
        "nodeSelector": dict(SYSTEM_NODE_SELECTOR),
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"cpu": "500m", "memory": "600Mi"}},
        "extraArgs": {
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            **{f"balancing-ignore-label_{i + 1}": label for i, label in enumerate(BALANCING_IGNORED_LABELS)},
            "expendable-pods-priority-cutoff": d.ca_expendable_pods_priority_cutoff,
            "scan-interval": d.ca_scan_interval,
            "scale-down-unneeded-time": d.ca_scale_down_unneeded_time,
            "scale-down-delay-after-add": d.ca_scale_down_delay_after_add,
            "max-node-provision-time": d.ca_max_node_provision_time,
            # vLLM's /dev/shm is an emptyDir; it must not pin a GPU node forever.
            "skip-nodes-with-local-storage": False,
        },
    }


def autoscaler_policy(ctx: AwsContext, cluster_name: str) -> str:
    """Least privilege for the AWS provider of the Cluster Autoscaler (no `*` action)."""
    return policy_json([
        {
            # Describe calls have no resource-level permissions. (The autoscaler's README also
            # lists ec2:GetInstanceTypesFromInstanceRequirements: only for groups that select
            # instance types by attributes; our managed node groups name theirs.)
            "Sid": "DescribeScalingState",
            "Effect": "Allow",
            "Action": [
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeLaunchConfigurations",
                "autoscaling:DescribeScalingActivities",
                "autoscaling:DescribeTags",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions",
            ],
            "Resource": "*",
        },
        {
            "Sid": "ScaleThisClustersGroups",
            "Effect": "Allow",
            "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
            "Resource": ctx.arn("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*"),
            # EKS tags every managed node group's ASG with this key.
            "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}},
        },
        {
            # Labels and taints of node groups (templates for scale-from-zero decisions).
            "Sid": "DescribeThisClustersNodegroups",
            "Effect": "Allow",
            "Action": ["eks:DescribeNodegroup"],
            "Resource": ctx.arn("eks", f"nodegroup/{cluster_name}/*/*"),
        },
    ])


# --- component -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AutoscalingArgs:
    spec: ServingSpec
    cluster_name: pulumi.Input[str]


class Autoscaling(pulumi.ComponentResource):
    def __init__(self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions,
                 *, scale_target: pulumi.Resource | None = None) -> None:
        super().__init__("llm-fleet:serving:Autoscaling", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec, d = args.spec, args.spec.defaults

        self.keda = kube.release(
            f"{name}-keda", chart("keda"), release_name="keda", namespace=d.keda_namespace,
            values=keda_values(spec), opts=child,
        )
        deps: list[pulumi.Resource] = [self.keda] + ([scale_target] if scale_target is not None else [])
        self.scaled_object = kube.custom_resource(f"{name}-scaledobject", scaled_object(spec), kube.with_deps(child, deps))

        cluster_name = pulumi.Output.from_input(args.cluster_name)
        # The service account's Pod Identity association is created by the base project, which
        # `deploy` finishes before this project starts.
        self.cluster_autoscaler = kube.release(
            f"{name}-cluster-autoscaler", chart("cluster-autoscaler"), release_name="cluster-autoscaler",
            namespace=d.autoscaler_namespace,
            values=cluster_name.apply(lambda n: cluster_autoscaler_values(spec, n)),
            opts=child,
        )
        self.register_outputs({
            "min_replicas": spec.replicas_min,
            "max_replicas": spec.replicas_max,
            "queue_threshold": spec.plan.keda_queue_threshold,
        })
