"""Kubernetes manifests for the in-cluster weights tier, as plain dicts (no pulumi import).

On every GPU node a DaemonSet pod hydrates the configured model revision from S3 into the
node's instance-store RAID0 (nodeadm mounts it under /mnt/k8s-disks/), using the weights
store's read-only role through its service account:

  init container `hydrate`  runs `python -m infra weights hydrate ...`; a failure (S3 down,
                            checksum mismatch) exits non-zero and kubelet retries it with
                            back-off; each retry resumes, re-fetching nothing already verified.
  container `hold`          idles so the pod stays Running; its readiness probe is the marker
                            file, so `kubectl get ds` shows on which nodes the weights are ready.

vLLM pods mount the same host directory read-only and start with an init container
(`wait_for_weights_init_container`) that blocks until the same marker exists. The marker path
comes from `infra.core.weights_layout.MARKER_NAME` and the paths below, one fact in one place.

A node reboot re-runs the pod's init containers: a wiped instance store is re-hydrated, an
intact one is confirmed from the marker in seconds.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Mapping

from infra.core import patterns
from infra.core.errors import InputError
from infra.core.labels import GPU_NODE_LABELS, GPU_RESOURCE, MODEL_ANNOTATION, PROJECT, REVISION_ANNOTATION
from infra.core.weights_layout import MARKER_NAME, validate_model_name, validate_revision

# GPU nodes are tainted nvidia.com/gpu=true:NoSchedule (infra.core.labels); tolerate
# the key whatever its value.
GPU_TAINT_KEY = GPU_RESOURCE
CONTAINER_MODELS_DIR = "/models"
MODELS_VOLUME = "models"
IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
# The weights command alone (infra/cli/weights.py main): the image has no pulumi for the rest.
ENTRYPOINT = ("python", "-m", "infra.cli.weights")

_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r":([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def check_pinned_image(image: str) -> str:
    """An image reference pinned by digest, or by a tag that is not `latest`."""
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise InputError("image", image, "a container image reference")
    if "@" in image:
        if _DIGEST_RE.search(image) and image.count("@") == 1:
            return image
        raise InputError("image", image, "a digest of the form @sha256:<64 lowercase hex>")
    last = image.rsplit("/", 1)[-1]
    match = _TAG_RE.search(last)
    if not match:
        raise InputError("image", image, "an image pinned by tag or digest "
                         "(e.g. registry/llm-fleet-hydrator:0.1.0 or ...@sha256:<64 hex>)")
    if match.group(1) == "latest":
        raise InputError("image", image, "a pinned tag or digest; 'latest' moves under you")
    return image


@dataclass(frozen=True)
class HydratorParams:
    """What the in-cluster hydrator needs; the weights component fills it from stack config."""

    image: str  # pinned hydrator image (see Dockerfile)
    bucket: str  # the WeightStore bucket
    model: str  # e.g. "meta-llama/Llama-3.1-8B-Instruct"
    revision: str  # immutable revision uploaded with `weights upload`
    region: str  # region of the bucket
    # From llm-fleet:weights (infra/core/config.py WeightsConfig holds the defaults).
    host_models_dir: str  # on the node's RAID0 mount: <nvme_mount_path>/models
    namespace: str
    service_account_name: str  # bound to the WeightStore's read-only role (PodIdentityAssociation)
    name: str = "weights-hydrator"  # DaemonSet name
    concurrency: int = 16  # parallel GET streams per node
    part_size_mib: int = 64  # ranged-download part size
    wait_timeout_s: int = 3600  # how long a vLLM pod's init container waits per attempt
    node_selector: Mapping[str, str] = field(default_factory=lambda: dict(GPU_NODE_LABELS))
    priority_class_name: str | None = None
    hydrate_cpu_request: str = "2"
    hydrate_cpu_limit: str = "8"
    hydrate_memory_request: str = "1Gi"
    hydrate_memory_limit: str = "4Gi"

    def __post_init__(self) -> None:
        check_pinned_image(self.image)
        validate_model_name(self.model, "model")
        validate_revision(self.revision, "revision")
        for fld in ("namespace", "service_account_name", "name"):
            value = getattr(self, fld)
            if not patterns.matches(patterns.DNS_LABEL, value):
                raise InputError(fld, value, "a DNS label: lowercase letters, digits and '-', at most 63")
        if not patterns.matches(patterns.BUCKET, self.bucket):
            raise InputError("bucket", self.bucket, "an S3 bucket name")
        if not patterns.matches(patterns.REGION, self.region):
            raise InputError("region", self.region, "an AWS region such as us-east-1")
        if not posixpath.isabs(self.host_models_dir) or posixpath.normpath(self.host_models_dir) != self.host_models_dir:
            raise InputError("host_models_dir", self.host_models_dir, "a normalised absolute path")
        if not self.host_models_dir.startswith("/mnt/") or self.host_models_dir.count("/") < 3:
            # A root-writable hostPath: keep it off system directories. nodeadm mounts the
            # instance-store RAID0 at /mnt/k8s-disks/0 (config weights.nvme_mount_path).
            raise InputError("host_models_dir", self.host_models_dir,
                             "a directory below a mount under /mnt/, e.g. /mnt/k8s-disks/0/models")
        if not 1 <= self.concurrency <= 256:
            raise InputError("concurrency", self.concurrency, "an integer from 1 to 256")
        if not 1 <= self.part_size_mib <= 1024:
            raise InputError("part_size_mib", self.part_size_mib, "an integer from 1 to 1024")
        if self.wait_timeout_s < 1:
            raise InputError("wait_timeout_s", self.wait_timeout_s, "1 second or more")


def container_model_dir(params: HydratorParams) -> str:
    """Where the model lives inside pods that mount the models volume at CONTAINER_MODELS_DIR;
    this is also the path vLLM is started with (`--model`)."""
    return posixpath.join(CONTAINER_MODELS_DIR, params.model, params.revision)


def host_model_dir(params: HydratorParams) -> str:
    return posixpath.join(params.host_models_dir, params.model, params.revision)


def container_marker_path(params: HydratorParams) -> str:
    return posixpath.join(container_model_dir(params), MARKER_NAME)


APP_NAME = "weights-hydrator"  # the hydrator pods' app.kubernetes.io/name (NetworkPolicies select it)


def _labels(params: HydratorParams) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": params.name,
        "app.kubernetes.io/part-of": PROJECT,
        "app.kubernetes.io/component": "weights",
    }


def models_volume(params: HydratorParams) -> dict:
    """The node's models directory. DirectoryOrCreate: kubelet makes it (root, 0755) if the
    hydrator has not yet, so neither pod's mount fails on a fresh node."""
    return {"name": MODELS_VOLUME,
            "hostPath": {"path": params.host_models_dir, "type": "DirectoryOrCreate"}}


