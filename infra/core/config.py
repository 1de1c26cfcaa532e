"""Typed configuration: what the service owes its users, what it serves, and where.

The same models are read from a workload file (`python -m infra size --workload FILE.yaml`),
from `Pulumi.<stack>.yaml` by the CLI, and from `pulumi.Config("llm-fleet")` by the Pulumi
program. Unknown keys are rejected; every error names the key path, the value and what is
allowed. Nothing here imports pulumi at module import time.
"""
from __future__ import annotations

import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from infra.core import patterns
from infra.core.catalog import load_catalog
from infra.core.catalog.eks import UpgradePolicy
from infra.core.errors import InputError, UserError, clip, shown
from infra.core.files import read_yaml_file
from infra.core.labels import PROJECT, REQUIRED_TAGS

Precision = Literal["bf16", "fp8", "int8", "int4"]
KvDtype = Literal["auto", "fp8"]
Engine = Literal["vllm", "trtllm"]
CapacityType = Literal["on-demand", "capacity-block", "reservation"]
Scenario = Literal["sustained", "az-loss", "burst"]  # the fleet simulator's verification scenarios
WarmPoolState = Literal["RUNNING", "STOPPED"]


def _numbers_only(annotation: Any) -> bool:
    """Whether a field takes numbers (int, float, Decimal, a Literal of numbers) and no boolean."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return bool(members) and all(_numbers_only(a) for a in members)
    return annotation in (int, float, Decimal)


class StrictModel(BaseModel):
    """Unknown keys refused, frozen, and no boolean where a number goes: pydantic's lax mode reads
    `true` as 1 (and YAML reads yes/no/on/off as booleans), which would size a fleet for one user."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name and _numbers_only(cls.model_fields[info.field_name].annotation):
            raise ValueError("a boolean is not a number; write the number (YAML reads true/false, yes/no, on/off "
                             "as booleans)")
        return value


class Workload(StrictModel):
    """What the service owes its users at sustained load."""

    concurrent_requests: int = Field(gt=0, le=1_000_000, description="Requests in flight at sustained load.")
    burst_factor: float = Field(default=1.0, ge=1.0, le=100.0, description="Peak concurrency / sustained concurrency.")
    input_tokens: int = Field(gt=0, le=1_000_000, description="Prompt tokens per request (typical).")
    output_tokens: int = Field(gt=0, le=1_000_000, description="Generated tokens per request (typical).")
    ttft_p95_ms: float = Field(gt=0, description="Time to first token, 95th percentile, milliseconds.")
    tpot_p95_ms: float = Field(gt=0, description="Time per output token after the first, 95th percentile, ms.")
    e2e_p95_ms: float | None = Field(default=None, gt=0, description="End-to-end request latency p95, ms (optional).")
    output_tokens_per_s: float | None = Field(
        default=None, gt=0, description="Aggregate generated tokens per second to sustain (optional)."
    )
    availability_pct: float = Field(default=99.9, gt=0, lt=100, description="Availability target per region, percent.")
    burst_ramp_s: float = Field(
        default=60.0, ge=0, le=86_400, description="Seconds the burst takes to rise from 1x to burst_factor x (simulated)."
    )
    burst_hold_s: float = Field(
        default=600.0, gt=0, le=86_400, description="Seconds the burst holds at burst_factor x (simulated)."
    )
    slo_attainment_pct: dict[Scenario, float] | None = Field(
        default=None,
        description="Joint attainment (share of requests within every SLO, percent) each simulated scenario must "
        "reach on top of the p95s, e.g. {sustained: 99}; default: the p95s alone.",
    )

    @field_validator("slo_attainment_pct")
    @classmethod
    def _attainment_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for scenario, pct in (value or {}).items():
            if not 0 < pct <= 100:
                raise ValueError(f"{scenario}: {pct} is outside (0, 100] percent")
        return value


class ModelSpec(StrictModel):
    """What is served."""

    name: str = Field(min_length=1, description="Catalog key (e.g. llama-3.3-70b) or path to a HF config.json.")
    served_name: str | None = Field(default=None, description="Name clients send as `model`; default: the HF id.")
    kv_cache_dtype: KvDtype = Field(default="fp8", description="KV-cache dtype: auto (= model dtype) or fp8.")
    max_model_len: int = Field(default=8192, ge=256, le=1_048_576, description="Context window cap, tokens.")


