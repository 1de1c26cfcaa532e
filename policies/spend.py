"""FinOps rules: the spend cap, the GPU instance allowlist, node group size, required tags.

`gpu-spend-cap` runs per GPU node group (a ResourceValidationPolicy, so it also blocks
`pulumi preview`, where stack policies do not run): one group's worst case - (maxSize + warm
pool) x instance price x HOURS_PER_MONTH - must fit in the whole budget. `gpu-spend-cap-stack`
runs on the stack (at `pulumi up` and in the offline plan): all GPU groups plus fixed
infrastructure, worst case, as `infra.core.cost` computes it over the stack's resource graph
(property dependencies included: they lead a node group to its launch template), must fit.
Prices need the region: it comes from the policy config (`region`), because a policy sees
resources, not the provider's configuration.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.core.catalog import HOURS_PER_MONTH, load_catalog
from infra.core.cost import Assumptions, cost_of_document, node_group_shape, node_hour_price
from infra.core.graph import (
    BUCKET,
    BUCKET_V2,
    CLUSTER,
    EIP,
    KMS_KEY,
    LAUNCH_TEMPLATE,
    LOAD_BALANCER,
    NAT_GATEWAY,
    NODE_GROUP,
    ROUTE53_HEALTH_CHECK,
    ROUTE53_ZONE,
    Node,
    ResourceGraph,
    as_decimal,
    graph_from_resources,
    to_plain,
)
from policies._support import as_int, config_with_defaults, get, is_gpu_type, listify, mapping

_COST_PROPERTIES: dict[str, dict[str, Any]] = {
    "monthly_budget_usd": {"type": "number", "minimum": 0, "description": "Monthly budget in USD the worst case must fit in."},
    "region": {"type": "string", "description": "AWS region whose prices apply (the stack's aws:region)."},
    "usd_per_gpu_hour": {"type": "number", "minimum": 0,
                         "description": "One price per GPU-hour for every GPU type without an instance_usd_per_hour."},
    "instance_usd_per_hour": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                              "description": "Price override per instance type, USD per instance-hour."},
    "service_usd": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                    "description": "Price override per service key of infra/core/catalog/prices.yaml."},
    "scale_events_per_month": {"type": "integer", "minimum": 0, "default": 30,
                               "description": "Burst cycles a month that hydrate every node above minSize (worst case)."},
    "weights_gb": {"type": "number", "minimum": 0, "description": "Model weights size in GB (S3 storage, hydration)."},
    "stream_bytes_per_output_token": {"type": "integer", "minimum": 1, "default": 256,
                                      "description": "Bytes through the NLB per streamed output token."},
}
SPEND_CAP_SCHEMA = PolicyConfigSchema(properties=_COST_PROPERTIES, required=["monthly_budget_usd", "region"])

ALLOWLIST_PROPERTIES: dict[str, dict[str, Any]] = {
    "allowed_instance_types": {
        "type": "array", "items": {"type": "string"},
        "default": ["p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p5.4xlarge",
                    "g6e.xlarge", "g6e.2xlarge", "g6.xlarge", "g6.2xlarge", "g5.xlarge", "g5.2xlarge"],
        "description": "GPU instance types node groups and launch templates may use.",
    },
}
MAX_SIZE_PROPERTIES: dict[str, dict[str, Any]] = {
    "max_nodes_per_group": {"type": "integer", "minimum": 1, "default": 32,
                            "description": "Largest maxSize a GPU node group may have (one group per AZ)."},
}
TAG_PROPERTIES: dict[str, dict[str, Any]] = {
    "required_tags": {"type": "array", "items": {"type": "string"}, "default": ["environment", "cost-center", "owner"],
                      "description": "Tags every cost-bearing resource must carry (provider default tags count)."},
}

# Resources that cost money or carry the cost-center trail; each must be tagged.
TAGGABLE_TYPES = frozenset({
    CLUSTER, NODE_GROUP, NAT_GATEWAY, EIP, BUCKET, BUCKET_V2, KMS_KEY, LOAD_BALANCER,
    "aws:ec2/vpc:Vpc", LAUNCH_TEMPLATE, "aws:cloudwatch/logGroup:LogGroup", ROUTE53_HEALTH_CHECK, ROUTE53_ZONE,
})


def _money(d: Decimal) -> str:
    return f"${d.quantize(Decimal('0.01')):,}"


def _assumptions(cfg: Mapping[str, Any]) -> Assumptions:
    keys = set(Assumptions.__dataclass_fields__)
    return Assumptions.from_mapping({k: v for k, v in cfg.items() if k in keys and v is not None}, "policy config")


def _budget_and_region(cfg: Mapping[str, Any], report_violation: ReportViolation, who: str) -> tuple[Decimal | None, str | None]:
    budget = as_decimal(cfg.get("monthly_budget_usd"))
    region = cfg.get("region")
    if budget is None:
        report_violation(f"{who} must be configured with monthly_budget_usd (the spend cap fails closed without a budget)")
    if not region:
        report_violation(f"{who} must be configured with region (prices depend on it)")
    return budget, (str(region) if region else None)


def validate_gpu_spend_cap(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """One GPU node group's worst case must fit in the whole monthly budget."""
    if args.resource_type != NODE_GROUP:
        return
    catalog = load_catalog()
    # The props as handed (engine proxies stay lazy: only what the shape reads must be known).
    shape = node_group_shape(Node(args.urn, args.resource_type, args.name, None, args.props))
    if not any(is_gpu_type(t, catalog.instances) for t in shape.instance_types):
        return
    cfg = config_with_defaults(_COST_PROPERTIES, args.get_config())
    budget, region = _budget_and_region(cfg, report_violation, f"GPU node group {args.name}")
    if budget is None or region is None:
        return
    if shape.max_size is None:
        report_violation(f"GPU node group {args.name} must declare scalingConfig.maxSize (the worst case is unbounded)")
        return
    assume = _assumptions(cfg)
    priced = [(t, *node_hour_price(t, region, catalog=catalog, assumptions=assume, capacity_type=shape.capacity_type))
              for t in shape.instance_types]
    missing = [f"{t} ({why})" for t, price, why in priced if price is None]
    if missing:
        report_violation(
            f"GPU node group {args.name} must use instance types with a known price in {region}: "
            f"{', '.join(missing)}; set instance_usd_per_hour (or usd_per_gpu_hour) in the policy config"
        )
        return
    itype, price, _ = max(priced, key=lambda p: p[1])
    pool = shape.billed_pool()[2]  # RUNNING pool instances at the top of a burst; STOPPED bill EBS only
    nodes = shape.max_size + pool
    worst = price * nodes * HOURS_PER_MONTH
    if worst > budget:
        report_violation(
            f"GPU node group {args.name} must keep its worst case within the monthly budget: "
            f"(maxSize {shape.max_size} + RUNNING warm pool {pool}) x {itype} at ${price}/h x {HOURS_PER_MONTH} h = "
            f"{_money(worst)}/month > budget {_money(budget)}/month"
        )