def models_volume_mount(read_only: bool) -> dict:
    return {"name": MODELS_VOLUME, "mountPath": CONTAINER_MODELS_DIR, "readOnly": read_only}


def _restricted_security_context(run_as_root: bool) -> dict:
    ctx: dict = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_root:
        # hostPath volumes ignore fsGroup and kubelet creates them root-owned, so writing the
        # models directory needs uid 0. With every capability dropped, root can write only
        # what root owns (no CAP_DAC_OVERRIDE, CAP_CHOWN, ...).
        ctx.update(runAsUser=0, runAsGroup=0, runAsNonRoot=False)
    else:
        ctx.update(runAsUser=10001, runAsGroup=10001, runAsNonRoot=True)
    return ctx


def hydrate_args(params: HydratorParams) -> list[str]:
    """Arguments after ENTRYPOINT of the hydrate init container."""
    return [
        "hydrate",
        "--model", params.model,
        "--revision", params.revision,
        "--bucket", params.bucket,
        "--region", params.region,
        "--dest", container_model_dir(params),
        "--concurrency", str(params.concurrency),
        "--part-size-mib", str(params.part_size_mib),
        # A previous attempt killed mid-way released its flock; waiting covers only a
        # second hydrator on the node (e.g. during a DaemonSet rollout overlap).
        "--lock-timeout-s", "600",
        "--json",
    ]


def wait_args(params: HydratorParams) -> list[str]:
    return [
        "wait",
        "--model", params.model,
        "--revision", params.revision,
        "--dest", container_model_dir(params),
        "--timeout-s", str(params.wait_timeout_s),
        "--poll-interval-s", "5",
    ]


