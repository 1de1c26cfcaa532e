"""The pricers: one small function per priced resource type, registered by type token.

A pricer takes one graph node and the `PricingContext` (prices, overrides, the facts computed
once from the graph) and returns that node's line items, leaving notes on the context. Pricers
run in registration order, each over its types' nodes in graph order: that is the order of the
report's items. Pricing a new type is one `@pricer(TYPE)` function here and its test. Pure.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from infra.core import clock, patterns
from infra.core.catalog import HOURS_PER_MONTH
from infra.core.catalog.eks import extended_support_on
from infra.core.catalog.prices import PriceRow
from infra.core.cost.context import GroupFacts, PricingContext, usd_text
from infra.core.cost.nodegroup import ebs_gb
from infra.core.cost.report import (
    DNS_HEALTH_CHECKS,
    DNS_QUERIES,
    DNS_ZONES,
    EKS,
    GPU_NODES,
    GPU_WARM_POOL,
    HYDRATION,
    KMS,
    LOAD_BALANCER,
    NAT,
    NODE_STORAGE,
    PUBLIC_IPV4,
    REGIONAL,
    S3,
    SYSTEM_NODES,
    ZERO,
    LineItem,
)
from infra.core.graph import (
    BUCKET,
    BUCKET_V2,
    CLUSTER,
    EIP,
    ENVOY_PROXY,
    K8S_SERVICE,
    KMS_KEY,
    LAUNCH_TEMPLATE,
    LOAD_BALANCER as AWS_LB,
    NAT_GATEWAY,
    NODE_GROUP,
    ROUTE53_HEALTH_CHECK,
    ROUTE53_RECORD,
    ROUTE53_ZONE,
    Node,
    as_bool,
    as_int,
    is_unknown,
    listify,
    mapping_at,
    own_az,
)

Pricer = Callable[[Node, PricingContext], list[LineItem]]

GB_PER_NLCU_HOUR = Decimal(1)  # NLB TCP: 1 GB processed per hour = 1 NLCU
ACTIVE_FLOWS_PER_NLCU = Decimal(100000)
_NLB_TYPE_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-type"
_NLB_TARGET_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"
_SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"


@dataclass(frozen=True)
class Registration:
    types: tuple[str, ...]
    price: Pricer


REGISTRY: list[Registration] = []


def pricer(*types: str) -> Callable[[Pricer], Pricer]:
    """Register a pricer for resources of `types` (after every pricer registered so far)."""

    def register(fn: Pricer) -> Pricer:
        REGISTRY.append(Registration(tuple(types), fn))
        return fn

    return register


def pricers_for(type_: str) -> list[Pricer]:
    return [r.price for r in REGISTRY if type_ in r.types]


def price_graph(ctx: PricingContext) -> list[LineItem]:
    """Every line item of the context's graph, in registration order, then graph order."""
    items: list[LineItem] = []
    for registration in REGISTRY:
        for node in ctx.graph.of_type(*registration.types):
            items.extend(registration.price(node, ctx))
    return items


def _monthly(hourly: Decimal, counts: tuple[int, ...]) -> tuple[Decimal, ...]:
    return tuple(hourly * n * HOURS_PER_MONTH for n in counts)


def _hourly(component: str, az: str, name: str, detail: str, row: PriceRow) -> LineItem:
    """One resource billed by the hour, the same in every scenario."""
    amount = row.usd * HOURS_PER_MONTH
    return LineItem(component, az, name, f"{detail} @ {usd_text(row.usd)}/h", (amount,) * 3, row.source, row.confirmed)


# --- node groups: instances, warm pool, EBS ------------------------------------------------------


