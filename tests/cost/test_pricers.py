"""Each pricer on a tiny synthetic graph, catalog and price book, to the cent (Decimal).

Prices here are round on purpose: gpu.8x $10/h, gpu.4x $20/h, sys.1x $0.50/h, EKS $0.10/h,
NAT $0.05/h and $0.05/GB, public IPv4 $0.005/h, NLB $0.02/h + $0.006/NLCU-h, gp3 $0.08/GB-month,
S3 $0.023/GB-month, KMS $1/key-month; 730 h a month. Route 53: a zone $0.50/month, queries
$0.40 / $0.60 / $0.70 per million (standard, latency, geo), a health check $0.50/month + $1 per option.
"""
from decimal import Decimal

import pytest

from infra.core.catalog import Catalog, Gpu, InstanceType
from infra.core.catalog.prices import GLOBAL_SERVICE_KEYS, SERVICE_KEYS, PriceBook, PriceRow
from infra.core.cost import REGISTRY, SCENARIOS, cents, cost_of_document, node_hour_price, pricer, pricers_for
from infra.core.cost.context import Assumptions, facts_of
from infra.core.cost.report import LineItem
from infra.core import graph as G
from infra.core.graph import ResourceGraph, node

REGION = "test-1"
D = Decimal


def _row(usd: str, unit: str = "instance-hour", confirmed: bool = True) -> PriceRow:
    return PriceRow(D(usd), unit, "test book", "2026-01-01", confirmed, "" if confirmed else "a guess")


SERVICES = {
    "eks_cluster_usd_per_hour": "0.10", "eks_cluster_extended_usd_per_hour": "0.60", "nat_gateway_usd_per_hour": "0.05", "nat_gateway_usd_per_gb": "0.05",
    "public_ipv4_usd_per_hour": "0.005", "nlb_usd_per_hour": "0.02", "nlb_lcu_usd_per_hour": "0.006",
    "ebs_gp3_usd_per_gb_month": "0.08", "s3_standard_usd_per_gb_month": "0.023", "s3_put_usd_per_1000_requests": "0.005",
    "s3_get_usd_per_1000_requests": "0.0004", "kms_key_usd_per_month": "1", "kms_usd_per_10000_requests": "0.03",
}
assert set(SERVICES) == set(SERVICE_KEYS)
GLOBAL_SERVICES = {
    "route53_hosted_zone_usd_per_month": "0.50", "route53_standard_queries_usd_per_million": "0.40",
    "route53_latency_queries_usd_per_million": "0.60", "route53_geo_queries_usd_per_million": "0.70",
    "route53_health_check_usd_per_month": "0.50", "route53_health_check_option_usd_per_month": "1",
}
assert set(GLOBAL_SERVICES) == set(GLOBAL_SERVICE_KEYS)
BOOK = PriceBook(
    instances={REGION: {"gpu.8x": _row("10"), "gpu.4x": _row("20", confirmed=False)}},
    general_instances={REGION: {"sys.1x": _row("0.50")}},
    services={REGION: {k: _row(v, k) for k, v in SERVICES.items()}},
    capacity_blocks={REGION: {"gpu.8x": _row("6")}},
    unpriced={REGION: {"gpu.2x": "capacity blocks only"}},
    global_services={k: _row(v, k, confirmed=k != "route53_geo_queries_usd_per_million") for k, v in GLOBAL_SERVICES.items()},
)
_GPU = Gpu("G", 80, 80000, 3000, 900, 1800, "nvlink", 900)
CATALOG = Catalog(
    gpus={"G": _GPU},
    instances={name: InstanceType(name, "G", gpus, 96, 1024, 0, 0, 100, 0, "p")
               for name, gpus in (("gpu.8x", 8), ("gpu.4x", 4), ("gpu.2x", 2))},
    models={},
)


def res(rtype: str, name: str, inputs: dict | None = None, *, deps: dict | None = None, id: str | None = None,
        parent: str | None = None):
    return node(f"urn:pulumi:t::p::{rtype}::{name}", rtype, name, parent, inputs or {}, id=id, property_dependencies=deps)