def hydrator_daemonset(params: HydratorParams) -> dict:
    labels = _labels(params)
    tmp_mount = {"name": "tmp", "mountPath": "/tmp"}  # writable scratch; root fs is read-only
    hydrate = {
        "name": "hydrate",
        "image": params.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(ENTRYPOINT),
        "args": hydrate_args(params),
        "env": [
            {"name": "AWS_REGION", "value": params.region},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        ],
        "volumeMounts": [models_volume_mount(read_only=False), tmp_mount],
        "resources": {
            "requests": {"cpu": params.hydrate_cpu_request, "memory": params.hydrate_memory_request},
            "limits": {"cpu": params.hydrate_cpu_limit, "memory": params.hydrate_memory_limit},
        },
        "securityContext": _restricted_security_context(run_as_root=True),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    hold = {
        "name": "hold",
        "image": params.image,
        "imagePullPolicy": "IfNotPresent",
        # Keeps the pod Running after the init container; the probes carry the state.
        "command": ["sleep", "infinity"],
        "readinessProbe": {
            "exec": {"command": ["test", "-f", container_marker_path(params)]},
            "periodSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 1,
        },
        "livenessProbe": {
            # The host directory is still mounted (a lost mount would serve nothing).
            "exec": {"command": ["test", "-d", container_model_dir(params)]},
            "periodSeconds": 60,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": [models_volume_mount(read_only=True)],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "50m", "memory": "32Mi"},
        },
        "securityContext": _restricted_security_context(run_as_root=False),
    }
    pod_spec: dict = {
        "serviceAccountName": params.service_account_name,
        # IRSA and Pod Identity inject their own projected token; the API token is not needed.
        "automountServiceAccountToken": False,
        "nodeSelector": dict(params.node_selector),
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 30,
        "initContainers": [hydrate],
        "containers": [hold],
        "volumes": [models_volume(params), {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if params.priority_class_name:
        pod_spec["priorityClassName"] = params.priority_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": params.name,
            "namespace": params.namespace,
            "labels": labels,
            "annotations": {MODEL_ANNOTATION: params.model, REVISION_ANNOTATION: params.revision},
        },
        "spec": {
            "selector": {"matchLabels": {k: labels[k] for k in
                                         ("app.kubernetes.io/name", "app.kubernetes.io/instance")}},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": "25%"}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {MODEL_ANNOTATION: params.model, REVISION_ANNOTATION: params.revision},
                },
                "spec": pod_spec,
            },
        },
    }


def hydrator_service_account(params: HydratorParams, role_arn: str | None = None) -> dict:
    """The service account the read-only role trusts. With IRSA pass the role ARN (annotation);
    with EKS Pod Identity leave it None (the association names namespace/service account)."""
    metadata: dict = {"name": params.service_account_name, "namespace": params.namespace,
                      "labels": _labels(params)}
    if role_arn:
        if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$", role_arn):
            raise InputError("role_arn", role_arn, "an IAM role ARN arn:aws:iam::<account>:role/<name>")
        metadata["annotations"] = {IRSA_ROLE_ANNOTATION: role_arn}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata,
            "automountServiceAccountToken": False}


def wait_for_weights_init_container(params: HydratorParams) -> dict:
    """Init container for vLLM pods: blocks until this node's hydrator wrote the marker.

    Pair it with `models_volume(params)` in the pod's volumes and
    `models_volume_mount(read_only=True)` on the vLLM container, and start vLLM with
    `--model container_model_dir(params)`. If it times out it exits 4 and kubelet retries it.
    """
    return {
        "name": "wait-for-weights",
        "image": params.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(ENTRYPOINT),
        "args": wait_args(params),
        "volumeMounts": [models_volume_mount(read_only=True)],
        # requests = limits: an init container counts for the pod's QoS class, and the vLLM
        # pod must be Guaranteed.
        "resources": {"requests": dict(WAIT_RESOURCES), "limits": dict(WAIT_RESOURCES)},
        "securityContext": _restricted_security_context(run_as_root=False),
    }


WAIT_RESOURCES = {"cpu": "100m", "memory": "128Mi"}


def manifests(params: HydratorParams, role_arn: str | None = None) -> list[dict]:
    """Everything the hydrator needs in the cluster, in apply order."""
    return [hydrator_service_account(params, role_arn), hydrator_daemonset(params)]