def _instance_items(group: GroupFacts, ctx: PricingContext) -> list[LineItem]:
    """The group's nodes and its warm pool, at the dearest of its instance types."""
    shape = group.shape
    if group.gpu:
        priced = [(t, *ctx.gpu_price(t, shape.name, shape.capacity_type)) for t in shape.instance_types]
    else:
        priced = [(t, *ctx.general_price(t, shape.name)) for t in shape.instance_types]
    known = [p for p in priced if p[1] is not None]
    dearest = max(known, key=lambda p: p[1]) if known else None
    if len(shape.instance_types) > 1 and dearest:
        ctx.note(f"{shape.name}: several instance types; priced at the dearest ({dearest[0]})")
    if shape.capacity_type.upper() == "SPOT":
        ctx.note(f"{shape.name}: SPOT capacity priced at on-demand (an upper bound)")
    if dearest is None:
        return []
    itype, price, source, confirmed = dearest
    lo, mid, hi = shape.sizes()
    items = [LineItem(GPU_NODES if group.gpu else SYSTEM_NODES, group.az, shape.name,
                      f"{lo}/{mid}/{hi} x {itype} @ {usd_text(price)}/h", _monthly(price, (lo, mid, hi)), source, confirmed)]
    if shape.has_pool:
        pool = shape.billed_pool()
        items.append(LineItem(
            GPU_WARM_POOL if group.gpu else SYSTEM_NODES, group.az, f"{shape.name} warm pool",
            f"{pool[0]}/{pool[1]}/{pool[2]} x {itype} ({shape.pool_state}; worst case counts the whole pool)",
            _monthly(price, pool), source, confirmed,
        ))
    return items


def _storage_items(node: Node, group: GroupFacts, ctx: PricingContext) -> list[LineItem]:
    """EBS of every node in the group and every pooled instance (stopped ones keep their volumes)."""
    shape = group.shape
    template = ctx.graph.ref(node, "launchTemplate", LAUNCH_TEMPLATE)
    disk_gb = ebs_gb(template) if template else (shape.disk_gb or ctx.assume.default_node_disk_gb)
    if shape.launch_template and template is None:
        ctx.note(f"{shape.name}: launch template not found in the document; EBS taken as {disk_gb} GB per node")
    if not disk_gb:
        return []
    counts = tuple(n + p for n, p in zip(shape.sizes(), shape.pooled()))
    gp3 = ctx.service("ebs_gp3_usd_per_gb_month")
    return [LineItem(NODE_STORAGE, group.az, shape.name, f"{counts[0]}/{counts[1]}/{counts[2]} nodes x {disk_gb} GB gp3",
                     tuple(gp3.usd * disk_gb * n for n in counts), gp3.source, gp3.confirmed)]


@pricer(NODE_GROUP)
def price_node_group(node: Node, ctx: PricingContext) -> list[LineItem]:
    """Instances (GPU or system), the warm pool and node storage of one node group."""
    group = ctx.facts.group(node)
    shape = group.shape
    if not shape.instance_types:
        ctx.unpriced.append(f"{shape.name}: instance types unknown")
        return []
    if shape.min_size is None or shape.max_size is None:
        lo, mid, hi = shape.sizes()
        ctx.note(f"{shape.name}: scalingConfig not fully known; missing sizes taken as {lo}/{mid}/{hi}")
    return _instance_items(group, ctx) + _storage_items(node, group, ctx)


# --- fixed infrastructure -------------------------------------------------------------------------


@pricer(CLUSTER)
def price_cluster(node: Node, ctx: PricingContext) -> list[LineItem]:
    """Standard support, or the extended-support price while the cluster's version is past
    standard support on the clock's day (eks_versions.yaml)."""
    version = node.inputs.get("version")
    if isinstance(version, str) and not is_unknown(version) and extended_support_on(version, clock.today()):
        return [_hourly(EKS, REGIONAL, node.name, f"1 cluster, Kubernetes {version} in extended support",
                        ctx.service("eks_cluster_extended_usd_per_hour"))]
    return [_hourly(EKS, REGIONAL, node.name, "1 cluster", ctx.service("eks_cluster_usd_per_hour"))]


