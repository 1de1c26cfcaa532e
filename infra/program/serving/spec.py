"""What every serving builder reads: the fleet plan, the stack config and the defaults, plus the
names derived from them once (namespaces, release and object names, node placement).

Pure functions and data: nothing here registers anything. GPU placement (node labels, the GPU
taint and its toleration) comes from infra/core/labels.py, the module the node groups read too;
tests/serving/test_placement.py checks both sides under mocks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property

from infra.core.catalog import InstanceType, load_catalog
from infra.core.catalog.charts import image, through_ecr
from infra.core.images import through_ecr_ref
from infra.program.serving.defaults import ServingDefaults
from infra.core.config import StackConfig
from infra.core.errors import InputError
from infra.core.labels import GPU_NODE_LABELS, SYSTEM_NODE_LABELS, ZONE_LABEL, common_labels, gpu_toleration
from infra.core.sizing import time_to_serve
from infra.core.sizing.memory import checkpoint_gib
from infra.core.sizing.plan import FleetPlan
from infra.program.serving import hydrator as weights_k8s

# Node labels set by the GPU node groups and the system node group (infra/core/labels.py).
GPU_NODE_SELECTOR = dict(GPU_NODE_LABELS)
SYSTEM_NODE_SELECTOR = dict(SYSTEM_NODE_LABELS)
EFA_NODE_SELECTOR = {"vpc.amazonaws.com/efa.present": "true"}
ZONE_KEY = ZONE_LABEL


def dns_label(text: str, max_len: int = 63) -> str:
    """A DNS-1123 label from free text (model names contain dots and slashes)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)[:max_len].rstrip("-")
    if not label:
        raise InputError("name", text, "a name with at least one letter or digit")
    return label


def seconds(value: float) -> str:
    """A Go/Gateway-API duration string in whole seconds."""
    return f"{int(math.ceil(value))}s"


