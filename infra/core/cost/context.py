"""What every pricer is handed: the assumptions, the price lookups (with the notes they leave)
and the facts several pricers need, computed once from the graph before any pricer runs. Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from infra.core.catalog import Catalog
from infra.core.catalog.prices import PriceBook, PriceRow
from infra.core.cost.nodegroup import NodeGroupShape, is_gpu_group, node_group_shape
from infra.core.cost.report import REGIONAL, SCENARIOS, ZERO, GpuCount
from infra.core.errors import InputError
from infra.core.graph import (
    BUCKET,
    BUCKET_V2,
    LAUNCH_TEMPLATE,
    NAT_GATEWAY,
    NODE_GROUP,
    VPC_ENDPOINT,
    Node,
    ResourceGraph,
    as_decimal,
    as_int,
    own_az,
)

UNPRICED_WHY = "no price in infra/core/catalog/prices.yaml"


@dataclass(frozen=True)
class Assumptions:
    """What the documents do not say; every field can come from cost or policy config."""

    region: str | None = None  # used when the document names none (preview without aws:region)
    usd_per_gpu_hour: Decimal | None = None  # one per-GPU rate for every GPU type (a preview without a plan)
    instance_usd_per_hour: Mapping[str, Decimal] = field(default_factory=dict)  # per-type override (wins)
    service_usd: Mapping[str, Decimal] = field(default_factory=dict)  # per service-key override
    scale_events_per_month: int = 30  # burst cycles a month that hydrate every node above minSize
    weights_gb: Decimal | None = None  # model weights size when the document has no plan
    stream_bytes_per_output_token: int = 256  # bytes through the NLB per streamed token (SSE)
    default_node_disk_gb: int = 20  # EKS default disk of a node group without launch template
    dns_queries_per_month: int = 10_000_000  # per hostname, for records whose queries are billed

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str = "cost config") -> "Assumptions":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{where}.{unknown[0]}", data[unknown[0]], f"known keys: {', '.join(sorted(known))}")

        def money(key: str, value: Any) -> Decimal:
            d = as_decimal(value)
            if d is None or d < 0:
                raise InputError(f"{where}.{key}", value, "a non-negative USD amount")
            return d

        kwargs: dict[str, Any] = {}
        if data.get("region") is not None:
            kwargs["region"] = str(data["region"])
        if data.get("usd_per_gpu_hour") is not None:
            kwargs["usd_per_gpu_hour"] = money("usd_per_gpu_hour", data["usd_per_gpu_hour"])
        for key in ("instance_usd_per_hour", "service_usd"):
            if data.get(key) is not None:
                if not isinstance(data[key], Mapping):
                    raise InputError(f"{where}.{key}", data[key], "a mapping of name to USD amount")
                kwargs[key] = {str(k): money(f"{key}.{k}", v) for k, v in data[key].items()}
        for key, low in (("scale_events_per_month", 0), ("stream_bytes_per_output_token", 1), ("default_node_disk_gb", 1),
                         ("dns_queries_per_month", 0)):
            if data.get(key) is not None:
                v = as_int(data[key])
                if v is None or v < low:
                    raise InputError(f"{where}.{key}", data[key], f"an integer >= {low}")
                kwargs[key] = v
        if data.get("weights_gb") is not None:
            kwargs["weights_gb"] = money("weights_gb", data["weights_gb"])
        return cls(**kwargs)


def usd_text(amount: Decimal) -> str:
    """`$55.04`, `$1` (no trailing zeros on whole amounts): how prices appear in item details."""
    return f"${amount.normalize():f}" if amount == amount.to_integral_value() else f"${amount}"


# --- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFacts:
    """One node group as the pricers see it: its shape, whether it is GPU, its AZ column."""

    node: Node
    shape: NodeGroupShape
    gpu: bool
    az: str  # its AZ; else "unzoned-N" for a GPU group, "regional" for any other


def _no_gpus() -> Mapping[str, GpuCount]:
    return {s: GpuCount(0, 0, 0) for s in SCENARIOS}


@dataclass(frozen=True)
class Facts:
    """What several pricers need, computed once from the graph (`facts_of`)."""

    groups: tuple[GroupFacts, ...] = ()
    gpu: Mapping[str, GpuCount] = field(default_factory=_no_gpus)  # GPU nodes per scenario, RUNNING pools included
    weights_gb: Decimal | None = None
    output_tokens_per_s: Decimal | None = None  # the plan's declared load
    concurrent_requests: Decimal = ZERO
    s3_gateway_endpoint: bool = False
    nat_gateways: bool = False
    public_azs: int = 1  # AZs an internet-facing NLB takes a public IPv4 in
    weights_bucket: Node | None = None

    def group(self, node: Node) -> GroupFacts:
        return next(g for g in self.groups if g.node is node)


def _plan_weights_gb(plan: Mapping[str, Any] | None) -> Decimal | None:
    if not plan:
        return None
    per_gpu = as_decimal(plan.get("weights_gib_per_gpu"))
    tp = as_int(plan.get("tensor_parallel"))
    if per_gpu is None or not tp:
        return None
    return per_gpu * tp


def _has_s3_gateway_endpoint(graph: ResourceGraph) -> bool:
    for ep in graph.of_type(VPC_ENDPOINT):
        svc = str(ep.inputs.get("serviceName") or "")
        kind = str(ep.inputs.get("vpcEndpointType") or "Gateway")
        if svc.endswith(".s3") and kind.lower() == "gateway":
            return True
    return False


def _group_facts(graph: ResourceGraph, catalog: Catalog) -> tuple[GroupFacts, ...]:
    out = []
    unzoned = 0
    for node in graph.of_type(NODE_GROUP):
        shape = node_group_shape(node, graph.ref(node, "launchTemplate", LAUNCH_TEMPLATE))
        gpu = is_gpu_group(shape, catalog)
        az = shape.az
        if az is None:
            unzoned += 1
            az = f"unzoned-{unzoned}" if gpu else REGIONAL
        out.append(GroupFacts(node, shape, gpu, az))
    return tuple(out)


def _gpu_counts(groups: tuple[GroupFacts, ...], catalog: Catalog, plan: Mapping[str, Any]) -> dict[str, GpuCount]:
    nodes, gpus, pooled = [0, 0, 0], [0, 0, 0], [0, 0, 0]
    for g in groups:
        if not g.gpu:
            continue
        spec = catalog.instances.get(g.shape.instance_types[0])
        per_node = spec.gpu_count if spec else (as_int(plan.get("gpus_per_node")) or 0)
        for i, (n, p) in enumerate(zip(g.shape.sizes(), g.shape.billed_pool())):
            nodes[i] += n + p
            pooled[i] += p
            gpus[i] += (n + p) * per_node
    return {s: GpuCount(nodes[i], gpus[i], pooled[i]) for i, s in enumerate(SCENARIOS)}


def facts_of(graph: ResourceGraph, catalog: Catalog, assume: Assumptions) -> Facts:
    plan = graph.plan or {}
    groups = _group_facts(graph, catalog)
    load = plan.get("load") or {}
    nats = graph.of_type(NAT_GATEWAY)
    buckets = graph.of_type(BUCKET, BUCKET_V2)
    return Facts(
        groups=groups,
        gpu=_gpu_counts(groups, catalog, plan),
        weights_gb=_plan_weights_gb(graph.plan) or assume.weights_gb,
        output_tokens_per_s=as_decimal(load.get("output_tokens_per_s")),
        concurrent_requests=as_decimal(load.get("concurrent_requests")) or ZERO,
        s3_gateway_endpoint=_has_s3_gateway_endpoint(graph),
        nat_gateways=bool(nats),
        public_azs=len({az for az in (own_az(n) for n in nats) if az}) or as_int(plan.get("azs")) or 1,
        weights_bucket=next((b for b in buckets if "weight" in b.name.lower()), buckets[0] if buckets else None),
    )


# --- the context ------------------------------------------------------------------------------


def _empty_graph() -> ResourceGraph:
    return ResourceGraph("plan", "", None, ())


@dataclass
class PricingContext:
    """Prices, overrides and facts for the pricers; collects the notes they leave."""

    region: str
    catalog: Catalog
    prices: PriceBook
    assume: Assumptions
    plan: Mapping[str, Any] | None = None
    graph: ResourceGraph = field(default_factory=_empty_graph)
    facts: Facts = field(default_factory=Facts)
    notes: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    unconfirmed: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _used(self, row: PriceRow, what: str) -> None:
        if not row.confirmed:
            self.unconfirmed.add(f"{what} in {self.region}")

    def service(self, key: str) -> PriceRow:
        if key in self.assume.service_usd:
            return PriceRow(self.assume.service_usd[key], key, "override (cost config)", "", True)
        row = self.prices.require_service(self.region, key)
        self._used(row, key)
        return row

    def global_service(self, key: str) -> PriceRow:
        """A service billed per account whatever the region (Route 53): config override, else the book."""
        if key in self.assume.service_usd:
            return PriceRow(self.assume.service_usd[key], key, "override (cost config)", "", True)
        row = self.prices.require_global_service(key)
        if not row.confirmed:
            self.note("unconfirmed Route 53 prices used (estimates that `prices refresh` does not read; confirm them "
                      "on the Route 53 pricing page): the global_services rows of infra/core/catalog/prices.yaml")
        return row

    def _book_row(self, itype: str, capacity_type: str) -> tuple[PriceRow | None, str, str]:
        """The price book's row for how a group buys `itype` (a CAPACITY_BLOCK group: the
        capacity-block rate when the book has one, else on-demand), what it prices, a source suffix."""
        if capacity_type.upper() == "CAPACITY_BLOCK":
            block = self.prices.capacity_price(self.region, itype, "capacity-block")
            if block is not None:
                return block, f"{itype} capacity block", ", capacity block"
        return self.prices.instance(self.region, itype), itype, ""

    def gpu_price(self, itype: str, group: str, capacity_type: str = "ON_DEMAND") -> tuple[Decimal | None, str, bool]:
        """$/node-hour of a GPU instance type bought as the node group's `capacityType`: config
        override, plan price, then the price book (a CAPACITY_BLOCK group at its block rate)."""
        spec = self.catalog.instances.get(itype)
        gpus = spec.gpu_count if spec else None
        if itype in self.assume.instance_usd_per_hour:
            return self.assume.instance_usd_per_hour[itype], "override instance_usd_per_hour (cost config)", True
        if self.assume.usd_per_gpu_hour is not None and gpus:
            return self.assume.usd_per_gpu_hour * gpus, "override usd_per_gpu_hour (cost config)", True
        row, what, suffix = self._book_row(itype, capacity_type)
        plan = self.plan or {}
        plan_cost = plan.get("cost") or {}
        if plan.get("instance_type") == itype:
            # The plan's own price (fleet.instance_usd_per_hour, or the price book's for the
            # stack's fleet.capacity_type, as it was sized). usd_per_node_hour is exact; the per-GPU figure
            # is rounded to 4 places by the sizing, so it is only the fallback.
            per_gpu = as_decimal(plan_cost.get("usd_per_gpu_hour"))
            n = as_int(plan.get("gpus_per_node")) or gpus
            price = as_decimal(plan_cost.get("usd_per_node_hour"))
            if price is None and per_gpu is not None and n:
                price = per_gpu * n
            if price is not None:
                source = str(plan_cost.get("price_source") or "plan.cost")
                if row is not None and row.usd == price:
                    self._used(row, what)
                    return price, source, row.confirmed
                if row is not None:
                    self.note(f"{itype}: plan price {usd_text(price)}/h (plan.cost, {source}) wins over "
                              f"the catalog's {usd_text(row.usd)}/h in {self.region}")
                return price, source, True
        if capacity_type.upper() == "CAPACITY_BLOCK" and not suffix:
            self.note(f"{group}: CAPACITY_BLOCK capacity priced at on-demand (no capacity-block rate for {itype} "
                      f"in {self.region}); set instance_usd_per_hour to the block's rate")
        if row is not None:
            self._used(row, what)
            return row.usd, f"{row.source} ({row.date}){suffix}", row.confirmed
        why = self.prices.why_unpriced(self.region, itype) or UNPRICED_WHY
        self.unpriced.append(f"{group}: {itype} in {self.region} ({why})")
        return None, "", False

    def general_price(self, itype: str, group: str) -> tuple[Decimal | None, str, bool]:
        """$/node-hour of a non-GPU instance type: config override, then the price book."""
        if itype in self.assume.instance_usd_per_hour:
            return self.assume.instance_usd_per_hour[itype], "override instance_usd_per_hour (cost config)", True
        row = self.prices.instance(self.region, itype)
        if row is None:
            self.unpriced.append(f"{group}: {itype} in {self.region} ({UNPRICED_WHY})")
            return None, "", False
        self._used(row, itype)
        return row.usd, f"{row.source} ({row.date})", row.confirmed