@pricer(NAT_GATEWAY)
def price_nat_gateway(node: Node, ctx: PricingContext) -> list[LineItem]:
    return [_hourly(NAT, own_az(node) or REGIONAL, node.name, "1 gateway", ctx.service("nat_gateway_usd_per_hour"))]


@pricer(EIP)
def price_public_ipv4(node: Node, ctx: PricingContext) -> list[LineItem]:
    return [_hourly(PUBLIC_IPV4, own_az(node) or REGIONAL, node.name, "1 address", ctx.service("public_ipv4_usd_per_hour"))]


# --- network load balancers ---------------------------------------------------------------------


def _is_nlb_service(inputs: Mapping[str, Any]) -> bool | None:
    """True: NLB; False: a classic ELB Service; None: not a LoadBalancer Service."""
    spec = mapping_at(inputs, "spec")
    if spec.get("type") != "LoadBalancer":
        return None
    ann = mapping_at(inputs, "metadata", "annotations")
    if str(ann.get(_NLB_TYPE_ANNOTATION, "")).lower() in ("nlb", "external", "nlb-ip") or _NLB_TARGET_ANNOTATION in ann:
        return True
    return spec.get("loadBalancerClass") == "service.k8s.aws/nlb" or False


def _nlcu(ctx: PricingContext) -> Decimal:
    """NLCUs of the declared load: streamed bytes per hour or active flows, whichever is more."""
    tokens = ctx.facts.output_tokens_per_s
    if not tokens:
        ctx.note("declared load unknown: NLB priced at 1 NLCU")
        return Decimal(1)
    gb_per_hour = tokens * 3600 * ctx.assume.stream_bytes_per_output_token / Decimal(10**9)
    return max(gb_per_hour / GB_PER_NLCU_HOUR, ctx.facts.concurrent_requests / ACTIVE_FLOWS_PER_NLCU)


def _nlb_item(name: str, inputs: Mapping[str, Any], ctx: PricingContext) -> LineItem:
    """An NLB: hourly + NLCUs (scaled with the GPU fleet at the burst) + a public IPv4 per AZ."""
    hour = ctx.service("nlb_usd_per_hour")
    lcu = ctx.service("nlb_lcu_usd_per_hour")
    ipv4 = ctx.service("public_ipv4_usd_per_hour")
    nlcu = _nlcu(ctx)
    gpu = ctx.facts.gpu
    worst_nodes, expected_nodes = gpu["worst"].nodes, gpu["expected"].nodes or 1
    scale = Decimal(worst_nodes) / Decimal(expected_nodes) if worst_nodes else Decimal(1)
    azs = ctx.facts.public_azs
    scheme = str(mapping_at(inputs, "metadata", "annotations").get(_SCHEME_ANNOTATION) or inputs.get("internal")
                 or "internet-facing")
    public = scheme in ("internet-facing", "False", "false")
    base = hour.usd * HOURS_PER_MONTH
    lcu_month = lcu.usd * nlcu * HOURS_PER_MONTH
    ip_month = ipv4.usd * azs * HOURS_PER_MONTH if public else ZERO
    return LineItem(
        LOAD_BALANCER, REGIONAL, name,
        f"NLB @ {usd_text(hour.usd)}/h + {nlcu.quantize(Decimal('0.001'))} NLCU @ {usd_text(lcu.usd)}/h"
        + (f" + {azs} public IPv4" if public else ""),
        (base + lcu_month + ip_month, base + lcu_month + ip_month, base + lcu_month * scale + ip_month),
        hour.source, hour.confirmed and lcu.confirmed,
    )


def _service_items(name: str, inputs: Mapping[str, Any], ctx: PricingContext) -> list[LineItem]:
    kind = _is_nlb_service(inputs)
    if kind is False:
        ctx.note(f"{name}: a classic ELB Service is not priced (annotate it as an NLB)")
    return [_nlb_item(name, inputs, ctx)] if kind else []