class FleetOptions(StrictModel):
    """Where and on what it may run."""

    region: str = Field(default="us-east-1", pattern=patterns.REGION, description="AWS region.")
    azs: int = Field(default=3, ge=1, le=6, description="Availability zones to spread GPU nodes over.")
    instance_types: tuple[str, ...] = Field(
        default=("p5.48xlarge",), min_length=1, description="GPU instance types the search may pick from."
    )
    precisions: tuple[Precision, ...] = Field(
        default=("fp8",), min_length=1, description="Weight precisions the search may pick from."
    )
    capacity_type: CapacityType = Field(
        default="on-demand", description="How GPU nodes are bought; the sizing prices this capacity type."
    )
    instance_usd_per_hour: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Price per instance-hour by instance type, over the price book (a discount, a quoted block).",
    )
    engine: Engine = Field(default="vllm", description="Serving engine the step-time model is calibrated for.")
    gpu_memory_utilization: float = Field(default=0.90, gt=0.3, le=0.98, description="vLLM --gpu-memory-utilization.")
    max_num_batched_tokens: int | None = Field(
        default=None, ge=256, le=131072, description="Token budget per scheduler step; default: searched."
    )
    survive_az_loss: bool = Field(default=True, description="Size so the SLOs hold with any one AZ lost (N+1).")
    warm_spares_per_az: int | None = Field(
        default=None, ge=0, le=64, description="Running spare GPU nodes per AZ; default: derived from the burst."
    )
    max_nodes_per_az: int = Field(default=32, ge=1, le=1000, description="Upper bound the search may use per AZ.")

    @field_validator("instance_types")
    @classmethod
    def _known_instance_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = load_catalog().instances
        for name in value:
            if name not in known:
                raise ValueError(f"{shown(name)} is not a known instance type; known: {', '.join(sorted(known))}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "price_usd_per_gpu_hour" in data:
            raise ValueError(
                "price_usd_per_gpu_hour (one price for every instance type) was replaced by "
                "instance_usd_per_hour: {INSTANCE_TYPE: USD per instance-hour}, e.g. {p5.48xlarge: 31.46}"
            )
        return data

    @field_validator("instance_usd_per_hour")
    @classmethod
    def _positive_prices(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for name, usd in value.items():
            if not usd.is_finite() or usd <= 0:
                raise ValueError(f"{name}: {usd} must be a positive USD amount per instance-hour")
        return value

    @model_validator(mode="after")
    def _prices_for_allowed_types(self) -> "FleetOptions":
        stray = sorted(set(self.instance_usd_per_hour) - set(self.instance_types))
        if stray:
            raise ValueError(
                f"instance_usd_per_hour prices {', '.join(stray)}, not in instance_types "
                f"({', '.join(self.instance_types)}); price only the types the search may pick"
            )
        return self

    @model_validator(mode="after")
    def _az_loss_needs_two_azs(self) -> "FleetOptions":
        if self.survive_az_loss and self.azs < 2:
            raise ValueError("survive_az_loss needs azs >= 2 (one AZ can be lost); set azs: 2 or more")
        return self


class SizingSpec(StrictModel):
    """The input of the sizing search (the `size --workload FILE.yaml` document)."""

    workload: Workload
    model: ModelSpec
    fleet: FleetOptions = FleetOptions()


def format_validation_error(exc: ValidationError, prefix: str = "", root: type[BaseModel] | None = None) -> str:
    """One line per problem: `key.path: value ... ; what is allowed`."""
    return "\n".join(capped(problem_lines(exc, root, prefix)))


def parse_model(model_cls: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """Validate `data` into `model_cls`, turning pydantic errors into a UserError."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or '(document)'}: expected a mapping, got {type(data).__name__}")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, prefix, model_cls)) from None


def load_sizing_spec(path: str | Path) -> SizingSpec:
    """Read a workload file (`examples/seed-004.yaml`)."""
    return parse_model(SizingSpec, read_yaml_file(path, "--workload"))


# ---------------------------------------------------------------------------------------------
# Stack configuration: everything under `llm-fleet:` in Pulumi.<stack>.yaml (issue #3).
#
# The four sizing models above are the `workload`, `model` and `fleet` sections verbatim; the
# models below are the other sections. Two loaders end in the same validation
# (`parse_stack_config`): `load_stack_config` for the CLI (reads Pulumi.<stack>.yaml and the
# defaults declared in Pulumi.yaml) and `stack_config_from_pulumi` for the program.
# ---------------------------------------------------------------------------------------------

NAMESPACE = f"{PROJECT}:"
# Namespaces a stack file may use: ours, the AWS provider's, and the engine's own.
ALLOWED_NAMESPACES = (PROJECT, "aws", "pulumi")

PROD_ENVIRONMENT = "prod"  # tags.environment of stacks whose alerts must reach someone
_LOG_RETENTION_DAYS = Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]


def _check_cidr(value: str, *, allow_any: bool = True) -> str:
    import ipaddress

    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{shown(value)} is not a CIDR block like 203.0.113.0/24 ({exc})") from None
    if not allow_any and net.prefixlen == 0:
        raise ValueError(f"{shown(value)} opens the endpoint to the whole internet; list your own CIDR blocks")
    return str(net)


# The largest monthly amount any budget or limit may name: well above any fleet, and small enough
# that cents stay exact in Decimal's 28 digits.
MAX_MONTHLY_USD = Decimal(100_000_000)


class BudgetConfig(StrictModel):
    """What the stack may spend; the policy pack refuses changes that would break it."""

    monthly_usd: Decimal = Field(gt=0, le=MAX_MONTHLY_USD, description="Monthly spending cap for the stack, USD.")
    alert_pct: float = Field(
        default=80.0, gt=0, le=100, description="Percent of monthly_usd at which the budget alert fires."
    )


LISTENER_PORT = 443  # the public HTTPS listener of the gateway (its NLB and security group)


class IngressConfig(StrictModel):
    """The public OpenAI-compatible endpoint (served by the Envoy gateway in a later issue)."""

    hostname: str = Field(max_length=253, pattern=patterns.HOSTNAME, description="Public DNS name clients call, e.g. llm.example.com.")
    regional_hostname: str | None = Field(
        default=None, max_length=253, pattern=patterns.HOSTNAME,
        description="This region's own DNS name for the gateway (its unauthenticated /health is what the rollout's "
        "health gate probes); default: the region inserted after the hostname's first label "
        "(llm.example.com -> llm.us-east-1.example.com).",
    )
    tls_certificate_arn: str | None = Field(
        default=None, pattern=patterns.ACM_ARN, description="ACM certificate ARN for the listener (or tls_secret_name)."
    )
    tls_secret_name: str | None = Field(
        default=None, pattern=patterns.DNS_LABEL, description="Kubernetes TLS secret name (or tls_certificate_arn)."
    )
    jwt_issuer: str = Field(pattern=patterns.HTTPS_URL, description="JWT `iss` the gateway accepts (https URL).")
    jwks_uri: str = Field(pattern=patterns.HTTPS_URL, description="URL of the issuer's JSON Web Key Set (https).")
    rate_limit_requests_per_minute: int = Field(
        default=600, gt=0, le=1_000_000, description="Per-tenant request rate limit, requests per minute."
    )
    bench_rate_limit_requests_per_minute: int = Field(
        default=6000, gt=0, le=1_000_000,
        description="Request rate limit of the benchmark tenant (its own bucket: the in-cluster load test must "
        "reach the knee, far above one tenant's share), requests per minute.",
    )
    allowed_source_cidrs: tuple[str, ...] = Field(
        default=("0.0.0.0/0",),
        min_length=1,
        description="Source CIDR blocks allowed to reach the public HTTPS listener.",
    )

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_cidr(v) for v in value)

    @model_validator(mode="after")
    def _one_tls_source(self) -> "IngressConfig":
        if (self.tls_certificate_arn is None) == (self.tls_secret_name is None):
            raise ValueError("set exactly one of tls_certificate_arn or tls_secret_name")
        return self


class NetworkConfig(StrictModel):
    """The VPC. Subnets are carved from vpc_cidr: one private block per AZ (an eighth of the VPC
    each, for pod IPs) and small public subnets (NAT gateways, load balancers) from the last eighth."""

    vpc_cidr: str = Field(default="10.40.0.0/16", description="VPC IPv4 CIDR, private range, /16 to /20.")
    availability_zones: tuple[str, ...] | None = Field(
        default=None,
        description="AZ names to use (exactly fleet.azs of them); default: the first that offer the GPU type.",
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        import ipaddress

        value = _check_cidr(value)
        net = ipaddress.ip_network(value)
        if net.version != 4 or not net.is_private:
            raise ValueError("use a private IPv4 range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"prefix /{net.prefixlen} is outside /16 to /20")
        return value

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:

        if value is None:
            return None
        for name in value:
            if not patterns.matches(patterns.AZ, name):
                raise ValueError(f"{shown(name)} is not an AZ name like us-east-1a")
        if len(set(value)) != len(value):
            raise ValueError("AZ names must be unique")
        return value


def _default_kubernetes_version() -> str:
    from infra.core import clock
    from infra.core.catalog.eks import load_eks_calendar

    return load_eks_calendar().default_version(clock.today())


class ClusterConfig(StrictModel):
    """The EKS control plane and its small system node group."""

    kubernetes_version: str = Field(
        default_factory=_default_kubernetes_version,
        pattern=patterns.KUBERNETES_VERSION,
        description="EKS Kubernetes minor version, e.g. 1.35; it must be in standard support unless "
        "upgrade_policy is EXTENDED (infra/core/catalog/eks_versions.yaml).",
        json_schema_extra={"default_doc": "the newest version in standard support on the day"},
    )
    upgrade_policy: UpgradePolicy = Field(
        default="STANDARD",
        description="EKS support policy: STANDARD, or EXTENDED to keep a version past standard support "
        "(billed at the extended-support price per cluster-hour).",
    )
    endpoint_public_access: bool = Field(
        default=False, description="Expose the API server endpoint publicly (off: private endpoint only)."
    )
    public_access_cidrs: tuple[str, ...] = Field(
        default=(), description="CIDR blocks allowed to the public endpoint (only with endpoint_public_access)."
    )
    system_node_instance_type: str = Field(
        default="m7i.xlarge", pattern=patterns.INSTANCE_TYPE, description="Instance type of the system node group."
    )
    system_node_count: int = Field(default=2, ge=1, le=20, description="Nodes in the system node group (min = desired).")
    admin_principal_arns: tuple[str, ...] = Field(
        default=(), description="IAM role/user ARNs granted cluster-admin through access entries."
    )
    deployer_principal_arn: str | None = Field(
        default=None,
        description="IAM role ARN that deploys the in-cluster layer (gets an admin access entry); default: the "
        "role of the identity running `pulumi up` (set it when that role has a path).",
    )
    log_retention_days: _LOG_RETENTION_DAYS = Field(
        default=90, description="Retention of the control-plane log group, days."
    )
    deletion_protection: bool = Field(default=True, description="Refuse to delete the cluster until turned off.")

    @field_validator("public_access_cidrs")
    @classmethod
    def _public_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_cidr(v, allow_any=False) for v in value)

    @field_validator("deployer_principal_arn")
    @classmethod
    def _deployer(cls, value: str | None) -> str | None:
        if value is not None and not patterns.matches(patterns.IAM_PRINCIPAL, value):
            raise ValueError(f"{value!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/name)")
        return value

    @field_validator("admin_principal_arns")
    @classmethod
    def _admins(cls, value: tuple[str, ...]) -> tuple[str, ...]:

        for arn in value:
            if not patterns.matches(patterns.IAM_PRINCIPAL, arn):
                raise ValueError(f"{shown(arn)} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/name)")
        return value

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> "ClusterConfig":
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise ValueError("endpoint_public_access: true needs public_access_cidrs (your own CIDR blocks)")
        if not self.endpoint_public_access and self.public_access_cidrs:
            raise ValueError("public_access_cidrs is only used with endpoint_public_access: true")
        return self


class GpuNodesConfig(StrictModel):
    """Per-AZ GPU node groups (counts come from the fleet plan, not from here)."""

    root_volume_gib: int = Field(default=200, ge=50, le=16384, description="Encrypted gp3 root volume per GPU node, GiB.")
    capacity_reservation_ids: dict[str, str] = Field(
        default_factory=dict,
        description="AZ name -> capacity reservation or Capacity Block id (cr-...); needed unless on-demand "
        "(or, for reservation, a resource group).",
    )
    capacity_reservation_resource_group_arn: str | None = Field(
        default=None, pattern=patterns.RESOURCE_GROUP_ARN,
        description="Resource group of capacity reservations the GPU groups target (capacity_type reservation "
        "only; instead of capacity_reservation_ids).",
    )
    cluster_placement_group: bool | None = Field(
        default=None,
        description="Create a cluster placement group per AZ; null: only when one engine spans nodes (tensor "
        "parallelism inside a node needs none, and a cluster group concentrates capacity errors).",
    )
    placement_group_names: dict[str, str] = Field(
        default_factory=dict,
        description="AZ name -> an existing cluster placement group to launch into (e.g. the one a capacity "
        "reservation is bound to); the stack neither creates nor deletes it.",
    )
    warm_pool_state: WarmPoolState = Field(
        default="STOPPED",
        description="Node warm pool (burst headroom): STOPPED costs EBS only and refills NVMe on start; "
        "RUNNING bills the instance price.",
    )
    max_unavailable: int = Field(default=1, ge=1, le=100, description="GPU nodes replaced at once in a rolling update.")
    ami_release_version: str | None = Field(
        default=None,
        pattern=patterns.AMI_RELEASE,
        description="Pin the EKS AL2023 NVIDIA AMI release (e.g. 1.33.0-20250704); default: latest at creation.",
    )

    @model_validator(mode="after")
    def _placement_group_choice(self) -> "GpuNodesConfig":
        if self.placement_group_names and self.cluster_placement_group is False:
            raise ValueError("placement_group_names launch into cluster placement groups: drop them or "
                             "cluster_placement_group: false")
        return self

    @field_validator("capacity_reservation_ids", "placement_group_names")
    @classmethod
    def _per_az(cls, value: dict[str, str], info: Any) -> dict[str, str]:
        """AZ name -> a reservation id, or a placement group name."""
        pattern, what = {
            "capacity_reservation_ids": (patterns.CAPACITY_RESERVATION, "a capacity reservation id like cr-0123456789abcdef0"),
            "placement_group_names": (patterns.PLACEMENT_GROUP_NAME, "a placement group name"),
        }[info.field_name]
        for az, item in value.items():
            if not patterns.matches(patterns.AZ, str(az)):
                raise ValueError(f"key {shown(az)} is not an AZ name like us-east-1a")
            if not isinstance(item, str) or not patterns.matches(pattern, item):
                raise ValueError(f"{shown(item)} (for {shown(az)}) is not {what}")
        return value


class DeployerConfig(StrictModel):
    """The in-VPC deployer: an AWS CodeBuild project in the private subnets that runs the workloads
    project (and the gates that need the cluster from inside) when the EKS endpoint is private."""

    build_image: str = Field(
        default="aws/codebuild/amazonlinux-x86_64-standard:5.0",
        description="Build image: a CodeBuild curated image (aws/codebuild/<name>:<version>) or an image pinned "
        "by digest (registry/repo[:tag]@sha256:...).",
    )
    compute_type: Literal["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE"] = Field(
        default="BUILD_GENERAL1_MEDIUM", description="CodeBuild compute type of a deploy build."
    )
    build_timeout_minutes: int = Field(default=60, ge=5, le=2160, description="A build is stopped after this long, minutes.")
    log_retention_days: _LOG_RETENTION_DAYS = Field(default=90, description="Retention of the build log group, days.")
    pulumi_version: str = Field(
        default="3.272.0", pattern=patterns.SEMVER, description="Pulumi CLI version the build installs (checksum-verified)."
    )
    backend_url: str = Field(
        default="https://api.pulumi.com", pattern=patterns.HTTPS_URL,
        description="The Pulumi service holding both projects' state (Pulumi Cloud or self-hosted).",
    )
    access_token_secret_arn: str | None = Field(
        default=None, pattern=patterns.SECRETS_MANAGER_ARN,
        description="Secrets Manager secret with the Pulumi access token the build logs in with (never a plain "
        "variable); required when the endpoint is private.",
    )
    source_retention_days: int = Field(
        default=14, ge=1, le=3650, description="Days an uploaded source archive of a deploy is kept."
    )
    bench_token_secret_arn: str | None = Field(
        default=None, pattern=patterns.SECRETS_MANAGER_ARN,
        description="Secrets Manager secret with the JWT of the rollout bench gate's tenant (llm-fleet-bench): the "
        "build may read it to run the bench Job in the cluster (docs/bench.md).",
    )

    @field_validator("build_image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        if not (patterns.matches(patterns.CODEBUILD_CURATED_IMAGE, value)
                or patterns.matches(patterns.IMAGE_BY_DIGEST, value)):
            raise ValueError("use a CodeBuild curated image (aws/codebuild/<name>:<major.minor>) or an image pinned by "
                             "digest (registry/repo[:tag]@sha256:<64 hex>)")
        return value


# A business-hours day, hour 0 = midnight where the users are: a tenth of the load overnight,
# ramping from 06:00 to the declared load 09:00-17:00, falling off through the evening (12.5
# full-load hours a day). docs/tco.md explains it; a stack with another shape sets its own.
BUSINESS_HOURS_PROFILE = (0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.25, 0.5, 0.8, 1.0, 1.0, 1.0,
                          1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.5, 0.35, 0.25, 0.2, 0.15, 0.1)
ReservationKind = Literal["none", "savings-plan-1yr", "savings-plan-3yr", "capacity-block"]


class TcoConfig(StrictModel):
    """What self-hosting costs beyond the cost model, and what it is compared with (docs/tco.md)."""

    daily_profile: tuple[float, ...] = Field(
        default=BUSINESS_HOURS_PROFILE,
        description="Demand in each hour of the day (24 multipliers, hour 0 = midnight) as a share of the declared "
        "sustained load (1.0 = the declared load); default: a business-hours day.",
    )
    oncall_fte: float = Field(
        default=1.0, ge=0, le=100,
        description="People on the GPU fleet's pager, full-time equivalents (seed 000: one ML infra engineer); 0 allowed.",
    )
    usd_per_fte_year: Decimal = Field(
        default=Decimal(200_000), ge=0, le=10_000_000,
        description="Fully loaded cost of one FTE a year, USD (seed 003: 0.25 FTE at $3,000-5,000 a month).",
    )
    reservation: ReservationKind = Field(
        default="none",
        description="Committed capacity for the node-hours the fleet runs every hour of the day: a Savings Plan "
        "(discount in the price book's reservations) or capacity blocks (their rate); none: on-demand.",
    )
    compare_with: tuple[str, ...] = Field(
        default=("bedrock-llama-3.3-70b", "bedrock-claude-3-haiku", "bedrock-claude-sonnet-4.5", "openai-gpt-4o"),
        min_length=1,
        description="Price book api_models the short vs-API block of size and plan shows (`tco` shows them all).",
    )
    api_price_max_age_days: int = Field(
        default=180, ge=1, le=3650, description="An API price recorded longer ago than this is flagged stale, days."
    )

    @field_validator("daily_profile", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        for hour, m in enumerate(value if isinstance(value, (list, tuple)) else ()):
            if isinstance(m, bool):
                raise ValueError(f"hour {hour}: a boolean is not a number; write the multiplier (YAML reads "
                                 "true/false, yes/no, on/off as booleans)")
        return value

    @field_validator("daily_profile")
    @classmethod
    def _day(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 24:
            raise ValueError(f"{len(value)} multipliers given; the profile needs exactly 24, one per hour (hour 0 = "
                             "midnight)")
        for hour, m in enumerate(value):
            if not 0 <= m <= 100:  # also refuses NaN
                raise ValueError(f"hour {hour}: {m} is outside [0, 100]; each multiplier is a share of the declared "
                                 "load (1.0 = the declared load, 0 = no traffic)")
        if max(value) <= 0:
            raise ValueError("every hour is 0; at least one hour must carry traffic")
        return value


class WeightsConfig(StrictModel):
    """Where model weights live (S3) and how nodes hydrate them onto local NVMe."""

    revision: str = Field(pattern=patterns.REVISION, description="Model revision to serve (a tag or commit under models/<name>/).")
    hydrator_image: str = Field(
        pattern=patterns.IMAGE_BY_DIGEST,
        description="Weight hydrator container image, pinned by digest (registry/repo[:tag]@sha256:...).",
    )
    nvme_mount_path: str = Field(
        default="/mnt/k8s-disks/0",
        pattern=patterns.ABSOLUTE_PATH,
        description="Where nodeadm mounts the instance-store RAID0 array on GPU nodes.",
    )
    hydrator_namespace: str = Field(
        default="llm-serving", pattern=patterns.DNS_LABEL, description="Kubernetes namespace of the hydrator service account."
    )
    hydrator_service_account: str = Field(
        default="weight-hydrator", pattern=patterns.DNS_LABEL, description="The one service account allowed to read weights."
    )
    noncurrent_version_expiration_days: int = Field(
        default=30, ge=1, le=3650, description="Days before overwritten (noncurrent) object versions expire."
    )
    retired_revision_expiration_days: int = Field(
        default=30, ge=1, le=3650, description="Days before objects tagged llm-fleet:revision-state=retired expire."
    )


AlertReceiverKind = Literal["sns", "webhook", "null"]
AlertSeverity = Literal["critical", "warning"]


class AlertReceiver(StrictModel):
    """Where Alertmanager sends alerts: an SNS topic (published through Pod Identity, no secret),
    an https webhook, or `null` (alerts discarded, said explicitly)."""

    name: str = Field(pattern=patterns.DNS_LABEL, description="Receiver name (a DNS label).")
    kind: AlertReceiverKind = Field(description="sns, webhook or null.")
    target: str | None = Field(
        default=None, description="The SNS topic ARN (sns) or https URL without credentials (webhook); none for null."
    )
    severities: tuple[AlertSeverity, ...] = Field(
        default=("critical", "warning"), min_length=1, description="Alert severities routed to this receiver."
    )

    @model_validator(mode="after")
    def _target_fits_kind(self) -> "AlertReceiver":
        import urllib.parse

        t = self.target
        if self.kind == "null":
            if t is not None:
                raise ValueError(f"receiver {self.name}: a null receiver takes no target")
        elif t is None:
            raise ValueError(f"receiver {self.name}: kind {self.kind} needs a target")
        elif self.kind == "sns" and not patterns.matches(patterns.SNS_TOPIC_ARN, t):
            raise ValueError(f"receiver {self.name}: {t!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        elif self.kind == "webhook":
            url = urllib.parse.urlsplit(t)
            if url.scheme != "https" or not url.hostname:
                raise ValueError(f"receiver {self.name}: {t!r} is not an https URL")
            if url.username or url.password or url.query:
                # Config holds no secret: a URL carrying credentials or a token belongs in a secret store.
                raise ValueError(f"receiver {self.name}: the webhook URL must not carry credentials or a query string")
        return self


class ObservabilityConfig(StrictModel):
    """Prometheus storage and where Alertmanager sends alerts."""

    prometheus_retention_days: int = Field(default=15, ge=1, le=3650, description="Prometheus retention, days.")
    prometheus_volume_gib: int = Field(
        default=100, ge=10, le=16384,
        description="Prometheus' encrypted gp3 volume, GiB (retention by size stops at 85% of it).",
    )
    alert_receivers: tuple[AlertReceiver, ...] | None = Field(
        default=None,
        description="Alertmanager receivers, the first also taking alerts no other route matches; null: the "
        "chart's 'null' receiver (refused for environment prod).",
    )

    @field_validator("alert_receivers")
    @classmethod
    def _unique(cls, value: tuple[AlertReceiver, ...] | None) -> tuple[AlertReceiver, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one receiver (kind null discards alerts explicitly)")
            names = [r.name for r in value]
            if len(set(names)) != len(names):
                raise ValueError(f"receiver names must be unique: {names}")
        return value

    def sns_topic_arns(self) -> tuple[str, ...]:
        return tuple(r.target for r in self.alert_receivers or () if r.kind == "sns" and r.target)


def _validate_tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of tag key to value")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise ValueError(f"tag key {shown(key)} must be 1-128 characters and not start with 'aws:'")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)) or len(str(val)) > 256:
            raise ValueError(f"tag {shown(key)} must have a string value of at most 256 characters")
        out[key] = str(val)
    missing = [k for k in REQUIRED_TAGS if not out.get(k)]
    if missing:
        raise ValueError(f"must include {', '.join(REQUIRED_TAGS)}; missing or blank: {', '.join(missing)}")
    return out


class StackConfig(StrictModel):
    """Everything under `llm-fleet:` in a stack's config, one field per config key."""

    workload: Workload = Field(description="What the service owes its users: load and latency SLOs.")
    model: ModelSpec = Field(description="The model served and its context window.")
    fleet: FleetOptions = Field(description="Region, AZs, instance types and precisions the sizing may use.")
    budget: BudgetConfig = Field(description="Monthly spending cap and alert threshold.")
    ingress: IngressConfig = Field(description="Public endpoint: hostname, TLS, JWT, rate limit, source CIDRs.")
    tags: dict[str, str] = Field(description="Tags on every AWS resource; must include environment, cost-center, owner.")
    weights: WeightsConfig = Field(description="Model revision, hydrator image and NVMe mount path.")
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="VPC CIDR and AZ names.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="EKS version, endpoint access, system nodes.")
    gpu_nodes: GpuNodesConfig = Field(
        default_factory=GpuNodesConfig, description="GPU node root volume, capacity reservations, warm pool state."
    )
    observability: ObservabilityConfig = Field(
        default_factory=ObservabilityConfig, description="Prometheus retention and volume, Alertmanager receivers."
    )
    deployer: DeployerConfig = Field(
        default_factory=DeployerConfig,
        description="The in-VPC CodeBuild deployer of the workloads project (private endpoint only).",
    )
    tco: TcoConfig = Field(
        default_factory=TcoConfig,
        description="Self-host or API: daily demand profile, on-call staffing, reservations, APIs compared.",
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> dict[str, str]:
        return _validate_tags(value)

    @property
    def region(self) -> str:
        return self.fleet.region

    def sizing_spec(self) -> SizingSpec:
        return SizingSpec(workload=self.workload, model=self.model, fleet=self.fleet)

    @property
    def regional_hostname(self) -> str:
        """`ingress.regional_hostname`, or its default: the region after the hostname's first label."""
        if self.ingress.regional_hostname:
            return self.ingress.regional_hostname
        first, _, rest = self.ingress.hostname.partition(".")
        return f"{first}.{self.region}.{rest}"

    @property
    def deploys_in_vpc(self) -> bool:
        """A private-only endpoint is reachable from inside the VPC only: the workloads project, and
        the gates that query the cluster, run in the in-VPC deployer."""
        return not self.cluster.endpoint_public_access


# Config keys are the StackConfig fields; the order is the documentation order.
STACK_SECTIONS = tuple(StackConfig.model_fields)


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (for 'did you mean' hints)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part)) or next(
            (f for f in current.model_fields.values() if f.alias == str(part)), None)
        if field is None:
            return None
        ann = field.annotation
        candidates = [a for a in typing.get_args(ann) if isinstance(a, type)] or [ann]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _key(part: Any) -> str:
    """A key as shown in a message: plain when it is a simple name, quoted otherwise."""
    text = str(part)
    return text if text and text.isprintable() and " " not in text and len(text) <= 64 else shown(text, 64)


# At most this many problems are listed in one message; the rest are counted.
MAX_PROBLEMS_SHOWN = 20


def capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_SHOWN:
        return problems
    return problems[:MAX_PROBLEMS_SHOWN] + [f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more"]


def joined_problems(problems: list[str]) -> str:
    """`a` for one problem, `N problems: a; b; ...` for several (at most MAX_PROBLEMS_SHOWN listed)."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems: " + "; ".join(capped(problems))


def problem_lines(exc: ValidationError, root: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """One line per pydantic error, keys named `prefix` + `section.field`; values through `shown`.

    The one formatter of config errors (stack config, workload file, rollout plan): the key path,
    the value (bounded, never a whole expanded document) and what is allowed; for an unknown key,
    the closest allowed one when `root` (the model validated) is given.
    """
    import difflib

    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "__root__")
        path = f"{prefix}{'.'.join(_key(p) for p in loc)}" if loc else (prefix.rstrip(".:") or "(document)")
        value = err.get("input")
        msg = clip(err["msg"].removeprefix("Value error, ").replace("\n", " "), 300)
        if err["type"] == "extra_forbidden":
            owner = _model_at(root, loc[:-1])
            known = sorted(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
            extra = f"; did you mean {hint[0]!r}?" if hint else "; remove it or check the spelling"
            if known:
                extra += f" (allowed: {', '.join(known)})"
            lines.append(f"{path}: unknown key{extra}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        elif isinstance(value, (dict, list)) and err["type"] not in ("list_type", "dict_type", "model_type"):
            lines.append(f"{path}: {msg}")  # a rule about the whole mapping or list
        elif value == "":
            lines.append(f"{path}: is blank; fill it in (the comment above it in the stack file says with what)")
        else:
            lines.append(f"{path}: {shown(value)} is not allowed; {msg}")
    return lines


def _parse_error(message: str, source: str) -> UserError:
    return UserError(f"{source}: {message}" if source else message)


def parse_stack_config(entries: dict[str, Any], source: str = "") -> StackConfig:
    """Validate a stack's config: full keys (`llm-fleet:workload`, `aws:region`) to values.

    Values are what YAML (or `pulumi.Config.get_object`) gives: mappings for our sections, a
    string for `aws:region`. Raises UserError naming every bad key, its value and what is allowed.
    """

    problems: list[str] = []
    sections: dict[str, Any] = {}
    region: Any = None
    for key in sorted(entries, key=str):
        value = entries[key]
        if not isinstance(key, str) or ":" not in key:
            hint = f"; did you mean '{NAMESPACE}{key}'?" if str(key) in STACK_SECTIONS else ""
            problems.append(
                f"{_key(key)}: config keys must be namespaced ('{NAMESPACE}<key>' or 'aws:<key>'){hint}"
            )
            continue
        namespace, _, name = key.partition(":")
        if namespace not in ALLOWED_NAMESPACES:
            problems.append(
                f"{_key(key)}: namespace {shown(namespace)} is not allowed; use '{NAMESPACE}<key>' or 'aws:<key>'"
            )
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            problems.append(
                f"{_key(key)}: is an encrypted secret; no llm-fleet key holds a secret, set it in plain text"
            )
            continue
        if namespace == PROJECT:
            sections[name.removeprefix("config:")] = value  # old engines send `llm-fleet:config:<key>`
        elif key == "aws:region":
            region = value
    if region is None:
        problems.append("aws:region: required key is missing (set it with `pulumi config set aws:region us-east-1`)")
    elif not isinstance(region, str) or not patterns.matches(patterns.REGION, region):
        problems.append(f"aws:region: {shown(region)} is not allowed; an AWS region name like us-east-1")
        region = None
    fleet = sections.get("fleet")
    if region is not None and isinstance(fleet, dict):
        if "region" not in fleet:
            sections["fleet"] = {**fleet, "region": region}
        elif fleet["region"] != region:
            problems.append(
                f"{NAMESPACE}fleet.region: {shown(fleet['region'])} is not allowed; it must equal aws:region "
                f"({region!r}): set both to the region you deploy to"
            )
    elif region is not None and fleet is None:
        sections["fleet"] = {"region": region}
    try:
        cfg = StackConfig.model_validate(sections)
    except ValidationError as exc:
        problems.extend(problem_lines(exc, StackConfig, NAMESPACE))
        cfg = None
    if cfg is not None and not problems:
        problems.extend(_cross_checks(cfg))
    if problems:
        raise _parse_error(joined_problems(problems), source)
    assert cfg is not None
    return cfg


def _cross_checks(cfg: StackConfig) -> list[str]:
    """Rules that span sections; each names the key to change."""
    problems = []
    region, azs = cfg.fleet.region, cfg.fleet.azs
    arn = cfg.ingress.tls_certificate_arn
    cert_region = arn.split(":")[3] if arn else region
    if cert_region != region:
        # "To use an ACM certificate with Elastic Load Balancing, you must request or import the
        # certificate in the same Region as your load balancer" (ACM user guide, "Supported
        # Regions"); the NLB listener would fail at `pulumi up`, long after a preview passed.
        problems.append(
            f"{NAMESPACE}ingress.tls_certificate_arn: {shown(arn)} is not allowed; it is a certificate in "
            f"{cert_region} and the stack deploys to {region}: ACM certificates are regional, so request or "
            f"import one in {region} (`aws acm list-certificates --region {region}`)"
        )
    named = cfg.network.availability_zones
    if named is not None:
        if len(named) != azs:
            problems.append(
                f"{NAMESPACE}network.availability_zones: {shown(list(named))} is not allowed; list exactly "
                f"fleet.azs = {azs} AZ names"
            )
        wrong = [n for n in named if not n.startswith(region)]
        if wrong:
            problems.append(
                f"{NAMESPACE}network.availability_zones: {shown(wrong)} is not allowed; AZs must be in {region}"
            )
    if cfg.fleet.engine != "vllm":
        # The sizing library models other engines (`predict`, `size --workload`), but
        # a stack deploys vLLM (infra/program/serving/vllm.py): its plan must be sized for vLLM.
        problems.append(
            f"{NAMESPACE}fleet.engine: {cfg.fleet.engine!r} is not allowed; the stack deploys vLLM, so use 'vllm' "
            f"({cfg.fleet.engine} is for `predict` and `size --workload`)"
        )
    problems.extend(_kubernetes_version_checks(cfg))
    if cfg.observability.alert_receivers is None and cfg.tags.get("environment") == PROD_ENVIRONMENT:
        problems.append(
            f"{NAMESPACE}observability.alert_receivers: unset is not allowed for environment {PROD_ENVIRONMENT}; the "
            "chart's default routes every alert to its 'null' receiver: list receivers (kind sns or webhook), or "
            "[{name: discard, kind: 'null'}] to discard alerts explicitly"
        )
    if cfg.regional_hostname == cfg.ingress.hostname:
        problems.append(
            f"{NAMESPACE}ingress.regional_hostname: {shown(cfg.regional_hostname)} is not allowed; it must differ from "
            "ingress.hostname (each region needs its own name for its health gate)"
        )
    if cfg.deploys_in_vpc and cfg.deployer.access_token_secret_arn is None:
        problems.append(
            f"{NAMESPACE}deployer.access_token_secret_arn: required key is missing; with cluster.endpoint_public_access "
            "false the workloads project runs in the in-VPC deployer, which logs in to the Pulumi backend with the "
            "token in this Secrets Manager secret"
        )
    reservations = cfg.gpu_nodes.capacity_reservation_ids
    key = f"{NAMESPACE}gpu_nodes.capacity_reservation_ids"
    if cfg.fleet.capacity_type == "on-demand":
        if reservations or cfg.gpu_nodes.capacity_reservation_resource_group_arn:
            problems.append(
                f"{key}: {shown(reservations)} is not allowed; reservations are only used with "
                "fleet.capacity_type capacity-block or reservation"
            )
    else:
        group = cfg.gpu_nodes.capacity_reservation_resource_group_arn
        group_key = f"{NAMESPACE}gpu_nodes.capacity_reservation_resource_group_arn"
        if group is not None:
            if cfg.fleet.capacity_type == "capacity-block":
                # The EKS guide's capacity-block launch template names the block's reservation id
                # (capacity-blocks-mng); targeting a group is documented for reservations only.
                problems.append(f"{group_key}: {shown(group)} is not allowed; capacity blocks are targeted by id "
                                "(gpu_nodes.capacity_reservation_ids)")
            if reservations:
                problems.append(f"{key}: {shown(reservations)} is not allowed; target reservations by id or by "
                                "resource group, not both")
            if named is None:
                problems.append(f"{group_key}: {group!r} needs network.availability_zones (the AZs of its "
                                "reservations)")
        elif len(reservations) != azs:
            problems.append(
                f"{key}: {shown(reservations)} is not allowed; fleet.capacity_type {cfg.fleet.capacity_type} needs one "
                f"reservation id per AZ ({azs} entries, AZ name -> cr-...)"
            )
        wrong = [n for n in reservations if not n.startswith(region)]
        if wrong:
            problems.append(f"{key}: {shown(wrong)} is not allowed; AZs must be in {region}")
        if named is not None and group is None and set(named) != set(reservations):
            problems.append(
                f"{key}: AZs {sorted(reservations)} do not match network.availability_zones {sorted(named)}"
            )
    pgs = cfg.gpu_nodes.placement_group_names
    stack_azs = set(named or reservations or ())
    if pgs and stack_azs and set(pgs) != stack_azs:
        problems.append(f"{NAMESPACE}gpu_nodes.placement_group_names: AZs {sorted(pgs)} do not match the stack's "
                        f"AZs {sorted(stack_azs)}")
    elif pgs and not stack_azs:
        problems.append(f"{NAMESPACE}gpu_nodes.placement_group_names: {pgs!r} needs network.availability_zones "
                        "(placement groups live in one AZ each)")
    return problems


ENVIRONMENT_SEPARATORS = ("-", "_", ".")


def stack_warnings(stack: str, cfg: StackConfig, environment: str | None = None) -> list[str]:
    """What looks copied from another stack but is not wrong enough to refuse.

    `environment` is the environment whose rollout plan (stacks/<env>.yaml) lists the stack, if
    any: its `tags.environment` should name it. Otherwise the tag should be the stack's name or
    its prefix (`prod` for `prod-us-west-2`). A `region` tag should be the stack's region.
    """
    out = []
    tag = cfg.tags.get("environment", "")
    key = f"{NAMESPACE}tags.environment"
    if environment is not None and tag != environment:
        out.append(f"{key}: {shown(tag)} but stacks/{environment}.yaml lists stack {stack!r}; "
                   f"tag it environment: {environment} (cost reports and budgets group by this tag)")
    elif environment is None and not (stack == tag or stack.startswith(tuple(tag + s for s in ENVIRONMENT_SEPARATORS))):
        out.append(f"{key}: {shown(tag)} does not match stack {stack!r} (copied from another stack?); "
                   f"use the stack's environment, e.g. {stack.split('-')[0]!r}")
    region_tag = cfg.tags.get("region")
    if region_tag is not None and region_tag != cfg.region:
        out.append(f"{NAMESPACE}tags.region: {shown(region_tag)} but the stack deploys to {cfg.region}")
    return out


def _kubernetes_version_checks(cfg: StackConfig) -> list[str]:
    """The version must be in standard support on the clock's day, or in extended support with
    upgrade_policy EXTENDED chosen explicitly (EKS user guide, kubernetes-versions)."""
    from infra.core import clock
    from infra.core.catalog.eks import version_problem
    from infra.core.catalog.prices import load_price_book

    c = cfg.cluster
    book = load_price_book()
    std = book.service(cfg.region, "eks_cluster_usd_per_hour")
    ext = book.service(cfg.region, "eks_cluster_extended_usd_per_hour")
    price = (f"${ext.usd} instead of ${std.usd} per cluster-hour in {cfg.region}" if std and ext
             else "the extended-support price per cluster-hour")
    problem = version_problem(c.kubernetes_version, c.upgrade_policy, clock.today(), extended_price=price)
    if problem:
        return [f"{NAMESPACE}cluster.kubernetes_version: {c.kubernetes_version!r} is not allowed; {problem}"]
    return []


def project_config_defaults(project_dir: Path) -> dict[str, Any]:
    """Defaults declared in Pulumi.yaml's `config:` (what the engine merges into every stack)."""
    path = Path(project_dir) / "Pulumi.yaml"
    if not path.is_file():
        return {}
    doc = read_yaml_file(path, "Pulumi.yaml")
    out: dict[str, Any] = {}
    decls = (doc or {}).get("config") or {} if isinstance(doc, dict) else {}
    for key, decl in decls.items() if isinstance(decls, dict) else ():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(decl, dict) and ("default" in decl or "value" in decl):
            out[full] = decl.get("default", decl.get("value"))
        elif not isinstance(decl, dict):
            out[full] = decl
    return out


def stack_file_path(stack: str, project_dir: Path | str = Path(".")) -> Path:
    """`Pulumi.<stack>.yaml` of the project (the name checked, the file not required to exist)."""
    if not patterns.matches(patterns.STACK, stack):
        raise InputError("--stack", stack, "a stack name of letters, digits, '-', '_' and '.' (starting with a letter or digit)")
    return Path(project_dir) / f"Pulumi.{stack}.yaml"


def stack_file_config(stack: str, project_dir: Path | str = Path(".")) -> dict[str, Any]:
    """The `config:` mapping of `Pulumi.<stack>.yaml` as written (full keys to values), not validated."""
    project_dir = Path(project_dir)
    path = stack_file_path(stack, project_dir)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        raise InputError("--stack", stack, f"a stack with a Pulumi.<stack>.yaml file; found: {', '.join(known) or 'none'}")
    doc = read_yaml_file(path, "--stack")
    if not isinstance(doc, dict):
        raise UserError(f"{path.name}: expected a mapping with a 'config:' key, got {type(doc).__name__}")
    config = doc.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UserError(f"{path.name}: config: expected a mapping of keys to values, got {type(config).__name__}")
    return config


def stack_file_entries(stack: str, project_dir: Path | str = Path(".")) -> dict[str, Any]:
    """What the engine would hand the program: Pulumi.yaml's defaults under `Pulumi.<stack>.yaml`'s
    `config:` mapping (full keys to values). Not validated yet."""
    return {**project_config_defaults(Path(project_dir)), **stack_file_config(stack, project_dir)}


def load_stack_config(stack: str, project_dir: Path | str = Path(".")) -> StackConfig:
    """The CLI's loader: `Pulumi.<stack>.yaml` (its `config:` mapping) over Pulumi.yaml defaults."""
    return parse_stack_config(stack_file_entries(stack, project_dir), source=f"Pulumi.{stack}.yaml")