def group(name: str = "gpu-a", types=("gpu.8x",), sizes=(2, 3, 4), az: str | None = "az-a", pool: dict | None = None,
          deps: dict | None = None, **inputs):
    lo, mid, hi = sizes
    body = {"instanceTypes": list(types), "scalingConfig": {"minSize": lo, "desiredSize": mid, "maxSize": hi}, **inputs}
    if az:
        body["labels"] = {"llm-fleet/az": az}
    if pool is not None:
        body["warmPoolConfig"] = pool
    return res(G.NODE_GROUP, name, body, deps=deps)


def cost(*nodes, plan=None, **assume):
    graph = ResourceGraph("plan" if plan else "preview", "t", REGION, tuple(nodes), plan)
    return cost_of_document(graph, catalog=CATALOG, prices=BOOK, assumptions=assume)


def months(report, component) -> list[tuple[Decimal, ...]]:
    return [tuple(cents(m) for m in i.usd_per_month) for i in report.items if i.component == component]


def m(*amounts: str) -> tuple[Decimal, ...]:
    return tuple(D(a) for a in amounts)


# --- node groups ----------------------------------------------------------------------------------


def test_a_gpu_group_bills_min_desired_max_nodes_at_the_instance_price():
    report = cost(group())
    [item] = [i for i in report.items if i.component == "gpu-nodes"]
    assert (item.az, item.resource, item.detail) == ("az-a", "gpu-a", "2/3/4 x gpu.8x @ $10/h")
    assert item.usd_per_month == m("14600", "21900", "29200")
    assert [(report.gpu[s].nodes, report.gpu[s].gpus) for s in SCENARIOS] == [(2, 16), (3, 24), (4, 32)]


@pytest.mark.parametrize("state,pool_min,billed_nodes,billed", [
    # The pool prepares max(minSize, maxGroupPreparedCapacity - group size) instances.
    ("RUNNING", 0, (2, 1, 0), m("14600", "7300", "0")),
    ("RUNNING", 1, (2, 1, 1), m("14600", "7300", "7300")),
    ("STOPPED", 1, (0, 0, 0), m("0", "0", "0")),  # a stopped instance bills only its EBS
])
def test_the_warm_pool_bills_running_instances_only(state, pool_min, billed_nodes, billed):
    report = cost(group(pool={"minSize": pool_min, "maxGroupPreparedCapacity": 4, "poolState": state}))
    [item] = [i for i in report.items if i.component == "gpu-warm-pool"]
    assert item.detail == "{}/{}/{} x gpu.8x ({}; worst case counts the whole pool)".format(*billed_nodes, state)
    assert item.usd_per_month == billed
    assert [report.gpu[s].warm_pool_nodes for s in SCENARIOS] == list(billed_nodes)


TEMPLATE = res(G.LAUNCH_TEMPLATE, "gpu-a-lt",
               {"blockDeviceMappings": [{"ebs": {"volumeSize": 100}}, {"ebs": {"volumeSize": 50.0}}]}, id="lt-0abc")


@pytest.mark.parametrize("inputs,deps,disk_gb,note", [
    ({"launchTemplate": {"id": "from-the-engine"}}, {"launchTemplate": [TEMPLATE.urn]}, 150, False),  # property deps
    ({"launchTemplate": {"id": "lt-0abc", "version": "1"}}, None, 150, False),  # the template's id
    ({"launchTemplate": {"id": "lt-elsewhere"}}, None, 20, True),  # not in the graph: EKS default
    ({"diskSize": 80}, None, 80, False),
    ({}, None, 20, False),
])
def test_node_storage_takes_the_launch_template_it_references(inputs, deps, disk_gb, note):
    report = cost(group(deps=deps, **inputs), TEMPLATE)
    [item] = [i for i in report.items if i.component == "node-storage"]
    assert item.detail == f"2/3/4 nodes x {disk_gb} GB gp3"
    assert item.usd_per_month == tuple(D("0.08") * disk_gb * n for n in (2, 3, 4))
    assert any("launch template not found" in n for n in report.notes) is note


def test_stopped_pool_instances_keep_their_volumes():
    report = cost(group(pool={"minSize": 1, "maxGroupPreparedCapacity": 4, "poolState": "STOPPED"}, diskSize=100))
    assert months(report, "node-storage") == [m("32.00", "32.00", "40.00")]  # (2+2, 3+1, 4+1) nodes x 100 GB x $0.08


