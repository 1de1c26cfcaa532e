"""What a stack costs: line items per component and AZ, for three scenarios, in Decimal.

Scenarios (per GPU node group, from its `scalingConfig` and `warmPoolConfig`):

* baseline - `minSize` nodes, plus warm-pool instances kept RUNNING;
* expected - `desiredSize` nodes, plus RUNNING warm-pool instances;
* worst    - `maxSize` nodes, plus RUNNING warm-pool instances, plus the data transfer of
  hydrating every node launched above `minSize`, `scale_events_per_month` times a month.

Monthly = hourly x HOURS_PER_MONTH; monthly-priced items (GB-month, key-month) are stored
monthly and shown hourly as monthly / HOURS_PER_MONTH. Nothing is rounded until it is displayed.
The pricers that fill a report live in `infra.core.cost.pricers`.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping

from infra.core import money
from infra.core.catalog import HOURS_PER_MONTH

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
DNS_ZONES = "dns-zones"
DNS_QUERIES = "dns-queries"
DNS_HEALTH_CHECKS = "dns-health-checks"
COMPONENTS = (GPU_NODES, GPU_WARM_POOL, SYSTEM_NODES, NODE_STORAGE, EKS, NAT, PUBLIC_IPV4, LOAD_BALANCER,
              HYDRATION, S3, KMS, DNS_ZONES, DNS_QUERIES, DNS_HEALTH_CHECKS)

ZERO = Decimal(0)
CENT = Decimal("0.01")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


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
class GpuGroup:
    """One GPU node group: what a diff compares beyond counts (a change of instance type)."""

    name: str
    az: str
    instance_types: tuple[str, ...]
    nodes: tuple[int, int, int]  # baseline, expected, worst

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "az": self.az, "instance_types": list(self.instance_types),
                "nodes": dict(zip(SCENARIOS, self.nodes))}


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
    gpu_groups: tuple[GpuGroup, ...] = ()

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
        """The report as JSON: amounts as decimal strings, counts as numbers (infra.core.money)."""
        m, h = money.usd, money.usd_rate
        scenarios = {}
        for s in SCENARIOS:
            per_m = self.usd_per_million_output_tokens(s)
            per_m_gpu = self.usd_per_million_output_tokens(s, gpu_only=True)
            scenarios[s] = {
                "usd_per_hour": h(self.total_hour(s)),
                "usd_per_month": m(self.total_month(s)),
                "gpu_usd_per_month": m(self.gpu_month(s)),
                "usd_per_million_output_tokens": h(per_m),
                "gpu_usd_per_million_output_tokens": h(per_m_gpu),
                "gpu_nodes": self.gpu[s].nodes,
                "gpus": self.gpu[s].gpus,
                "warm_pool_nodes": self.gpu[s].warm_pool_nodes,
            }
        return {
            "stack": self.stack,
            "region": self.region,
            "source": self.source,
            "currency": "USD",
            "hours_per_month": money.number(self.hours_per_month),
            "scenarios": scenarios,
            "components_usd_per_month": {c: {s: m(self.component_month(c, s)) for s in SCENARIOS} for c in self.components()},
            "azs_usd_per_month": {a: {s: m(v) for s, v in ((s, self.by_az(s)[a]) for s in SCENARIOS)} for a in self.azs()},
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
            "gpu_node_groups": [g.to_dict() for g in self.gpu_groups],
            "load": {"output_tokens_per_s": money.number(self.output_tokens_per_s or None)},
            "notes": list(self.notes),
            "unpriced": list(self.unpriced),
        }
