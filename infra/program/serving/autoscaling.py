"""Autoscaling: KEDA scales vLLM replicas on requests in flight; the Cluster Autoscaler adds GPU nodes.

Pods: a ScaledObject on the vLLM Deployment rendered from the plan's control block
(`plan.control`, the block the fleet simulator ran): its Prometheus query (running + waiting
requests, `infra/core/metrics.py`), AverageValue threshold per replica, polling interval,
min/max replicas and HPA behaviour (scale-up at once by the warm spares or 100 % per period,
scale-down after a long window one replica per period). If Prometheus cannot answer, KEDA's
fallback keeps the current replicas (never scales down on missing data) and brings the fleet to
at least the baseline.

One owner of the replica count: the HPA, through the vllm-stack chart's KEDA integration. The
chart renders `replicas` in the engine Deployment unless `modelSpec.keda.enabled`
(templates/deployment-vllm-multi.yaml: `{{- if not (and $modelSpec.keda $modelSpec.keda.enabled)
}} replicas: ...`), and Helm's three-way merge would write that count back on every upgrade,
during a burst too. So the ScaledObject below is handed to the chart as `modelSpec.keda`
(`keda_chart_values`; templates/scaledobject-vllm.yaml copies each key, with our trigger
instead of its default on `vllm:num_requests_waiting{model=...}`, a label vLLM does not set), and
the chart renders it with the Deployment, without `replicas`. (The chart's values.schema.json
types `keda.triggers` as an object, but its .helmignore leaves that file out of the package, so
Helm does not validate against it.) tests/serving/test_charts.py renders the chart with Helm's
library and compares.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.core.catalog.charts import chart, image
from infra.core.labels import AZ_LABEL, EKS_LAUNCH_TEMPLATE_LABELS
from infra.program.components.common import AwsContext, policy_json
from infra.program.serving import kube
from infra.program.serving.spec import SYSTEM_NODE_SELECTOR, ServingSpec, common_labels

ASSOCIATION_ANNOTATION = "llm-fleet/pod-identity-association"
CREDENTIALS_CHECK = "cluster-autoscaler-credentials"
# Run in the hydrator image (Python + boto3, already pinned and pulled): fail unless EKS injected
# Pod Identity credentials and they are the autoscaler role's.
CREDENTIALS_CHECK_SCRIPT = """\
import os, sys
import boto3
if "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in os.environ:
    sys.exit("no EKS Pod Identity credentials injected: the association is not effective yet")
arn = boto3.client("sts").get_caller_identity()["Arn"]
if ":assumed-role/" + os.environ["EXPECTED_ROLE"] + "/" not in arn:
    sys.exit("credentials are " + arn + ", not the role " + os.environ["EXPECTED_ROLE"])