def _stack_graph(args: StackValidationArgs, region: str, plan: Mapping[str, Any] | None = None) -> ResourceGraph:
    """The stack's resource graph from the engine's PolicyResources, their parents and property
    dependencies included (what resolves a node group's launch template)."""
    resources = []
    for r in args.resources:
        parent = getattr(r, "parent", None)
        deps = getattr(r, "property_dependencies", None) or {}
        resources.append({
            "urn": r.urn, "type": r.resource_type, "name": r.name,
            "parent": getattr(parent, "urn", None) if parent is not None else None,
            "inputs": to_plain(r.props),
            "propertyDependencies": {str(k): [d.urn for d in v] for k, v in deps.items()},
        })
    return graph_from_resources(resources, region, plan=plan)


def validate_gpu_spend_cap_stack(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """All GPU node groups plus fixed infrastructure, worst case, must fit in the budget."""
    cfg = config_with_defaults(_COST_PROPERTIES, args.get_config())
    budget, region = _budget_and_region(cfg, report_violation, "the stack")
    if budget is None or region is None:
        return
    plan = cfg.get("_plan") if isinstance(cfg.get("_plan"), Mapping) else None  # offline only
    report = cost_of_document(_stack_graph(args, region, plan), assumptions=_assumptions(cfg))
    if report.unpriced:
        report_violation("every resource of the stack must have a known price for the spend cap to hold: "
                         + "; ".join(report.unpriced))
    worst = report.total_month("worst")
    if worst > budget:
        gpu = report.gpu_month("worst")
        report_violation(
            f"the stack must keep its worst case within the monthly budget: {_money(worst)}/month "
            f"({report.gpu['worst'].nodes} GPU nodes incl. warm pools {_money(gpu)}, everything else "
            f"{_money(worst - gpu)}) > budget {_money(budget)}/month"
        )


def validate_gpu_instance_allowlist(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """GPU node groups and launch templates must use allowed GPU instance types only."""
    cfg = config_with_defaults(ALLOWLIST_PROPERTIES, args.get_config())
    allowed = {str(t) for t in listify(cfg.get("allowed_instance_types"))}
    catalog = load_catalog()
    if args.resource_type == NODE_GROUP:
        types = [t for t in listify(args.props.get("instanceTypes")) if isinstance(t, str)]
    elif args.resource_type == LAUNCH_TEMPLATE:
        t = args.props.get("instanceType")
        types = [t] if isinstance(t, str) else []
    else:
        return
    bad = [t for t in types if is_gpu_type(t, catalog.instances) and t not in allowed]
    if bad:
        report_violation(
            f"{args.name} must use an allowed GPU instance type: {', '.join(bad)} is not in "
            f"{', '.join(sorted(allowed)) or '(empty allowlist)'}"
        )


def validate_gpu_node_group_max_size(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A GPU node group's maxSize must not exceed the configured per-group ceiling."""
    if args.resource_type != NODE_GROUP:
        return
    catalog = load_catalog()
    types = [t for t in listify(args.props.get("instanceTypes")) if isinstance(t, str)]
    if not any(is_gpu_type(t, catalog.instances) for t in types):
        return
    cfg = config_with_defaults(MAX_SIZE_PROPERTIES, args.get_config())
    limit = as_int(cfg.get("max_nodes_per_group")) or 0
    max_size = as_int(get(args.props, "scalingConfig", "maxSize"))
    if max_size is not None and max_size > limit:
        report_violation(f"GPU node group {args.name} must have scalingConfig.maxSize <= {limit}; it has {max_size}")


def validate_required_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Cost-bearing resources must carry the required tags (provider default tags count)."""
    if args.resource_type not in TAGGABLE_TYPES:
        return
    cfg = config_with_defaults(TAG_PROPERTIES, args.get_config())
    required = [str(t) for t in listify(cfg.get("required_tags"))]
    tags: dict[str, Any] = {}
    provider = getattr(args, "provider", None)
    if provider is not None:
        tags.update(mapping(get(getattr(provider, "props", {}), "defaultTags", "tags")))
    tags.update(mapping(args.props.get("tags")))
    missing = [t for t in required if not str(tags.get(t) or "").strip()]
    if missing:
        report_violation(f"{args.name} must be tagged with {', '.join(required)}; missing: {', '.join(missing)}")


gpu_spend_cap = ResourceValidationPolicy(
    name="gpu-spend-cap",
    description=f"A GPU node group's worst case (maxSize + RUNNING warm pool) x price x {HOURS_PER_MONTH} h must fit in "
                "the monthly budget.",
    validate=validate_gpu_spend_cap,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=SPEND_CAP_SCHEMA,
)
gpu_spend_cap_stack = StackValidationPolicy(
    name="gpu-spend-cap-stack",
    description="The stack's worst case (all GPU groups, warm pools, hydration, fixed infrastructure) must fit in the budget.",
    validate=validate_gpu_spend_cap_stack,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=SPEND_CAP_SCHEMA,
)
gpu_instance_allowlist = ResourceValidationPolicy(
    name="gpu-instance-allowlist",
    description="GPU node groups and launch templates must use allowed GPU instance types.",
    validate=validate_gpu_instance_allowlist,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=ALLOWLIST_PROPERTIES),
)
gpu_node_group_max_size = ResourceValidationPolicy(
    name="gpu-node-group-max-size",
    description="A GPU node group's maxSize must not exceed the configured ceiling.",
    validate=validate_gpu_node_group_max_size,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=MAX_SIZE_PROPERTIES),
)
required_tags = ResourceValidationPolicy(
    name="required-tags",
    description="Cost-bearing resources must carry the environment, cost-center and owner tags.",
    validate=validate_required_tags,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=TAG_PROPERTIES),
)

POLICIES = [gpu_spend_cap, gpu_spend_cap_stack, gpu_instance_allowlist, gpu_node_group_max_size, required_tags]