def test_a_system_group_is_priced_from_the_general_types_and_not_counted_as_gpu():
    report = cost(group("system", types=("sys.1x",), sizes=(2, 2, 3), az=None))
    [item] = [i for i in report.items if i.component == "system-nodes"]
    assert (item.az, item.usd_per_month) == ("regional", m("730", "730", "1095"))
    assert report.gpu["worst"].nodes == 0


PLAN = {"instance_type": "gpu.8x", "gpus_per_node": 8, "cost": {"usd_per_node_hour": 8, "price_source": "capacity block"}}


@pytest.mark.parametrize("plan,assume,usd_per_hour,source,note", [
    (None, {}, "10", "test book (2026-01-01)", None),
    (PLAN, {}, "8", "capacity block", "gpu.8x: plan price $8/h (plan.cost, capacity block) wins over the catalog's $10/h"),
    (PLAN, {"usd_per_gpu_hour": "0.5"}, "4.0", "override usd_per_gpu_hour (cost config)", None),
    (PLAN, {"instance_usd_per_hour": {"gpu.8x": "6"}}, "6", "override instance_usd_per_hour (cost config)", None),
])
def test_gpu_price_overrides_then_plan_then_book(plan, assume, usd_per_hour, source, note):
    report = cost(group(sizes=(1, 1, 1)), plan=plan, **assume)
    [item] = [i for i in report.items if i.component == "gpu-nodes"]
    assert item.usd_per_month == (D(usd_per_hour) * 730,) * 3 and item.price_source == source
    assert (note is None) or any(n.startswith(note) for n in report.notes)
    assert node_hour_price("gpu.8x", REGION, catalog=CATALOG, prices=BOOK, assumptions=assume, plan=plan) == \
        (D(usd_per_hour), source)


def test_a_capacity_block_group_is_priced_at_the_books_block_rate():
    report = cost(group(sizes=(1, 1, 1), capacityType="CAPACITY_BLOCK"))
    [item] = [i for i in report.items if i.component == "gpu-nodes"]
    assert item.usd_per_month == (D("6") * 730,) * 3 and item.price_source == "test book (2026-01-01), capacity block"
    assert not any("CAPACITY_BLOCK" in n for n in report.notes)
    assert node_hour_price("gpu.8x", REGION, catalog=CATALOG, prices=BOOK, capacity_type="CAPACITY_BLOCK") == \
        (D("6"), "test book (2026-01-01), capacity block")
    assert node_hour_price("gpu.8x", REGION, catalog=CATALOG, prices=BOOK)[0] == D("10")  # on-demand
    # A plan sized at the block rate agrees with the book: no "plan price wins" note.
    sized = {"instance_type": "gpu.8x", "gpus_per_node": 8, "cost": {"usd_per_node_hour": 6, "price_source": "sized"}}
    report = cost(group(sizes=(1, 1, 1), capacityType="CAPACITY_BLOCK"), plan=sized)
    assert [i.price_source for i in report.items if i.component == "gpu-nodes"] == ["sized"]
    assert not any("wins over" in n for n in report.notes)


def test_several_instance_types_are_priced_at_the_dearest():
    report = cost(group(types=("gpu.8x", "gpu.4x")))
    [item] = [i for i in report.items if i.component == "gpu-nodes"]
    assert item.detail == "2/3/4 x gpu.4x @ $20/h" and item.usd_per_month == m("29200", "43800", "58400")


@pytest.mark.parametrize("inputs,note", [
    ({"types": ("gpu.8x", "gpu.4x")}, "gpu-a: several instance types; priced at the dearest (gpu.4x)"),
    ({"capacityType": "SPOT"}, "gpu-a: SPOT capacity priced at on-demand (an upper bound)"),
    ({"capacityType": "CAPACITY_BLOCK", "types": ("gpu.4x",)},
     "gpu-a: CAPACITY_BLOCK capacity priced at on-demand (no capacity-block rate for gpu.4x in test-1); set instance_usd_per_hour"),
    ({"sizes": (None, 3, 4)}, "gpu-a: scalingConfig not fully known; missing sizes taken as 0/3/4"),
])
def test_what_the_price_cannot_say_is_noted(inputs, note):
    report = cost(group(**inputs))
    assert any(n.startswith(note) for n in report.notes), report.notes