@pricer(K8S_SERVICE)
def price_service(node: Node, ctx: PricingContext) -> list[LineItem]:
    """A Kubernetes Service of type LoadBalancer (the AWS Load Balancer Controller's NLB)."""
    return _service_items(node.name, node.inputs, ctx)


@pricer(ENVOY_PROXY)
def price_envoy_proxy(node: Node, ctx: PricingContext) -> list[LineItem]:
    """The Service Envoy Gateway creates from an EnvoyProxy (type LoadBalancer unless set)."""
    service = mapping_at(node.inputs, "spec", "provider", "kubernetes", "envoyService")
    inputs = {"spec": {"type": service.get("type", "LoadBalancer")},
              "metadata": {"annotations": service.get("annotations") or {}}}
    return _service_items(node.name, inputs, ctx)


@pricer(AWS_LB)
def price_aws_lb(node: Node, ctx: PricingContext) -> list[LineItem]:
    if str(node.inputs.get("loadBalancerType", "application")) != "network":
        ctx.note(f"{node.name}: only network load balancers are priced")
        return []
    return [_nlb_item(node.name, node.inputs, ctx)]


# --- weights: hydration transfer and storage --------------------------------------------------------


@pricer(NODE_GROUP)
def price_hydration(node: Node, ctx: PricingContext) -> list[LineItem]:
    """Worst case: every GPU node launched above minSize pulls the weights, through NAT unless S3
    has a gateway endpoint, `scale_events_per_month` times a month."""
    group, facts = ctx.facts.group(node), ctx.facts
    lo, _, hi = group.shape.sizes()
    nodes = hi - lo
    if not group.gpu or not facts.weights_gb or nodes <= 0:
        return []
    via_nat = facts.nat_gateways and not facts.s3_gateway_endpoint
    per_gb = ctx.service("nat_gateway_usd_per_gb").usd if via_nat else ZERO
    events = ctx.assume.scale_events_per_month
    gb = facts.weights_gb * nodes * events
    item = LineItem(
        HYDRATION, group.az, "weights hydration",
        f"{nodes} nodes x {facts.weights_gb.normalize():f} GB x {events} scale-ups/month "
        + ("(S3 gateway endpoint: free)" if per_gb == 0 else f"via NAT @ {usd_text(per_gb)}/GB"),
        (ZERO, ZERO, gb * per_gb), "nat_gateway_usd_per_gb", True,
    )
    if via_nat:
        ctx.note("weights are pulled through the NAT gateways (billed per GB); an S3 gateway endpoint makes that free")
    return [item]


@pricer(BUCKET, BUCKET_V2)
def price_bucket(node: Node, ctx: PricingContext) -> list[LineItem]:
    """S3 Standard storage: the weights bucket holds the weights; others are not modelled."""
    row = ctx.service("s3_standard_usd_per_gb_month")
    weights_gb = ctx.facts.weights_gb
    gb = weights_gb if (node is ctx.facts.weights_bucket and weights_gb) else ZERO
    item = LineItem(S3, REGIONAL, node.name, f"{gb.normalize():f} GB Standard" if gb else "storage not modelled",
                    (row.usd * gb,) * 3, row.source, row.confirmed)
    if not weights_gb:
        ctx.note("model weights size unknown: S3 storage and hydration not priced (set weights_gb)")
    return [item]


@pricer(KMS_KEY)
def price_kms_key(node: Node, ctx: PricingContext) -> list[LineItem]:
    row = ctx.service("kms_key_usd_per_month")
    return [LineItem(KMS, REGIONAL, node.name, "1 key", (row.usd,) * 3, row.source, row.confirmed)]


# --- Route 53 (billed per account, whatever the region: the price book's global services) -----------

MILLION = Decimal(1_000_000)
FAST_INTERVAL_S = 10  # a health check's request interval billed as the "fast interval" option


