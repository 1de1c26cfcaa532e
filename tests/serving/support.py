"""Shared by the serving tests: the prod stack's config and plan, a contrasting variant, and a
mock run of the Serving component (fixtures in conftest.py)."""
from __future__ import annotations

import copy

from infra.core.config import StackConfig, load_stack_config
from infra.core.paths import REPO_ROOT as PROJECT
from infra.core.resolve import resolve
from infra.program.serving.spec import ServingSpec
BUCKET = "llm-fleet-prod-weights-123456789012-us-east-1"
ACCOUNT = "123456789012"
CLUSTER = "llm-fleet-prod"
CLUSTER_ARN = f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{CLUSTER}"
# What the base project exports for the autoscaler (its ClusterAutoscalerIdentity).
AUTOSCALER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/cluster-autoscaler-role-0abc123"
AUTOSCALER_ASSOCIATION = "a-0123456789abcdef0"
TAGS = {"environment": "prod", "cost-center": "ml-platform", "owner": "sre-llm@example.com", "llm-fleet:stack": "prod"}


def prod_config() -> StackConfig:
    return load_stack_config("prod", PROJECT)


def variant_config() -> StackConfig:
    """Llama 3.1 8B in BF16: TP=1, eight replicas per node, no warm spares, TLS at Envoy."""
    doc = copy.deepcopy(prod_config().model_dump(mode="json"))
    doc["model"].update(name="llama-3.1-8b", served_name="llama-3.1-8b-instruct")
    doc["fleet"]["precisions"] = ["bf16"]
    doc["workload"].update(concurrent_requests=100, burst_factor=2.0, output_tokens_per_s=None)
    doc["ingress"].update(tls_certificate_arn=None, tls_secret_name="llm-example-com-tls",
                          rate_limit_requests_per_minute=120, allowed_source_cidrs=["203.0.113.0/24"])
    return StackConfig.model_validate(doc)


def make_spec(cfg: StackConfig, stack: str = "variant") -> ServingSpec:
    """The serving spec of a stack with config `cfg`, its plan from the resolver."""
    entries = {f"llm-fleet:{k}": v for k, v in cfg.model_dump(mode="json", exclude_none=True).items()}
    entries["aws:region"] = cfg.region
    return ServingSpec(plan=resolve(stack, entries=entries).plan, config=cfg, weights_bucket=BUCKET)


_SPECS: dict[str, ServingSpec] = {}


def slow_burst_config() -> StackConfig:
    """prod with a 2x burst that ramps over 15 minutes and one warm spare node per AZ: a plan
    with burst headroom (replicas_max above the baseline)."""
    doc = copy.deepcopy(prod_config().model_dump(mode="json"))
    doc["workload"].update(burst_factor=2.0, burst_ramp_s=900, burst_hold_s=120, output_tokens_per_s=None)
    doc["fleet"]["warm_spares_per_az"] = 1
    return StackConfig.model_validate(doc)


def spec_for(name: str) -> ServingSpec:
    """"prod", "8b-tp1" (variant_config) or "slow-burst" (slow_burst_config)."""
    if name not in _SPECS:
        if name == "prod":
            _SPECS[name] = make_spec(prod_config(), "prod")
        elif name == "slow-burst":
            _SPECS[name] = make_spec(slow_burst_config(), "slow-burst")
        else:
            _SPECS[name] = make_spec(variant_config())
    return _SPECS[name]


def run_serving(spec: ServingSpec):
    """Register Serving for `spec` under the offline plan's mocks (see mockrun.py)."""
    from infra.program.serving import Serving, ServingArgs, kubernetes_provider
    from . import mockrun

    def build():
        provider = kubernetes_provider("k8s", "apiVersion: v1\nkind: Config\n")
        return Serving("serving", ServingArgs(
            plan=spec.plan, config=spec.config, k8s_provider=provider, cluster_name=CLUSTER,
            weights_bucket_name=spec.weights_bucket, autoscaler_role_arn=AUTOSCALER_ROLE_ARN,
            autoscaler_association_id=AUTOSCALER_ASSOCIATION, tags=TAGS,
        ))

    return mockrun.run(build, region=spec.config.region)
