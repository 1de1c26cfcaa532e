"""GPU plumbing on the GPU node groups: NVIDIA device plugin, EFA device plugin, DCGM exporter.

The AL2023 NVIDIA AMI carries the driver, the container toolkit and the EFA host software;
the device plugins are what make `nvidia.com/gpu` and `vpc.amazonaws.com/efa` schedulable.

RuntimeClass: none. nodeadm makes `nvidia` containerd's *default* runtime on NVIDIA instance
types (awslabs/amazon-eks-ami nodeadm/internal/containerd/runtime_config.go; see
awslabs/amazon-eks-ami#2236), so GPU pods need no `runtimeClassName`, and a RuntimeClass named
`nvidia` (which only the GPU Operator creates) would be one more object to keep in step with
the AMI. The device plugin keeps its chart default (`runtimeClassName: null`) and the vLLM chart
is given an empty one (vllm.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.core.catalog.charts import chart, image
from infra.program.serving import kube
from infra.program.serving.spec import (
    EFA_NODE_SELECTOR,
    GPU_NODE_SELECTOR,
    ServingSpec,
    gpu_toleration,
)

DCGM_RELEASE = "dcgm-exporter"
DCGM_SERVICE_PORT_NAME = "metrics"  # dcgm-exporter templates/service.yaml
DCGM_SERVICE_LABELS = {"app.kubernetes.io/name": "dcgm-exporter"}


def nvidia_device_plugin_values(spec: ServingSpec) -> dict:
    return {
        # nvcr.io is no ECR pull-through upstream: the image is mirrored (python -m infra images).
        "image": {"repository": spec.image_repository("nvidia-device-plugin"),
                  "tag": image("nvidia-device-plugin").tag},
        # ANDed with the chart's default affinity, whose `nvidia.com/gpu.present` term our
        # GPU node groups satisfy (NFD/GFD are not installed).
        "nodeSelector": dict(GPU_NODE_SELECTOR),
        "tolerations": [gpu_toleration(), {"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "priorityClassName": "system-node-critical",
        "failOnInitError": True,  # a node whose GPUs cannot be enumerated must not look healthy
        "deviceListStrategy": "envvar",
        "deviceIDStrategy": "uuid",
        "gfd": {"enabled": False},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    }


def efa_device_plugin_values(spec: ServingSpec) -> dict:
    return {
        "nodeSelector": {**GPU_NODE_SELECTOR, **EFA_NODE_SELECTOR},
        "tolerations": [gpu_toleration()],
        "resources": {"requests": {"cpu": "10m", "memory": "20Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }


def dcgm_exporter_values(spec: ServingSpec) -> dict:
    return {
        # Mirrored like the device plugin; the tag stays the chart's (its appVersion).
        "image": {"repository": spec.image_repository("dcgm-exporter")},
        "nodeSelector": dict(GPU_NODE_SELECTOR),
        "tolerations": [gpu_toleration()],
        # The ServiceMonitor is ours (observability.py), validated against the CRD schema.
        "serviceMonitor": {"enabled": False},
        "service": {"enable": True, "port": 9400},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}},
    }


@dataclass(frozen=True)
class GpuPlumbingArgs:
    spec: ServingSpec
    namespace: str


class GpuPlumbing(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuPlumbingArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:GpuPlumbing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = args.spec
        self.releases = {
            key: kube.release(
                f"{name}-{key}", chart(key), release_name=release_name, namespace=args.namespace,
                values=values, opts=child,
            )
            for key, release_name, values in (
                ("nvidia-device-plugin", "nvidia-device-plugin", nvidia_device_plugin_values(spec)),
                ("aws-efa-k8s-device-plugin", "aws-efa-k8s-device-plugin", efa_device_plugin_values(spec)),
                ("dcgm-exporter", DCGM_RELEASE, dcgm_exporter_values(spec)),
            )
        }
        self.register_outputs({"releases": {k: r.name for k, r in self.releases.items()}})