print("pod identity effective:", arn)
"""
PROMETHEUS_SERVICE = "prometheus-operated"  # created by the Prometheus operator for every Prometheus
PROMETHEUS_PORT = 9090
# Node-group labels that differ between otherwise identical per-AZ groups: ours, and the launch
# template labels EKS puts on nodes of groups with custom (per-AZ) templates.
BALANCING_IGNORED_LABELS = (AZ_LABEL, *EKS_LAUNCH_TEMPLATE_LABELS)


def prometheus_address(spec: ServingSpec) -> str:
    return f"http://{PROMETHEUS_SERVICE}.{spec.defaults.monitoring_namespace}.svc:{PROMETHEUS_PORT}"


# --- KEDA ----------------------------------------------------------------------------------------

def keda_values(spec: ServingSpec) -> dict:
    return {"nodeSelector": dict(SYSTEM_NODE_SELECTOR)}


def hpa_behavior(spec: ServingSpec) -> dict:
    """autoscaling/v2 `behavior` from the control block."""
    h = spec.plan.control.hpa
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": h.scale_up_stabilization_s,
            "selectPolicy": "Max",
            "policies": [
                # At least the warm spares' replicas at once (they start in minutes) ...
                {"type": "Pods", "value": h.scale_up_pods, "periodSeconds": h.scale_up_period_s},
                # ... or doubling, whichever is more.
                {"type": "Percent", "value": h.scale_up_percent, "periodSeconds": h.scale_up_period_s},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": h.scale_down_stabilization_s,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": h.scale_down_pods, "periodSeconds": h.scale_down_period_s}],
        },
    }


def scaled_object(spec: ServingSpec) -> dict:
    d, control = spec.defaults, spec.plan.control
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        # As the chart names it ("{{ .Release.Name }}-{{$modelSpec.name}}-scaledobject").
        "metadata": {"name": spec.scaled_object_name, "namespace": spec.namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.deployment_name},
            "minReplicaCount": control.min_replicas,
            "maxReplicaCount": control.max_replicas,
            "pollingInterval": control.polling_interval_s,
            "cooldownPeriod": d.keda_cooldown_s,
            # Do not judge a fresh fleet before its engines could have loaded.
            "initialCooldownPeriod": math.ceil(spec.expected_load_s),
            "fallback": {
                "failureThreshold": d.keda_fallback_failure_threshold,
                "replicas": control.min_replicas,
                "behavior": "currentReplicasIfHigher",
            },
            "advanced": {
                "restoreToOriginalReplicaCount": False,
                "horizontalPodAutoscalerConfig": {"name": f"{spec.deployment_name}-keda",
                                                  "behavior": hpa_behavior(spec)},
            },
            "triggers": [{
                "type": "prometheus",
                "name": "in-flight",
                # desired replicas = ceil(sum of running + waiting / threshold)
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": prometheus_address(spec),
                    "query": control.scale_query,
                    "threshold": str(control.scale_threshold_per_replica),
                    "activationThreshold": "0",
                    # No series (no engine reporting) is an error, so the fallback applies.
                    "ignoreNullValues": "false",
                },
            }],
        },
    }


def keda_chart_values(spec: ServingSpec) -> dict:
    """vllm-stack's `modelSpec.keda`: the ScaledObject's spec, which the chart renders."""
    so = scaled_object(spec)["spec"]
    return {"enabled": True, **{k: v for k, v in so.items() if k != "scaleTargetRef"}}


# --- Cluster Autoscaler --------------------------------------------------------------------------

def credentials_check_job(spec: ServingSpec, role_name: str, association_id: str) -> dict:
    """The Job that proves the autoscaler's Pod Identity association effective (module doc)."""
    d = spec.defaults
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": CREDENTIALS_CHECK, "namespace": d.autoscaler_namespace,
                     "labels": common_labels("autoscaling")},
        "spec": {
            "backoffLimit": d.ca_credentials_check_attempts,
            "activeDeadlineSeconds": d.ca_credentials_check_deadline_s,
            "template": {
                "metadata": {"labels": common_labels("autoscaling"),
                             "annotations": {ASSOCIATION_ANNOTATION: association_id}},
                "spec": {
                    "serviceAccountName": d.autoscaler_service_account,
                    "restartPolicy": "Never",  # every attempt a new pod, admitted afresh
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "nodeSelector": dict(SYSTEM_NODE_SELECTOR),
                    "containers": [{
                        "name": "check",
                        "image": spec.hydrator.image,
                        "command": ["python", "-c", CREDENTIALS_CHECK_SCRIPT],
                        "env": [{"name": "EXPECTED_ROLE", "value": role_name},
                                {"name": "AWS_REGION", "value": spec.config.region},
                                {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
                        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                      "limits": {"cpu": "200m", "memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "runAsUser": 10001,
                                            "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                    }],
                },
            },
        },
    }


def cluster_autoscaler_values(spec: ServingSpec, cluster_name: str, association_id: str) -> dict:
    d, cfg = spec.defaults, spec.config
    img = image("cluster-autoscaler")
    return {
        "cloudProvider": "aws",
        "awsRegion": cfg.region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"repository": spec.image_repository("cluster-autoscaler"),
                  "tag": img.tag_for_kubernetes(cfg.cluster.kubernetes_version)},
        # The service account is ours: it exists before the credentials check runs as it.
        "rbac": {"serviceAccount": {"create": False, "name": d.autoscaler_service_account}},
        # A replaced association rolls the pods (credentials are injected at admission only).
        "podAnnotations": {ASSOCIATION_ANNOTATION: association_id},
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
    # The base project's ClusterAutoscalerIdentity (read through the StackReference).
    autoscaler_role_arn: pulumi.Input[str]
    autoscaler_association_id: pulumi.Input[str]


class Autoscaling(pulumi.ComponentResource):
    def __init__(self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:Autoscaling", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec, d = args.spec, args.spec.defaults

        # KEDA and its CRDs: the vllm-stack release, which renders the ScaledObject, waits for it.
        self.keda = kube.release(
            f"{name}-keda", chart("keda"), release_name="keda", namespace=d.keda_namespace,
            values=keda_values(spec), opts=child,
        )

        cluster_name = pulumi.Output.from_input(args.cluster_name)
        # The role and its Pod Identity association are the base project's (identities.py),
        # which `deploy` finishes before this project starts.
        self.autoscaler_service_account = k8s.core.v1.ServiceAccount(
            f"{name}-ca-sa", metadata={"name": d.autoscaler_service_account, "namespace": d.autoscaler_namespace,
                                       "labels": common_labels("autoscaling")},
            opts=child,
        )
        job = pulumi.Output.all(args.autoscaler_role_arn, args.autoscaler_association_id).apply(
            lambda v: credentials_check_job(spec, v[0].rsplit("/", 1)[-1], v[1]))
        # `pulumi up` waits for the Job to succeed (pulumi-kubernetes awaits Jobs).
        self.credentials_check = k8s.batch.v1.Job(
            f"{name}-ca-credentials", metadata=job["metadata"], spec=job["spec"],
            opts=kube.with_deps(child, [self.autoscaler_service_account]),
        )
        self.cluster_autoscaler = kube.release(
            f"{name}-cluster-autoscaler", chart("cluster-autoscaler"), release_name="cluster-autoscaler",
            namespace=d.autoscaler_namespace,
            values=pulumi.Output.all(cluster_name, args.autoscaler_association_id).apply(
                lambda v: cluster_autoscaler_values(spec, v[0], v[1])),
            opts=kube.with_deps(child, [self.credentials_check]),
        )
        self.register_outputs({
            "min_replicas": spec.replicas_min,
            "max_replicas": spec.replicas_max,
            "scale_threshold_per_replica": spec.plan.control.scale_threshold_per_replica,
        })