def test_an_unconfirmed_price_is_named_in_the_notes():
    report = cost(group(types=("gpu.4x",)))
    assert months(report, "gpu-nodes") == [m("29200.00", "43800.00", "58400.00")]
    assert any(n.startswith("unconfirmed prices used") and "gpu.4x in test-1" in n for n in report.notes)


@pytest.mark.parametrize("types,unpriced", [
    (("gpu.2x",), "gpu-a: gpu.2x in test-1 (capacity blocks only)"),
    (("sys.9x",), "gpu-a: sys.9x in test-1 (no price in infra/core/catalog/prices.yaml)"),
    ((), "gpu-a: instance types unknown"),
])
def test_an_unpriced_group_is_reported_not_silently_zero(types, unpriced):
    report = cost(group(types=types))
    assert report.unpriced == (unpriced,)
    assert months(report, "gpu-nodes") == months(report, "system-nodes") == []
    assert any(n.startswith("NOT PRICED (cost is understated): " + unpriced) for n in report.notes)


def test_groups_without_an_az_get_their_own_columns():
    report = cost(group("g1", az=None), group("system", types=("sys.1x",), az=None), group("g2", az=None))
    assert {i.resource: i.az for i in report.items if i.component in ("gpu-nodes", "system-nodes")} == \
        {"g1": "unzoned-1", "system": "regional", "g2": "unzoned-3"}


# --- fixed infrastructure ---------------------------------------------------------------------------


@pytest.mark.parametrize("rtype,name,inputs,component,az,month", [
    (G.CLUSTER, "cluster", {}, "eks-control-plane", "regional", "73.00"),
    (G.CLUSTER, "cluster", {"version": "1.35"}, "eks-control-plane", "regional", "73.00"),
    # Past standard support on the suite's clock (the EKS calendar's date): extended-support price.
    (G.CLUSTER, "cluster", {"version": "1.33", "upgradePolicy": {"supportType": "EXTENDED"}}, "eks-control-plane",
     "regional", "438.00"),
    (G.NAT_GATEWAY, "nat", {"tags": {"llm-fleet:az": "az-b"}}, "nat-gateway", "az-b", "36.50"),
    (G.EIP, "nat-eip", {}, "public-ipv4", "regional", "3.65"),
    (G.KMS_KEY, "key", {}, "kms", "regional", "1.00"),
])
def test_fixed_infrastructure_costs_the_same_in_every_scenario(rtype, name, inputs, component, az, month):
    report = cost(res(rtype, name, inputs))
    assert [(i.component, i.az, i.resource) for i in report.items] == [(component, az, name)]
    assert months(report, component) == [(D(month),) * 3]


# --- network load balancers -----------------------------------------------------------------------

NLB_ANNOTATIONS = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
LOAD = {"azs": 2, "load": {"output_tokens_per_s": 1000, "concurrent_requests": 200}}


def _service(annotations=NLB_ANNOTATIONS, **spec):
    return res(G.K8S_SERVICE, "lb", {"metadata": {"annotations": annotations}, "spec": {"type": "LoadBalancer", **spec}})


def _envoy(annotations=NLB_ANNOTATIONS):
    return res(G.ENVOY_PROXY, "lb", {"spec": {"provider": {"kubernetes": {"envoyService": {"annotations": annotations}}}}})


# 1,000 tok/s x 3600 x 256 B = 0.9216 GB/h = 0.9216 NLCU (200 flows are 0.002): $14.60 + $4.036608
# + 2 AZs x $3.65; the worst case doubles the NLCUs with the GPU fleet (3 -> 6 nodes).
@pytest.mark.parametrize("lb", [_service(), _envoy(), res(G.LOAD_BALANCER, "lb", {"loadBalancerType": "network"})],
                         ids=["k8s-service", "envoy-proxy", "aws-lb"])