@dataclass(frozen=True)
class ServingSpec:
    """Plan + config + defaults, and every name the serving objects share."""

    plan: FleetPlan
    config: StackConfig
    weights_bucket: str
    defaults: ServingDefaults = field(default_factory=ServingDefaults)

    def __post_init__(self) -> None:
        if self.plan.served_name != (self.config.model.served_name or self.plan.served_name):
            raise InputError("model.served_name", self.config.model.served_name,
                             f"the plan's served name {self.plan.served_name!r} (plan and config disagree)")
        if self.plan.tensor_parallel > self.plan.gpus_per_node:
            raise InputError("plan.tensor_parallel", self.plan.tensor_parallel,
                             f"at most the {self.plan.gpus_per_node} GPUs of one {self.plan.instance_type}")
        # What the fleet simulator ran (the control block) is what gets deployed.
        c, p = self.plan.control, self.plan
        agree = {"min_replicas": (c.min_replicas, p.replicas_baseline), "max_replicas": (c.max_replicas, p.replicas_max),
                 "max_num_seqs": (c.max_num_seqs, p.vllm.max_num_seqs)}
        for key, (mine, plans) in agree.items():
            if mine != plans:
                raise InputError(f"plan.control.{key}", mine, f"the plan's own {plans} (plan and control block disagree)")

    # --- names ----------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        """vLLM, the hydrator, the gateway objects and the warm pool share the namespace the
        weight store's Pod Identity association is bound to."""
        return self.config.weights.hydrator_namespace

    @property
    def model_key(self) -> str:
        """The chart's modelSpec name: object names and the `model` pod label derive from it."""
        return dns_label(self.plan.model, 24)

    @property
    def deployment_name(self) -> str:
        # production-stack: "{{ .Release.Name }}-{{ $modelSpec.name }}-deployment-vllm"
        return f"{self.defaults.vllm_release}-{self.model_key}-deployment-vllm"

    @property
    def scaled_object_name(self) -> str:
        # production-stack: "{{ .Release.Name }}-{{$modelSpec.name}}-scaledobject"
        return f"{self.defaults.vllm_release}-{self.model_key}-scaledobject"

    @property
    def engine_service_name(self) -> str:
        # production-stack: "{{ .Release.Name }}-{{ $modelSpec.name }}-engine-service"
        return f"{self.defaults.vllm_release}-{self.model_key}-engine-service"

    @property
    def vllm_pod_labels(self) -> dict[str, str]:
        """Labels the chart puts on every engine pod (its selector)."""
        return {"model": self.model_key, "helm-release-name": self.defaults.vllm_release}

    @property
    def served_name(self) -> str:
        return self.plan.served_name

    # --- hardware -------------------------------------------------------------------------
    @cached_property
    def instance(self) -> InstanceType:
        return load_catalog().instance(self.plan.instance_type)

    @property
    def gpus_per_pod(self) -> int:
        return self.plan.vllm.tensor_parallel_size

    # --- fleet counts (all from the plan) -------------------------------------------------
    @property
    def replicas_min(self) -> int:
        return self.plan.replicas_baseline

    @property
    def replicas_max(self) -> int:
        return self.plan.replicas_max

    @property
    def placeholders(self) -> int:
        return self.plan.warm_spares_per_az * self.plan.azs

    @property
    def envoy_replicas(self) -> int:
        """The gateway's proxies: the control block's (its admission limit is split across them)."""
        return self.plan.control.gateway_proxies

    # --- images -------------------------------------------------------------------------
    def image_repository(self, key: str) -> str:
        """The catalog image's repository as the cluster pulls it: through the stack's ECR
        registry (defaults.image_registry), else upstream."""
        return through_ecr(image(key).repository, self.defaults.image_registry)

    def image_ref(self, key: str) -> str:
        """repository:tag (and @digest where the catalog pins one) of a catalog image."""
        ref = image(key)
        tag = ref.tag_for_kubernetes(self.config.cluster.kubernetes_version) if ref.tags_by_kubernetes_minor else ref.tag
        return self.image_repository(key) + f":{tag}" + (f"@{ref.digest}" if ref.digest else "")

    def image_registry_values(self, key: str) -> dict[str, str]:
        """`{registry, repository}` for charts that join the two (`<registry>/<repository>`):
        the registry is the ECR host and the image's pull-through or mirror prefix."""
        ref = image(key)
        full = self.image_repository(key)
        return {"registry": full[: -len(ref.path) - 1], "repository": ref.path}

    # --- weights tier ---------------------------------------------------------------------
    @cached_property
    def hydrator(self) -> weights_k8s.HydratorParams:
        cfg = self.config
        return weights_k8s.HydratorParams(
            image=through_ecr_ref(cfg.weights.hydrator_image, self.defaults.image_registry),
            bucket=self.weights_bucket,
            model=self.plan.model,
            revision=cfg.weights.revision,
            region=cfg.region,
            host_models_dir=f"{cfg.weights.nvme_mount_path.rstrip('/')}/models",
            namespace=cfg.weights.hydrator_namespace,
            service_account_name=cfg.weights.hydrator_service_account,
            # The weights module's default selector is not a label our node groups set.
            node_selector=dict(GPU_NODE_SELECTOR),
        )

    @property
    def model_dir(self) -> str:
        """Where vLLM reads the model: the node-local NVMe copy, mounted read-only."""
        return weights_k8s.container_model_dir(self.hydrator)

    @property
    def weights_gib(self) -> float:
        return self.plan.weights_gib_per_gpu * self.plan.tensor_parallel

    @property
    def expected_load_s(self) -> float:
        """Seconds from container start to ready: the checkpoint from NVMe into HBM, then engine init."""
        return time_to_serve.expected_load_s(self.checkpoint_gib)

    @cached_property
    def checkpoint_gib(self) -> float:
        """What vLLM reads from NVMe at start: the checkpoint the hydrator copied, which for
        online FP8 is the BF16 one (twice the FP8 weights in HBM)."""
        return checkpoint_gib(load_catalog().model(self.plan.model), self.plan.precision)

    # --- SLOs -----------------------------------------------------------------------------
    @property
    def e2e_p95_ms(self) -> float:
        declared = self.config.workload.e2e_p95_ms
        return declared if declared is not None else self.plan.predicted.e2e_p95_ms

    @property
    def e2e_p99_s(self) -> float:
        """The long tail of a request's lifetime: the largest finite e2e p99 of the fleet
        simulator's scenarios for this plan (what a draining engine must let finish)."""
        p99s = [v.e2e_p99_ms for v in self.plan.verification if v.e2e_p99_ms is not None]
        if not p99s:
            raise InputError("plan.verification", "none", "a plan verified in the fleet simulator (its scenarios "
                             "give the e2e p99 the drain window covers): `python -m infra size` verifies every plan")
        return max(p99s) / 1000.0
