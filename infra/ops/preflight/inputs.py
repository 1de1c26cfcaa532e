"""What preflight checks for one stack, computed without a cloud. Pure.

Names of the weights bucket and KMS alias, in order of precedence:

1. the stack's outputs when it is deployed (`weights_bucket`; `availability_zones` for the AZs);
2. `--bucket` / `--kms-alias` flags (before the first deploy, or to check another bucket);
3. the program's convention: bucket `llm-fleet-<stack>-weights-<account>-<region>` (the account
   from STS) and alias `alias/<bucket>` (WeightStore).

Before a stack's first deploy the bucket and key do not exist yet (its first `pulumi up`
creates them): `first_deploy` turns "missing" into `skip` for those checks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from infra.core.catalog import load_catalog
from infra.core.config import StackConfig
from infra.core.images import StackImage, stack_images
from infra.core.labels import PROJECT
from infra.core.resolve import ResolvedStack, resolve
from infra.core.weights_layout import manifest_key, weights_bucket_name

# Service Quotas codes for running instances, counted in vCPUs (REFERENCE.md). Only the P
# family is listed: other families' codes are not confirmed here, so their check is skipped.
QUOTA_CODES = {
    ("p", "on-demand"): ("L-417A185B", "Running On-Demand P instances"),
    ("p", "spot"): ("L-7212CCBC", "P Spot instances"),
}


@dataclass(frozen=True)
class PreflightInputs:
    stack: str
    region: str
    instance_type: str
    instance_family: str
    vcpus_per_instance: int
    azs: int
    named_azs: tuple[str, ...] | None  # config, reservations or deployed outputs; None: first offered
    nodes_min_per_az: int
    nodes_max_per_az: int  # warm spares included (FleetPlan.nodes_per_az.max)
    capacity_type: str
    reservations: Mapping[str, str] = field(default_factory=dict)  # AZ -> cr-...
    bucket: str | None = None  # None: derive from the account (convention)
    kms_alias: str | None = None
    manifest_model: str = ""
    manifest_revision: str = ""
    first_deploy: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)  # what each name came from
    images: tuple[StackImage, ...] = ()  # what the stack pulls, and from where in its ECR registry
    cluster_name: str = ""
    kubernetes_version: str = ""
    ami_release_version: str | None = None
    gpu_node_groups: Mapping[str, str] = field(default_factory=dict)  # AZ -> node group name, where known

    @property
    def required_vcpus(self) -> int:
        return self.nodes_max_per_az * self.azs * self.vcpus_per_instance

    @property
    def quota(self) -> tuple[str, str] | None:
        market = "spot" if self.capacity_type == "spot" else "on-demand"
        return QUOTA_CODES.get((self.instance_family, market))

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.manifest_model, self.manifest_revision)

    def bucket_name(self, account_id: str) -> str:
        return self.bucket or weights_bucket_name(self.stack, account_id, self.region)

    def kms_alias_name(self, account_id: str) -> str:
        return self.kms_alias or f"alias/{self.bucket_name(account_id)}"


def _family(instance_type: str) -> str:
    head = instance_type.split(".", 1)[0]
    return "".join(ch for ch in head if ch.isalpha())[:1]


def weights_model_name(cfg: StackConfig) -> str:
    """The model name weights are stored under: the catalog's HF id, else the configured name."""
    try:
        arch = load_catalog().model(cfg.model.name, "llm-fleet:model.name")
    except Exception:  # noqa: BLE001 - a path to a config.json: use the name as given
        return cfg.model.name
    return getattr(arch, "hf_id", None) or cfg.model.name


def preflight_inputs(
    stack: str,
    project_dir: Path | str = ".",
    *,
    outputs: Mapping[str, Any] | None = None,
    bucket: str | None = None,
    kms_alias: str | None = None,
    weights_model: str | None = None,
    first_deploy: bool | None = None,
    resolved: ResolvedStack | None = None,
) -> PreflightInputs:
    """Inputs for `stack`: config + the fleet plan for the region's share (+ outputs/flags)."""
    resolved = resolved or resolve(stack, project_dir)
    cfg, plan = resolved.config, resolved.plan
    instance = load_catalog().instance(plan.instance_type)
    outputs = dict(outputs or {})
    sources: dict[str, str] = {}

    named: tuple[str, ...] | None = None
    if cfg.network.availability_zones:
        named, sources["azs"] = tuple(cfg.network.availability_zones), "llm-fleet:network.availability_zones"
    elif cfg.gpu_nodes.capacity_reservation_ids:
        named, sources["azs"] = tuple(sorted(cfg.gpu_nodes.capacity_reservation_ids)), "capacity_reservation_ids"
    elif isinstance(outputs.get("availability_zones"), (list, tuple)) and outputs["availability_zones"]:
        named, sources["azs"] = tuple(str(a) for a in outputs["availability_zones"]), "stack output availability_zones"
    else:
        sources["azs"] = f"the first {plan.azs} AZs offering {plan.instance_type} (as the program picks)"

    out_bucket = outputs.get("weights_bucket") if isinstance(outputs.get("weights_bucket"), str) else None
    chosen_bucket = out_bucket or bucket
    sources["bucket"] = ("stack output weights_bucket" if out_bucket else "--bucket" if bucket
                         else "convention llm-fleet-<stack>-weights-<account>-<region>")
    sources["kms_alias"] = "--kms-alias" if kms_alias else "convention alias/<bucket>"
    if first_deploy is None:
        first_deploy = not outputs
    groups = outputs.get("gpu_node_groups") if isinstance(outputs.get("gpu_node_groups"), dict) else None
    if groups is None and cfg.fleet.capacity_type == "capacity-block" and named:
        # Groups on reserved capacity keep fixed names (infra/program/components/gpu_node_group.py).
        groups = {az: f"{PROJECT}-{stack}-gpu-{az}" for az in named}
    return PreflightInputs(
        stack=stack,
        region=cfg.region,
        instance_type=plan.instance_type,
        instance_family=_family(plan.instance_type),
        vcpus_per_instance=instance.vcpu,
        azs=plan.azs,
        named_azs=named,
        nodes_min_per_az=plan.nodes_per_az.min,
        nodes_max_per_az=plan.nodes_per_az.max,
        capacity_type=cfg.fleet.capacity_type,
        reservations=dict(cfg.gpu_nodes.capacity_reservation_ids),
        bucket=chosen_bucket,
        kms_alias=kms_alias,
        manifest_model=weights_model or weights_model_name(cfg),
        manifest_revision=cfg.weights.revision,
        first_deploy=bool(first_deploy),
        sources=sources,
        images=tuple(stack_images(cfg)),
        cluster_name=str(outputs.get("cluster_name") or f"{PROJECT}-{stack}"),
        kubernetes_version=cfg.cluster.kubernetes_version,
        ami_release_version=cfg.gpu_nodes.ami_release_version,
        gpu_node_groups={str(k): str(v) for k, v in (groups or {}).items()},
    )