@pricer(ROUTE53_ZONE)
def price_hosted_zone(node: Node, ctx: PricingContext) -> list[LineItem]:
    row = ctx.global_service("route53_hosted_zone_usd_per_month")
    zone = node.inputs.get("name") or node.name
    return [LineItem(DNS_ZONES, REGIONAL, node.name, f"1 hosted zone ({zone})", (row.usd,) * 3, row.source, row.confirmed)]


def _query_price_key(inputs: Mapping[str, Any]) -> tuple[str, str]:
    """(what queries of the record's routing policy are, their price key)."""
    if listify(inputs.get("latencyRoutingPolicies")):
        return "latency-based", "route53_latency_queries_usd_per_million"
    if listify(inputs.get("geolocationRoutingPolicies")) or inputs.get("geoproximityRoutingPolicy"):
        return "geo", "route53_geo_queries_usd_per_million"
    return "standard", "route53_standard_queries_usd_per_million"


def _alias_of_load_balancer(inputs: Mapping[str, Any]) -> bool:
    names = [a.get("name") for a in listify(inputs.get("aliases")) if isinstance(a, Mapping)]
    return bool(names) and all(patterns.matches(patterns.ELB_DNS_NAME, n) for n in names)


@pricer(ROUTE53_RECORD)
def price_record_queries(node: Node, ctx: PricingContext) -> list[LineItem]:
    """The queries of the record's name: `dns_queries_per_month` per name (billed once, on its first
    record), at its routing policy's rate; queries answered by an alias of an ELB load balancer are
    free (what every global record is)."""
    inputs = node.inputs
    kind, key = _query_price_key(inputs)
    row = ctx.global_service(key)
    name = inputs.get("name") or node.name
    if _alias_of_load_balancer(inputs):
        return [LineItem(DNS_QUERIES, REGIONAL, node.name, f"{kind} queries of {name}: alias to a load balancer (free)",
                         (ZERO,) * 3, row.source, row.confirmed)]
    same_name = [n for n in ctx.graph.of_type(ROUTE53_RECORD)
                 if (n.inputs.get("zoneId"), n.inputs.get("name"), n.inputs.get("type"))
                 == (inputs.get("zoneId"), inputs.get("name"), inputs.get("type"))]
    if same_name and same_name[0] is not node:
        return []  # one name's queries are billed once, on its first record
    volume = ctx.assume.dns_queries_per_month
    amount = row.usd * volume / MILLION
    return [LineItem(DNS_QUERIES, REGIONAL, node.name,
                     f"{volume / MILLION:g}M {kind} queries of {name} @ {usd_text(row.usd)}/M (assumed volume)",
                     (amount,) * 3, row.source, row.confirmed)]


def health_check_options(inputs: Mapping[str, Any]) -> list[str]:
    """The options Route 53 bills on top of a basic health check, as its inputs choose them."""
    kind = str(inputs.get("type") or "")
    options = []
    if kind.startswith("HTTPS"):
        options.append("HTTPS")
    if kind.endswith("STR_MATCH"):
        options.append("string matching")
    if as_int(inputs.get("requestInterval")) == FAST_INTERVAL_S:
        options.append("fast interval")
    if as_bool(inputs.get("measureLatency")):
        options.append("latency measurement")
    return options


@pricer(ROUTE53_HEALTH_CHECK)
def price_health_check(node: Node, ctx: PricingContext) -> list[LineItem]:
    """A health check on an AWS endpoint (our gateway's NLB): the basic check and each option."""
    base = ctx.global_service("route53_health_check_usd_per_month")
    option = ctx.global_service("route53_health_check_option_usd_per_month")
    options = health_check_options(node.inputs)
    amount = base.usd + option.usd * len(options)
    detail = (f"1 {node.inputs.get('type') or 'health'} check @ {usd_text(base.usd)}/month"
              + (f" + {', '.join(options)} @ {usd_text(option.usd)}/month each" if options else ""))
    return [LineItem(DNS_HEALTH_CHECKS, REGIONAL, node.name, detail, (amount,) * 3, base.source,
                     base.confirmed and option.confirmed)]
