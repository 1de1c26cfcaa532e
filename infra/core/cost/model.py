"""The cost of a stack: line items per component and AZ, for three scenarios, in Decimal.

Scenarios (per GPU node group, from its `scalingConfig` and `warmPoolConfig`):

* baseline - `minSize` nodes, plus warm-pool instances kept RUNNING;
* expected - `desiredSize` nodes, plus RUNNING warm-pool instances;
* worst    - `maxSize` nodes, plus RUNNING warm-pool instances, plus the data transfer of
  hydrating every node launched above `minSize`, `scale_events_per_month` times a month.

A STOPPED warm-pool instance bills only its EBS volume: EC2 Auto Scaling starts it only by
moving it into service, where `maxSize` already counts it.

Fixed infrastructure (EKS control plane, NAT gateways, public IPv4, the NLB, EBS, S3, KMS) is
the same in every scenario except where it scales with nodes (EBS) or load (NLCUs).
Monthly = hourly x HOURS_PER_MONTH (730); monthly-priced items (GB-month, key-month) are
stored monthly and shown hourly as monthly / 730. Nothing is rounded until it is displayed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping

from infra.core.catalog import HOURS_PER_MONTH, Catalog, load_catalog
from infra.core.catalog.prices import PriceBook, PriceRow, load_price_book
from infra.core.cost import resources as R
from infra.core.errors import InputError

SCENARIOS = ("baseline", "expected", "worst")
REGIONAL = "regional"  # the AZ column of items that are not in one AZ

# Components, in the order they are shown.
GPU_NODES = "gpu-nodes"
GPU_WARM_POOL = "gpu-warm-pool"
SYSTEM_NODES = "system-nodes"
NODE_STORAGE = "node-storage"
EKS = "eks-control-plane"
NAT = "nat-gateway"
PUBLIC_IPV4 = "public-ipv4"
LOAD_BALANCER = "load-balancer"
HYDRATION = "hydration-transfer"
S3 = "s3-storage"
KMS = "kms"
COMPONENTS = (GPU_NODES, GPU_WARM_POOL, SYSTEM_NODES, NODE_STORAGE, EKS, NAT, PUBLIC_IPV4, LOAD_BALANCER,
              HYDRATION, S3, KMS)

ZERO = Decimal(0)
CENT = Decimal("0.01")
GB_PER_NLCU_HOUR = Decimal(1)  # NLB TCP: 1 GB processed per hour = 1 NLCU
ACTIVE_FLOWS_PER_NLCU = Decimal(100000)


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Assumptions:
    """What the documents do not say; every field can come from cost or policy config."""

    region: str | None = None  # used when the document names none (preview without aws:region)
    usd_per_gpu_hour: Decimal | None = None  # override for every GPU type: capacity block, discount
    instance_usd_per_hour: Mapping[str, Decimal] = field(default_factory=dict)  # per-type override
    service_usd: Mapping[str, Decimal] = field(default_factory=dict)  # per service-key override
    scale_events_per_month: int = 30  # burst cycles a month that hydrate every node above minSize
    weights_gb: Decimal | None = None  # model weights size when the document has no plan
    stream_bytes_per_output_token: int = 256  # bytes through the NLB per streamed token (SSE)
    default_node_disk_gb: int = 20  # EKS default disk of a node group without launch template

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str = "cost config") -> "Assumptions":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{where}.{unknown[0]}", data[unknown[0]], f"known keys: {', '.join(sorted(known))}")

        def money(key: str, value: Any) -> Decimal:
            d = R.as_decimal(value)
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
        for key, low in (("scale_events_per_month", 0), ("stream_bytes_per_output_token", 1), ("default_node_disk_gb", 1)):
            if data.get(key) is not None:
                v = R.as_int(data[key])
                if v is None or v < low:
                    raise InputError(f"{where}.{key}", data[key], f"an integer >= {low}")
                kwargs[key] = v
        if data.get("weights_gb") is not None:
            kwargs["weights_gb"] = money("weights_gb", data["weights_gb"])
        return cls(**kwargs)


@dataclass(frozen=True)
class LineItem:
    component: str
    az: str
    resource: str
    detail: str
    usd_per_month: tuple[Decimal, Decimal, Decimal]  # baseline, expected, worst
    price_source: str = ""
    confirmed: bool = True

    def month(self, scenario: str) -> Decimal:
        return self.usd_per_month[SCENARIOS.index(scenario)]


@dataclass(frozen=True)
class GpuCount:
    nodes: int
    gpus: int
    warm_pool_nodes: int = 0


@dataclass(frozen=True)
class CostReport:
    stack: str
    region: str
    source: str  # "plan" | "preview"
    items: tuple[LineItem, ...]
    gpu: Mapping[str, GpuCount]
    output_tokens_per_s: Decimal | None = None
    notes: tuple[str, ...] = ()
    unpriced: tuple[str, ...] = ()
    hours_per_month: Decimal = HOURS_PER_MONTH

    def total_month(self, scenario: str) -> Decimal:
        return sum((i.month(scenario) for i in self.items), ZERO)

    def total_hour(self, scenario: str) -> Decimal:
        return self.total_month(scenario) / self.hours_per_month

    def component_month(self, component: str, scenario: str) -> Decimal:
        return sum((i.month(scenario) for i in self.items if i.component == component), ZERO)

    def components(self) -> list[str]:
        present = {i.component for i in self.items}
        return [c for c in COMPONENTS if c in present] + sorted(present - set(COMPONENTS))

    def by_component(self, scenario: str) -> dict[str, Decimal]:
        return {c: self.component_month(c, scenario) for c in self.components()}

    def azs(self) -> list[str]:
        names = sorted({i.az for i in self.items if i.az != REGIONAL})
        return names + ([REGIONAL] if any(i.az == REGIONAL for i in self.items) else [])

    def by_az(self, scenario: str) -> dict[str, Decimal]:
        return {a: sum((i.month(scenario) for i in self.items if i.az == a), ZERO) for a in self.azs()}

    def gpu_month(self, scenario: str) -> Decimal:
        return self.component_month(GPU_NODES, scenario) + self.component_month(GPU_WARM_POOL, scenario)

    def usd_per_million_output_tokens(self, scenario: str, gpu_only: bool = False) -> Decimal | None:
        if not self.output_tokens_per_s:
            return None
        per_hour = (self.gpu_month(scenario) if gpu_only else self.total_month(scenario)) / self.hours_per_month
        return per_hour / (self.output_tokens_per_s * 3600 / Decimal(1_000_000))

    def to_dict(self) -> dict[str, Any]:
        def m(d: Decimal) -> str:
            return str(cents(d))

        def h(d: Decimal) -> str:
            return str(d.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))

        scenarios = {}
        for s in SCENARIOS:
            per_m = self.usd_per_million_output_tokens(s)
            per_m_gpu = self.usd_per_million_output_tokens(s, gpu_only=True)
            scenarios[s] = {
                "usd_per_hour": h(self.total_hour(s)),
                "usd_per_month": m(self.total_month(s)),
                "gpu_usd_per_month": m(self.gpu_month(s)),
                "usd_per_million_output_tokens": h(per_m) if per_m is not None else None,
                "gpu_usd_per_million_output_tokens": h(per_m_gpu) if per_m_gpu is not None else None,
                "gpu_nodes": self.gpu[s].nodes,
                "gpus": self.gpu[s].gpus,
                "warm_pool_nodes": self.gpu[s].warm_pool_nodes,
            }
        return {
            "stack": self.stack,
            "region": self.region,
            "source": self.source,
            "currency": "USD",
            "hours_per_month": str(self.hours_per_month),
            "scenarios": scenarios,
            "components": {c: {s: m(self.component_month(c, s)) for s in SCENARIOS} for c in self.components()},
            "azs": {a: {s: m(v) for s, v in ((s, self.by_az(s)[a]) for s in SCENARIOS)} for a in self.azs()},
            "items": [
                {
                    "component": i.component,
                    "az": i.az,
                    "resource": i.resource,
                    "detail": i.detail,
                    "usd_per_month": {s: m(i.month(s)) for s in SCENARIOS},
                    "price_source": i.price_source,
                    "confirmed": i.confirmed,
                }
                for i in self.items
            ],
            "load": {"output_tokens_per_s": str(self.output_tokens_per_s) if self.output_tokens_per_s else None},
            "notes": list(self.notes),
            "unpriced": list(self.unpriced),
        }


# --- the computation -----------------------------------------------------------------------


@dataclass
class _Ctx:
    region: str
    catalog: Catalog
    prices: PriceBook
    assume: Assumptions
    plan: dict | None
    notes: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    unconfirmed: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def service(self, key: str) -> PriceRow:
        if key in self.assume.service_usd:
            return PriceRow(self.assume.service_usd[key], key, "override (cost config)", "", True)
        row = self.prices.require_service(self.region, key)
        if not row.confirmed:
            self.unconfirmed.add(f"{key} in {self.region}")
        return row


def _money(x: Decimal) -> str:
    return f"${x.normalize():f}" if x == x.to_integral_value() else f"${x}"


def _gpu_price(ctx: _Ctx, itype: str, group: str) -> tuple[Decimal | None, str, bool]:
    """$/node-hour of a GPU instance type: config override, plan price, then the price book."""
    spec = ctx.catalog.instances.get(itype)
    gpus = spec.gpu_count if spec else None
    if itype in ctx.assume.instance_usd_per_hour:
        return ctx.assume.instance_usd_per_hour[itype], "override instance_usd_per_hour (cost config)", True
    if ctx.assume.usd_per_gpu_hour is not None and gpus:
        return ctx.assume.usd_per_gpu_hour * gpus, "override usd_per_gpu_hour (cost config)", True
    row = ctx.prices.instance(ctx.region, itype)
    plan = ctx.plan or {}
    plan_cost = plan.get("cost") or {}
    if plan.get("instance_type") == itype:
        # The plan's own price (a capacity-block or discounted fleet.price_usd_per_gpu_hour, or
        # the catalog price it was sized with). usd_per_node_hour is exact; the per-GPU figure
        # is rounded to 4 places by the sizing, so it is only the fallback.
        per_gpu = R.as_decimal(plan_cost.get("usd_per_gpu_hour"))
        n = R.as_int(plan.get("gpus_per_node")) or gpus
        price = R.as_decimal(plan_cost.get("usd_per_node_hour"))
        if price is None and per_gpu is not None and n:
            price = per_gpu * n
        if price is not None:
            source = str(plan_cost.get("price_source") or "plan.cost")
            if row is not None and row.usd == price:
                if not row.confirmed:
                    ctx.unconfirmed.add(f"{itype} in {ctx.region}")
                return price, source, row.confirmed
            if row is not None:
                ctx.note(
                    f"{itype}: plan price {_money(price)}/h (plan.cost, {source}) wins over "
                    f"the catalog's {_money(row.usd)}/h in {ctx.region}"
                )
            return price, source, True
    if row is not None:
        if not row.confirmed:
            ctx.unconfirmed.add(f"{itype} in {ctx.region}")
        return row.usd, f"{row.source} ({row.date})", row.confirmed
    why = ctx.prices.why_unpriced(ctx.region, itype) or "no price in infra/core/catalog/prices.yaml"
    ctx.unpriced.append(f"{group}: {itype} in {ctx.region} ({why})")
    return None, "", False


def _general_price(ctx: _Ctx, itype: str, group: str) -> tuple[Decimal | None, str, bool]:
    if itype in ctx.assume.instance_usd_per_hour:
        return ctx.assume.instance_usd_per_hour[itype], "override instance_usd_per_hour (cost config)", True
    row = ctx.prices.instance(ctx.region, itype)
    if row is None:
        ctx.unpriced.append(f"{group}: {itype} in {ctx.region} (no price in infra/core/catalog/prices.yaml)")
        return None, "", False
    if not row.confirmed:
        ctx.unconfirmed.add(f"{itype} in {ctx.region}")
    return row.usd, f"{row.source} ({row.date})", row.confirmed


@dataclass(frozen=True)
class NodeGroupShape:
    """What a node group costs by: its types, sizes and warm pool (shared with the policies)."""

    name: str
    urn: str
    az: str | None
    instance_types: tuple[str, ...]
    capacity_type: str
    min_size: int | None
    desired_size: int | None
    max_size: int | None
    pool_min: int = 0
    pool_max_prepared: int | None = None
    pool_state: str | None = None  # None: no warm pool
    disk_gb: int | None = None
    launch_template: Mapping[str, Any] | None = None

    @property
    def has_pool(self) -> bool:
        return self.pool_state is not None

    def pool_size(self, group_size: int) -> int:
        """Instances in the warm pool when the group runs `group_size` (EC2 Auto Scaling rule)."""
        if not self.has_pool:
            return 0
        cap = self.pool_max_prepared if self.pool_max_prepared is not None and self.pool_max_prepared >= 0 else self.max_size
        return max(self.pool_min, (cap or 0) - group_size, 0)

    def sizes(self) -> tuple[int, int, int]:
        lo = self.min_size or 0
        hi = self.max_size if self.max_size is not None else max(lo, self.desired_size or 0)
        mid = self.desired_size if self.desired_size is not None else lo
        return lo, mid, hi

    def billed_pool(self) -> tuple[int, int, int]:
        """Warm-pool instances billed at the instance price per scenario."""
        lo, mid, hi = self.sizes()
        if (self.pool_state or "").upper() != "RUNNING":
            return 0, 0, 0
        return self.pool_size(lo), self.pool_size(mid), self.pool_size(hi)

    def pooled(self) -> tuple[int, int, int]:
        lo, mid, hi = self.sizes()
        return self.pool_size(lo), self.pool_size(mid), self.pool_size(hi)


def node_group_shape(resource: Mapping[str, Any]) -> NodeGroupShape:
    inputs = resource.get("inputs") or {}
    scaling = inputs.get("scalingConfig") if isinstance(inputs.get("scalingConfig"), Mapping) else {}
    pool = inputs.get("warmPoolConfig") if isinstance(inputs.get("warmPoolConfig"), Mapping) else None
    types = tuple(str(t) for t in R.listify(inputs.get("instanceTypes")) if isinstance(t, str) and not R.is_unknown(t))
    return NodeGroupShape(
        name=str(resource.get("name") or ""),
        urn=str(resource.get("urn") or ""),
        az=R.az_of(resource),
        instance_types=types,
        capacity_type=str(inputs.get("capacityType") or "ON_DEMAND"),
        min_size=R.as_int(scaling.get("minSize")),
        desired_size=R.as_int(scaling.get("desiredSize")),
        max_size=R.as_int(scaling.get("maxSize")),
        pool_min=(R.as_int(pool.get("minSize")) or 0) if pool is not None else 0,
        pool_max_prepared=R.as_int(pool.get("maxGroupPreparedCapacity")) if pool is not None else None,
        pool_state=(str(pool.get("poolState") or "STOPPED") if pool is not None else None),
        disk_gb=R.as_int(inputs.get("diskSize")),
        launch_template=inputs.get("launchTemplate") if isinstance(inputs.get("launchTemplate"), Mapping) else None,
    )


def is_gpu_group(shape: NodeGroupShape, catalog: Catalog) -> bool:
    return any(t in catalog.instances for t in shape.instance_types)


def _launch_template_for(shape: NodeGroupShape, templates: list[dict], parent: str | None) -> dict | None:
    ref = shape.launch_template
    if not templates:
        return None
    if ref:
        name, ident = ref.get("name"), ref.get("id")
        for lt in templates:
            lt_name = lt["inputs"].get("name") or lt["inputs"].get("namePrefix")
            if name and not R.is_unknown(name) and name in (lt_name, lt["name"]):
                return lt
            if isinstance(ident, str) and not R.is_unknown(ident) and (lt["name"] in ident or lt["urn"] == ident):
                return lt
    siblings = [lt for lt in templates if lt.get("parent") == parent and parent]
    if len(siblings) == 1:
        return siblings[0]
    if ref and len(templates) == 1:
        return templates[0]
    return None


def _ebs_gb(template: Mapping[str, Any]) -> int:
    total = 0
    for bdm in R.listify(template.get("inputs", {}).get("blockDeviceMappings")):
        if isinstance(bdm, Mapping) and isinstance(bdm.get("ebs"), Mapping):
            total += R.as_int(bdm["ebs"].get("volumeSize")) or 0
    return total


def _has_s3_gateway_endpoint(doc: R.Document) -> bool:
    for ep in doc.of_type(R.VPC_ENDPOINT):
        svc = str(ep["inputs"].get("serviceName") or "")
        kind = str(ep["inputs"].get("vpcEndpointType") or "Gateway")
        if svc.endswith(".s3") and kind.lower() == "gateway":
            return True
    return False


def _is_nlb_service(resource: Mapping[str, Any]) -> bool | None:
    """True: NLB; False: a classic ELB Service; None: not a LoadBalancer Service."""
    inputs = resource.get("inputs") or {}
    spec = inputs.get("spec") if isinstance(inputs.get("spec"), Mapping) else {}
    if spec.get("type") != "LoadBalancer":
        return None
    meta = inputs.get("metadata") if isinstance(inputs.get("metadata"), Mapping) else {}
    ann = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    lb_type = str(ann.get("service.beta.kubernetes.io/aws-load-balancer-type", "")).lower()
    if lb_type in ("nlb", "external", "nlb-ip") or "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" in ann:
        return True
    return spec.get("loadBalancerClass") == "service.k8s.aws/nlb" or False


def _plan_weights_gb(plan: Mapping[str, Any] | None) -> Decimal | None:
    if not plan:
        return None
    per_gpu = R.as_decimal(plan.get("weights_gib_per_gpu"))
    tp = R.as_int(plan.get("tensor_parallel"))
    if per_gpu is None or not tp:
        return None
    return per_gpu * tp


def _synthesise_groups(plan: Mapping[str, Any]) -> list[dict]:
    """GPU node groups implied by the plan, for documents without resources.

    As the program builds them: each group runs FleetPlan.nodes_per_az in service (warm spares
    included) and a STOPPED warm pool pre-initialises the burst headroom (prepared up to max).
    """
    counts = plan.get("nodes_per_az") or {}
    spares = R.as_int(plan.get("warm_spares_per_az")) or 0
    lo, mid, hi = (R.as_int(counts.get(k)) or 0 for k in ("min", "desired", "max"))
    out = []
    for i in range(R.as_int(plan.get("azs")) or 1):
        inputs: dict[str, Any] = {
            "instanceTypes": [plan.get("instance_type")],
            "scalingConfig": {"minSize": lo, "desiredSize": mid, "maxSize": hi},
        }
        if hi > lo or spares:
            inputs["warmPoolConfig"] = {"minSize": spares, "poolState": "STOPPED", "maxGroupPreparedCapacity": hi}
        out.append({"urn": "", "type": R.NODE_GROUP, "name": f"gpu-az{i + 1}", "parent": None, "inputs": inputs})
    return out


def cost_of_document(
    doc: R.Document,
    *,
    catalog: Catalog | None = None,
    prices: PriceBook | None = None,
    assumptions: Assumptions | Mapping[str, Any] | None = None,
) -> CostReport:
    """The cost report of a normalised document (offline plan or preview digest)."""
    catalog = catalog or load_catalog()
    prices = prices or load_price_book()
    assume = assumptions if isinstance(assumptions, Assumptions) else Assumptions.from_mapping(assumptions)
    region = doc.region or assume.region
    if not region:
        raise InputError(
            "region", None, "a region in the plan, `config.aws:region` in the preview, or `region` in the cost config"
        )
    ctx = _Ctx(region, catalog, prices, assume, doc.plan)
    items: list[LineItem] = []
    resources = list(doc.resources)
    groups = [r for r in resources if r["type"] == R.NODE_GROUP]
    if not groups and doc.plan:
        groups = _synthesise_groups(doc.plan)
        ctx.note("no node groups in the document: GPU node groups derived from plan.nodes_per_az; "
                 "fixed infrastructure is priced only for the resources listed")
    templates = [r for r in resources if r["type"] == R.LAUNCH_TEMPLATE]
    gp3 = ctx.service("ebs_gp3_usd_per_gb_month")
    weights_gb = _plan_weights_gb(doc.plan) or assume.weights_gb
    s3_endpoint = _has_s3_gateway_endpoint(doc)
    gpu_nodes = [0, 0, 0]
    gpu_count = [0, 0, 0]
    pool_nodes = [0, 0, 0]
    hydration_nodes: list[tuple[str, int]] = []
    unzoned = 0

    for g in groups:
        shape = node_group_shape(g)
        gpu = is_gpu_group(shape, catalog)
        az = shape.az
        if az is None:
            unzoned += 1
            az = f"unzoned-{unzoned}" if gpu else REGIONAL
        lo, mid, hi = shape.sizes()
        pool = shape.billed_pool()
        if not shape.instance_types:
            ctx.unpriced.append(f"{shape.name}: instance types unknown")
            continue
        if shape.min_size is None or shape.max_size is None:
            ctx.note(f"{shape.name}: scalingConfig not fully known; missing sizes taken as {lo}/{mid}/{hi}")
        priced = [(t, *(_gpu_price(ctx, t, shape.name) if gpu else _general_price(ctx, t, shape.name)))
                  for t in shape.instance_types]
        known = [p for p in priced if p[1] is not None]
        if len(shape.instance_types) > 1 and known:
            ctx.note(f"{shape.name}: several instance types; priced at the dearest ({max(known, key=lambda p: p[1])[0]})")
        if shape.capacity_type.upper() == "SPOT":
            ctx.note(f"{shape.name}: SPOT capacity priced at on-demand (an upper bound)")
        if shape.capacity_type.upper() == "CAPACITY_BLOCK" and not (assume.usd_per_gpu_hour or assume.instance_usd_per_hour):
            ctx.note(f"{shape.name}: CAPACITY_BLOCK capacity priced at on-demand; set usd_per_gpu_hour to the block's rate")
        itype = shape.instance_types[0]
        if gpu:
            spec = catalog.instances.get(itype)
            per_node_gpus = spec.gpu_count if spec else (R.as_int((doc.plan or {}).get("gpus_per_node")) or 0)
            for i, (n, p) in enumerate(zip((lo, mid, hi), pool)):
                gpu_nodes[i] += n + p
                pool_nodes[i] += p
                gpu_count[i] += (n + p) * per_node_gpus
            hydration_nodes.append((az, hi - lo))
        if known:
            itype, price, source, confirmed = max(known, key=lambda p: p[1])
            hours = HOURS_PER_MONTH
            comp = GPU_NODES if gpu else SYSTEM_NODES
            items.append(LineItem(
                comp, az, shape.name, f"{lo}/{mid}/{hi} x {itype} @ {_money(price)}/h",
                tuple(price * n * hours for n in (lo, mid, hi)), source, confirmed,
            ))
            if shape.has_pool:
                items.append(LineItem(
                    GPU_WARM_POOL if gpu else SYSTEM_NODES, az, f"{shape.name} warm pool",
                    f"{pool[0]}/{pool[1]}/{pool[2]} x {itype} ({shape.pool_state}; worst case counts the whole pool)",
                    tuple(price * n * hours for n in pool), source, confirmed,
                ))
        # EBS: every node in the group and every pooled instance (stopped ones keep their volumes).
        lt = _launch_template_for(shape, templates, g.get("parent"))
        disk = _ebs_gb(lt) if lt else (shape.disk_gb or assume.default_node_disk_gb)
        if shape.launch_template and lt is None:
            ctx.note(f"{shape.name}: launch template not found in the document; EBS taken as {disk} GB per node")
        pooled = shape.pooled()
        counts = tuple(n + p for n, p in zip((lo, mid, hi), pooled))
        if disk:
            items.append(LineItem(
                NODE_STORAGE, az, shape.name, f"{counts[0]}/{counts[1]}/{counts[2]} nodes x {disk} GB gp3",
                tuple(gp3.usd * disk * n for n in counts), gp3.source, gp3.confirmed,
            ))

    # Fixed infrastructure.
    clusters = doc.of_type(R.CLUSTER)
    if clusters:
        row = ctx.service("eks_cluster_usd_per_hour")
        for c in clusters:
            items.append(_hourly(EKS, REGIONAL, c["name"], "1 cluster", row, 1))
    nat_row = ctx.service("nat_gateway_usd_per_hour") if doc.of_type(R.NAT_GATEWAY) else None
    for n in doc.of_type(R.NAT_GATEWAY):
        items.append(_hourly(NAT, R.az_of(n) or REGIONAL, n["name"], "1 gateway", nat_row, 1))
    eips = doc.of_type(R.EIP)
    if eips:
        row = ctx.service("public_ipv4_usd_per_hour")
        for e in eips:
            items.append(_hourly(PUBLIC_IPV4, R.az_of(e) or REGIONAL, e["name"], "1 address", row, 1))
    items.extend(_load_balancers(ctx, doc, gpu_nodes))
    # Hydration: nodes launched above minSize pull the weights, through NAT unless S3 has a
    # gateway endpoint.
    if weights_gb and any(n for _, n in hydration_nodes):
        per_gb = ZERO if s3_endpoint or not doc.of_type(R.NAT_GATEWAY) else ctx.service("nat_gateway_usd_per_gb").usd
        events = assume.scale_events_per_month
        for az, n in hydration_nodes:
            if n <= 0:
                continue
            gb = weights_gb * n * events
            items.append(LineItem(
                HYDRATION, az, "weights hydration",
                f"{n} nodes x {weights_gb.normalize():f} GB x {events} scale-ups/month "
                + ("(S3 gateway endpoint: free)" if per_gb == 0 else f"via NAT @ {_money(per_gb)}/GB"),
                (ZERO, ZERO, gb * per_gb), "nat_gateway_usd_per_gb", True,
            ))
        if not s3_endpoint and doc.of_type(R.NAT_GATEWAY):
            ctx.note("weights are pulled through the NAT gateways (billed per GB); an S3 gateway endpoint makes that free")
    buckets = doc.of_type(R.BUCKET, R.BUCKET_V2)
    if buckets:
        row = ctx.service("s3_standard_usd_per_gb_month")
        target = next((b for b in buckets if "weight" in b["name"].lower()), buckets[0])
        for b in buckets:
            gb = weights_gb if (b is target and weights_gb) else ZERO
            items.append(LineItem(S3, REGIONAL, b["name"], f"{gb.normalize():f} GB Standard" if gb else "storage not modelled",
                                  (row.usd * gb,) * 3, row.source, row.confirmed))
        if not weights_gb:
            ctx.note("model weights size unknown: S3 storage and hydration not priced (set weights_gb)")
    keys = doc.of_type(R.KMS_KEY)
    if keys:
        row = ctx.service("kms_key_usd_per_month")
        for k in keys:
            items.append(LineItem(KMS, REGIONAL, k["name"], "1 key", (row.usd,) * 3, row.source, row.confirmed))

    load = (doc.plan or {}).get("load") or {}
    tokens = R.as_decimal(load.get("output_tokens_per_s"))
    if ctx.unconfirmed:
        ctx.note("unconfirmed prices used (estimates; run `python -m infra prices refresh`): "
                 + ", ".join(sorted(ctx.unconfirmed)))
    if ctx.unpriced:
        ctx.note("NOT PRICED (cost is understated): " + "; ".join(ctx.unpriced))
    ctx.note("not modelled: CloudWatch logs, S3/KMS request charges, cross-AZ and internet data transfer")
    gpu = {s: GpuCount(gpu_nodes[i], gpu_count[i], pool_nodes[i]) for i, s in enumerate(SCENARIOS)}
    return CostReport(doc.stack, region, doc.kind, tuple(items), gpu, tokens, tuple(ctx.notes), tuple(ctx.unpriced))


def _hourly(component: str, az: str, name: str, detail: str, row: PriceRow, qty: int) -> LineItem:
    amount = row.usd * qty * HOURS_PER_MONTH
    return LineItem(component, az, name, f"{detail} @ {_money(row.usd)}/h", (amount,) * 3, row.source, row.confirmed)


def _envoy_services(doc: R.Document) -> list[dict]:
    """The Service each EnvoyProxy makes Envoy Gateway create (type LoadBalancer unless set)."""
    out = []
    for proxy in doc.of_type(R.ENVOY_PROXY):
        spec = proxy["inputs"].get("spec") if isinstance(proxy["inputs"].get("spec"), Mapping) else {}
        k8s = ((spec.get("provider") or {}).get("kubernetes") or {}) if isinstance(spec.get("provider"), Mapping) else {}
        es = k8s.get("envoyService") if isinstance(k8s.get("envoyService"), Mapping) else {}
        out.append({
            "name": proxy["name"],
            "inputs": {"spec": {"type": es.get("type", "LoadBalancer")},
                       "metadata": {"annotations": es.get("annotations") or {}}},
        })
    return out


def _load_balancers(ctx: _Ctx, doc: R.Document, gpu_nodes: list[int]) -> list[LineItem]:
    nlbs: list[dict] = []
    for svc in [*doc.of_type(R.K8S_SERVICE), *_envoy_services(doc)]:
        kind = _is_nlb_service(svc)
        if kind:
            nlbs.append(svc)
        elif kind is False:
            ctx.note(f"{svc['name']}: a classic ELB Service is not priced (annotate it as an NLB)")
    for lb in doc.of_type(R.LOAD_BALANCER):
        if str(lb["inputs"].get("loadBalancerType", "application")) == "network":
            nlbs.append(lb)
        else:
            ctx.note(f"{lb['name']}: only network load balancers are priced")
    if not nlbs:
        return []
    hour = ctx.service("nlb_usd_per_hour")
    lcu = ctx.service("nlb_lcu_usd_per_hour")
    ipv4 = ctx.service("public_ipv4_usd_per_hour")
    plan = doc.plan or {}
    load = plan.get("load") or {}
    tokens = R.as_decimal(load.get("output_tokens_per_s"))
    flows = R.as_decimal(load.get("concurrent_requests")) or ZERO
    if tokens:
        gb_per_hour = tokens * 3600 * ctx.assume.stream_bytes_per_output_token / Decimal(10**9)
        nlcu = max(gb_per_hour / GB_PER_NLCU_HOUR, flows / ACTIVE_FLOWS_PER_NLCU)
    else:
        nlcu = Decimal(1)
        ctx.note("declared load unknown: NLB priced at 1 NLCU")
    expected_nodes = gpu_nodes[1] or 1
    scale = Decimal(gpu_nodes[2]) / Decimal(expected_nodes) if gpu_nodes[2] else Decimal(1)
    azs = len({i for i in (R.az_of(n) for n in doc.of_type(R.NAT_GATEWAY)) if i}) or R.as_int(plan.get("azs")) or 1
    out = []
    for lb in nlbs:
        meta = lb["inputs"].get("metadata") if isinstance(lb["inputs"].get("metadata"), Mapping) else {}
        ann = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
        scheme = str(ann.get("service.beta.kubernetes.io/aws-load-balancer-scheme") or lb["inputs"].get("internal") or "internet-facing")
        public = scheme in ("internet-facing", "False", "false")
        base = hour.usd * HOURS_PER_MONTH
        lcu_month = lcu.usd * nlcu * HOURS_PER_MONTH
        ip_month = ipv4.usd * azs * HOURS_PER_MONTH if public else ZERO
        out.append(LineItem(
            LOAD_BALANCER, REGIONAL, lb["name"],
            f"NLB @ {_money(hour.usd)}/h + {nlcu.quantize(Decimal('0.001'))} NLCU @ {_money(lcu.usd)}/h"
            + (f" + {azs} public IPv4" if public else ""),
            (base + lcu_month + ip_month, base + lcu_month + ip_month, base + lcu_month * scale + ip_month),
            hour.source, hour.confirmed and lcu.confirmed,
        ))
    return out


# --- entry points ---------------------------------------------------------------------------


def cost_of_plan(plan_json: Mapping[str, Any], catalog: Catalog | None = None, prices: PriceBook | None = None,
                 assumptions: Assumptions | Mapping[str, Any] | None = None) -> CostReport:
    """Cost of an offline plan document `{"stack", "region", "plan", "resources"}`."""
    return cost_of_document(R.normalise(plan_json, "plan"), catalog=catalog, prices=prices, assumptions=assumptions)


def cost_of_preview(preview_json: Mapping[str, Any], catalog: Catalog | None = None, prices: PriceBook | None = None,
                    assumptions: Assumptions | Mapping[str, Any] | None = None) -> CostReport:
    """Cost of a `pulumi preview --json` digest."""
    return cost_of_document(R.normalise(preview_json, "preview"), catalog=catalog, prices=prices, assumptions=assumptions)


def cost_of_resources(resources: Iterable[Mapping[str, Any]], region: str | None, *, plan: Mapping[str, Any] | None = None,
                      stack: str = "", catalog: Catalog | None = None, prices: PriceBook | None = None,
                      assumptions: Assumptions | Mapping[str, Any] | None = None) -> CostReport:
    """Cost of an already-normalised resource list (the policy pack's stack rule uses this)."""
    doc = R.Document("plan" if plan else "preview", stack, region, tuple(dict(r) for r in resources),
                     dict(plan) if plan else None)
    return cost_of_document(doc, catalog=catalog, prices=prices, assumptions=assumptions)


def node_hour_price(
    instance_type: str,
    region: str,
    *,
    catalog: Catalog | None = None,
    prices: PriceBook | None = None,
    assumptions: Assumptions | Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
) -> tuple[Decimal | None, str]:
    """$/instance-hour of one type in one region, by the rules the cost model uses, and its source.

    Overrides first (`instance_usd_per_hour`, then `usd_per_gpu_hour` for GPU types), then the
    plan's own price for its instance type, then the price book. (None, why) when unpriced.
    """
    assume = assumptions if isinstance(assumptions, Assumptions) else Assumptions.from_mapping(assumptions)
    ctx = _Ctx(region, catalog or load_catalog(), prices or load_price_book(), assume, dict(plan) if plan else None)
    lookup = _gpu_price if instance_type in ctx.catalog.instances else _general_price
    price, source, _ = lookup(ctx, instance_type, instance_type)
    return price, (source if price is not None else "; ".join(ctx.unpriced))