def test_an_nlb_is_priced_alike_from_every_source(lb):
    report = cost(lb, group(sizes=(3, 3, 6)), plan=LOAD)
    [item] = [i for i in report.items if i.component == "load-balancer"]
    assert item.detail == "NLB @ $0.02/h + 0.922 NLCU @ $0.006/h + 2 public IPv4"
    assert item.usd_per_month == (D("25.936608"), D("25.936608"), D("29.973216"))


@pytest.mark.parametrize("lb", [_service({**NLB_ANNOTATIONS, "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}),
                                res(G.LOAD_BALANCER, "lb", {"loadBalancerType": "network", "internal": True})],
                         ids=["k8s-service", "aws-lb"])
def test_an_internal_nlb_has_no_public_addresses(lb):
    assert months(cost(lb, plan=LOAD), "load-balancer") == [m("18.64", "18.64", "18.64")]


def test_active_flows_set_the_nlcus_when_they_outnumber_the_streamed_bytes():
    report = cost(_service(), plan={"azs": 2, "load": {"output_tokens_per_s": 1000, "concurrent_requests": 500000}})
    [item] = [i for i in report.items if i.component == "load-balancer"]
    assert "+ 5.000 NLCU" in item.detail  # 500,000 flows / 100,000 per NLCU > 0.9216 GB/h
    assert item.usd_per_month == (D("43.80"),) * 3  # $14.60 + 5 x $4.38 + 2 x $3.65


def test_without_a_declared_load_an_nlb_is_one_nlcu():
    report = cost(_service(), res(G.NAT_GATEWAY, "nat-1", {"availabilityZone": "az-a"}))
    assert months(report, "load-balancer") == [m("22.63", "22.63", "22.63")]  # $14.60 + $4.38 + 1 AZ x $3.65
    assert "declared load unknown: NLB priced at 1 NLCU" in report.notes


@pytest.mark.parametrize("lb,note", [
    (_service(annotations={}), "lb: a classic ELB Service is not priced (annotate it as an NLB)"),
    (res(G.LOAD_BALANCER, "lb", {"loadBalancerType": "application"}), "lb: only network load balancers are priced"),
])
def test_what_is_not_an_nlb_is_noted_not_priced(lb, note):
    report = cost(lb)
    assert months(report, "load-balancer") == [] and note in report.notes


def test_a_cluster_ip_service_is_not_a_load_balancer():
    report = cost(res(G.K8S_SERVICE, "svc", {"spec": {"type": "ClusterIP"}}))
    assert report.items == () and not any("ELB" in n for n in report.notes)


# --- weights: hydration and S3 ------------------------------------------------------------------------

WEIGHTS = {"weights_gib_per_gpu": 10, "tensor_parallel": 4}  # 40 GB of weights
S3_ENDPOINT = res(G.VPC_ENDPOINT, "s3", {"serviceName": "com.amazonaws.test-1.s3", "vpcEndpointType": "Gateway"})


@pytest.mark.parametrize("extra,worst,via_nat", [
    ([res(G.NAT_GATEWAY, "nat")], "120.00", True),  # 2 nodes above min x 40 GB x 30 scale-ups x $0.05/GB
    ([res(G.NAT_GATEWAY, "nat"), S3_ENDPOINT], "0.00", False),
    ([], "0.00", False),
])
def test_hydration_is_billed_through_nat_only(extra, worst, via_nat):
    report = cost(group(), *extra, plan=WEIGHTS)
    [item] = [i for i in report.items if i.component == "hydration-transfer"]
    assert item.detail.startswith("2 nodes x 40 GB x 30 scale-ups/month")
    assert tuple(cents(x) for x in item.usd_per_month) == m("0.00", "0.00", worst)
    assert any("pulled through the NAT gateways" in n for n in report.notes) is via_nat


def test_hydration_counts_the_configured_scale_events_and_skips_flat_groups():
    report = cost(group(), group("flat", sizes=(2, 2, 2)), res(G.NAT_GATEWAY, "nat"), plan=WEIGHTS, scale_events_per_month=10)
    assert months(report, "hydration-transfer") == [m("0.00", "0.00", "40.00")]


@pytest.mark.parametrize("names,weights_in", [
    (("logs", "model-weights", "other"), "model-weights"),
    (("first", "second"), "first"),  # no bucket named for weights: the first one
])
def test_the_weights_bucket_holds_the_weights(names, weights_in):
    types = (G.BUCKET, G.BUCKET_V2)
    report = cost(*(res(types[i % 2], n) for i, n in enumerate(names)), plan=WEIGHTS)
    by_name = {i.resource: (i.detail, cents(i.usd_per_month[0])) for i in report.items}
    assert by_name.pop(weights_in) == ("40 GB Standard", D("0.92"))
    assert set(by_name.values()) == {("storage not modelled", D("0.00"))}


def test_without_a_weights_size_nothing_is_guessed():
    report = cost(res(G.BUCKET, "weights"), group(), res(G.NAT_GATEWAY, "nat"))
    assert months(report, "s3-storage") == [m("0.00", "0.00", "0.00")] and months(report, "hydration-transfer") == []
    assert "model weights size unknown: S3 storage and hydration not priced (set weights_gb)" in report.notes
    assert months(cost(res(G.BUCKET, "weights"), weights_gb=100), "s3-storage") == [m("2.30", "2.30", "2.30")]


# --- Route 53 (global prices) -------------------------------------------------------------------------


def test_a_hosted_zone_bills_per_month():
    report = cost(res(G.ROUTE53_ZONE, "zone", {"name": "example.com"}))
    [item] = report.items
    assert (item.component, item.detail, item.usd_per_month) == ("dns-zones", "1 hosted zone (example.com)", m("0.50", "0.50", "0.50"))


NLB = "abc-123.elb.test-1.amazonaws.com"


def record(name="r", host="llm.example.com", alias=None, **policy):
    inputs = {"zoneId": "Z1", "name": host, "type": "A", **policy}
    if alias:
        inputs["aliases"] = [{"name": alias, "zoneId": "ZNLB", "evaluateTargetHealth": True}]
    else:
        inputs["records"] = ["192.0.2.1"]
    return res(G.ROUTE53_RECORD, name, inputs)


@pytest.mark.parametrize("policy,alias,monthly,kind", [
    ({"latencyRoutingPolicies": [{"region": "us-east-1"}], "setIdentifier": "a"}, NLB, "0", "latency-based"),
    ({"weightedRoutingPolicies": [{"weight": 40}], "setIdentifier": "a"}, f"dualstack.{NLB}", "0", "standard"),
    ({"latencyRoutingPolicies": [{"region": "us-east-1"}], "setIdentifier": "a"}, None, "6.00", "latency-based"),
    ({"weightedRoutingPolicies": [{"weight": 40}], "setIdentifier": "a"}, None, "4.00", "standard"),
    ({"geolocationRoutingPolicies": [{"continent": "EU"}], "setIdentifier": "a"}, None, "7.00", "geo"),
    ({}, "d111111abcdef8.cloudfront.net", "4.00", "standard"),  # an alias, but not of a load balancer
])
def test_queries_bill_by_routing_policy_and_alias_queries_to_a_load_balancer_are_free(policy, alias, monthly, kind):
    report = cost(record(alias=alias, **policy))  # 10M queries a month by default
    [item] = report.items
    assert item.component == "dns-queries" and item.detail.split(" queries")[0].endswith(kind)
    assert tuple(cents(x) for x in item.usd_per_month) == m(monthly, monthly, monthly)


def test_a_name_s_queries_are_billed_once_and_the_volume_is_an_assumption():
    a = record("a", weightedRoutingPolicies=[{"weight": 40}], setIdentifier="a")
    b = record("b", weightedRoutingPolicies=[{"weight": 60}], setIdentifier="b")
    other = record("c", host="other.example.com")
    report = cost(a, b, other, dns_queries_per_month=50_000_000)
    assert [(i.resource, cents(i.usd_per_month[0])) for i in report.items] == [("a", D("20.00")), ("c", D("20.00"))]
    assert report.items[0].detail == "50M standard queries of llm.example.com @ $0.40/M (assumed volume)"


@pytest.mark.parametrize("inputs,monthly,options", [
    ({"type": "HTTP", "requestInterval": 30}, "0.50", ""),
    ({"type": "HTTPS", "requestInterval": 30}, "1.50", "HTTPS"),
    ({"type": "HTTPS_STR_MATCH", "requestInterval": 10, "measureLatency": True}, "4.50",
     "HTTPS, string matching, fast interval, latency measurement"),
])
def test_a_health_check_bills_the_basic_check_and_each_option(inputs, monthly, options):
    report = cost(res(G.ROUTE53_HEALTH_CHECK, "hc", inputs))
    [item] = report.items
    assert item.component == "dns-health-checks" and item.usd_per_month == m(monthly, monthly, monthly)
    assert item.detail.endswith(f"+ {options} @ $1/month each") if options else item.detail.endswith("@ $0.50/month")


def test_an_unconfirmed_route53_price_says_refresh_does_not_read_it():
    notes = cost(record(geolocationRoutingPolicies=[{"continent": "EU"}], setIdentifier="a")).notes
    assert any("Route 53 prices" in n and "does not read" in n for n in notes)
    assert not any("Route 53 prices" in n for n in cost(record()).notes)


# --- the registry and the facts --------------------------------------------------------------------


def test_every_priced_type_has_its_pricers_in_report_order():
    priced = {G.NODE_GROUP, G.CLUSTER, G.NAT_GATEWAY, G.EIP, G.K8S_SERVICE, G.ENVOY_PROXY, G.LOAD_BALANCER, G.BUCKET,
              G.BUCKET_V2, G.KMS_KEY, G.ROUTE53_ZONE, G.ROUTE53_RECORD, G.ROUTE53_HEALTH_CHECK}
    assert {t for r in REGISTRY for t in r.types} == priced
    assert [p.__name__ for p in pricers_for(G.NODE_GROUP)] == ["price_node_group", "price_hydration"]


@pytest.fixture
def extra_pricer():
    registered = len(REGISTRY)
    yield pricer
    del REGISTRY[registered:]


def test_a_new_priced_type_is_one_registered_function(extra_pricer):
    @extra_pricer("aws:new/thing:Thing")
    def price_thing(node, ctx):
        return [LineItem("new-thing", "regional", node.name, "1 thing", (D(1), D(2), D(3)))]

    report = cost(res("aws:new/thing:Thing", "t1"), res(G.CLUSTER, "cluster"))
    assert [i.resource for i in report.items] == ["cluster", "t1"]  # registered last, priced last
    assert report.total_month("worst") == D("76")


def test_facts_are_computed_once_from_the_graph():
    nats = [res(G.NAT_GATEWAY, f"nat-{az}", {"availabilityZone": az}) for az in ("az-a", "az-b", "az-b")]
    graph = ResourceGraph("plan", "t", REGION, (group(pool={"minSize": 1, "poolState": "RUNNING"}), *nats, S3_ENDPOINT,
                                                res(G.BUCKET, "b")),
                          {**WEIGHTS, "load": {"output_tokens_per_s": 50}})
    facts = facts_of(graph, CATALOG, Assumptions())
    assert [(facts.gpu[s].nodes, facts.gpu[s].gpus, facts.gpu[s].warm_pool_nodes) for s in SCENARIOS] == \
        [(4, 32, 2), (4, 32, 1), (5, 40, 1)]  # RUNNING pool instances are GPU nodes too
    assert (facts.weights_gb, facts.output_tokens_per_s, facts.public_azs) == (D(40), D(50), 2)
    assert facts.s3_gateway_endpoint and facts.nat_gateways and facts.weights_bucket.name == "b"


def test_a_group_without_instance_types_runs_its_launch_templates_type():
    """A Capacity Block group names its instance type in the launch template only (EKS user guide,
    "Create a managed node group with Capacity Blocks for ML"): the cost model reads it there."""
    lt = res(G.LAUNCH_TEMPLATE, "lt", {"instanceType": "gpu.8x"}, id="lt-1")
    ng = group(types=(), sizes=(1, 1, 1), capacityType="CAPACITY_BLOCK", launchTemplate={"id": "lt-1", "version": "1"},
               deps={"launchTemplate": (lt.urn,)})
    report = cost(lt, ng)
    (item,) = [i for i in report.items if i.component == "gpu-nodes"]
    assert item.usd_per_month == (D("6") * 730,) * 3 and not report.unpriced
