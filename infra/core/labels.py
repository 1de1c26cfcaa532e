"""Label, annotation and tag keys, and the GPU taint: read by whatever sets them (node groups,
components) and by whatever selects, tolerates or reads them (serving, the hydrator, the cost
model and the policies). One prefix for Kubernetes keys, one for AWS tags."""
from __future__ import annotations

PROJECT = "llm-fleet"  # the base Pulumi project (root Pulumi.yaml) and our config namespace
WORKLOADS_PROJECT = f"{PROJECT}-workloads"  # the in-cluster Pulumi project (workloads/Pulumi.yaml)
PROJECTS = (PROJECT, WORKLOADS_PROJECT)  # in deploy order (destroy runs them backwards)
# The environment's one public hostname (global/Pulumi.yaml): Route 53 records over every region
# stack's gateway; one stack per environment (stacks/<env>.yaml), named after it.
GLOBAL_PROJECT = f"{PROJECT}-global"
K8S_PREFIX = f"{PROJECT}/"  # Kubernetes label and annotation keys we own
TAG_PREFIX = f"{PROJECT}:"  # AWS tag keys we own (':' as AWS's own aws:* tags do)


def k8s_key(name: str) -> str:
    return K8S_PREFIX + name


def tag_key(name: str) -> str:
    return TAG_PREFIX + name


# Node labels set by the node groups.
ROLE_LABEL = k8s_key("role")
AZ_LABEL = k8s_key("az")
GPU_LABEL = k8s_key("gpu")
CAPACITY_TYPE_LABEL = k8s_key("capacity-type")
GPU_NODE_LABELS = {ROLE_LABEL: "gpu"}
SYSTEM_NODE_LABELS = {ROLE_LABEL: "system"}
ZONE_LABEL = "topology.kubernetes.io/zone"  # set by kubelet/the cloud provider on every node
# The Cluster Autoscaler's GPU node label on AWS: a node carrying it counts as GPU-ready only
# once the device plugin advertises its GPUs, so no extra node is bought while drivers load
# (cluster-autoscaler cloudprovider/aws/aws_cloud_provider.go GPULabel). Value: the GPU type.
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
# Labels that differ between the otherwise identical per-AZ GPU node groups (ours, and the one
# EKS adds to nodes of a group with a custom launch template): the autoscaler's
# balance-similar-node-groups must ignore them (--balancing-ignore-label).
EKS_LAUNCH_TEMPLATE_LABELS = ("eks.amazonaws.com/sourceLaunchTemplateId", "eks.amazonaws.com/sourceLaunchTemplateVersion")

# The benchmark: an in-cluster load-test Job runs in its own namespace and authenticates as
# this tenant (the JWT tenant claim), which has its own rate-limit bucket at the gateway.
BENCH_NAMESPACE = f"{PROJECT}-bench"
BENCH_TENANT = f"{PROJECT}-bench"

# Annotations on the hydrator's objects.
MODEL_ANNOTATION = k8s_key("model")
REVISION_ANNOTATION = k8s_key("revision")

# AWS tags.
STACK_TAG = tag_key("stack")
AZ_TAG = tag_key("az")
REVISION_STATE_TAG = tag_key("revision-state")
REQUIRED_TAGS = ("environment", "cost-center", "owner")

# The NVIDIA device plugin's resource name, also the key of the GPU nodes' NoSchedule taint.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"  # Kubernetes spelling; the EKS API spells it NO_SCHEDULE
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}


def gpu_taint_eks() -> dict[str, str]:
    """The GPU taint as an EKS node group declares it."""
    return {"key": GPU_RESOURCE, "value": GPU_TAINT_VALUE, "effect": EKS_TAINT_EFFECT[GPU_TAINT_EFFECT]}


def gpu_toleration() -> dict[str, str]:
    """The toleration that matches the GPU taint exactly."""
    return {"key": GPU_RESOURCE, "operator": "Equal", "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}


def common_labels(component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels on every object we render."""
    return {
        "app.kubernetes.io/part-of": PROJECT,
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/component": component,
    }


# The rollout's bench gate (infra/core/bench/job.py): its own namespace, and its own tenant (the
# JWT tenant claim the gateway rate-limits in a bucket of its own).
BENCH_NAMESPACE = "llm-fleet-bench"
BENCH_TENANT = "llm-fleet-bench"
