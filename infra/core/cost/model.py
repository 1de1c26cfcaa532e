"""The cost model's entry points: a ResourceGraph (offline plan or preview) -> CostReport.

`cost_of_document` computes the facts once, runs every registered pricer
(`infra.core.cost.pricers`) and adds the report's closing notes. Fixed infrastructure (EKS
control plane, NAT gateways, public IPv4, the NLB, EBS, S3, KMS) is the same in every scenario
except where it scales with nodes (EBS) or load (NLCUs). Pure: no pulumi, no boto3.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any, Iterable, Mapping

from infra.core.catalog import Catalog, load_catalog
from infra.core.catalog.prices import PriceBook, load_price_book
from infra.core.cost.context import Assumptions, PricingContext, facts_of
from infra.core.cost.diff import diff_key
from infra.core.cost.nodegroup import plan_node_groups
from infra.core.cost.pricers import price_graph
from infra.core.cost.report import CostReport, GpuGroup
from infra.core.errors import InputError
from infra.core.graph import NODE_GROUP, ResourceGraph, graph_from_resources, graph_of


def _assumptions(assumptions: Assumptions | Mapping[str, Any] | None) -> Assumptions:
    return assumptions if isinstance(assumptions, Assumptions) else Assumptions.from_mapping(assumptions)


def cost_of_document(
    graph: ResourceGraph,
    *,
    catalog: Catalog | None = None,
    prices: PriceBook | None = None,
    assumptions: Assumptions | Mapping[str, Any] | None = None,
) -> CostReport:
    """The cost report of a stack's resource graph (offline plan or preview digest)."""
    catalog = catalog or load_catalog()
    assume = _assumptions(assumptions)
    region = graph.region or assume.region
    if not region:
        raise InputError(
            "region", None, "a region in the plan, `config.aws:region` in the preview, or `region` in the cost config"
        )
    synthesised = not graph.of_type(NODE_GROUP) and graph.plan
    if synthesised:
        graph = replace(graph, nodes=graph.nodes + plan_node_groups(graph.plan))
    ctx = PricingContext(region, catalog, prices or load_price_book(), assume, graph.plan, graph,
                         facts_of(graph, catalog, assume))
    if synthesised:
        ctx.note("no node groups in the document: GPU node groups derived from plan.nodes_per_az; "
                 "fixed infrastructure is priced only for the resources listed")
    items = price_graph(ctx)
    if ctx.unconfirmed:
        ctx.note("unconfirmed prices used (estimates; run `python -m infra prices refresh`): "
                 + ", ".join(sorted(ctx.unconfirmed)))
    if ctx.unpriced:
        ctx.note("NOT PRICED (cost is understated): " + "; ".join(ctx.unpriced))
    ctx.note("not modelled: CloudWatch logs, S3/KMS request charges, cross-AZ and internet data transfer")
    groups = tuple(GpuGroup(g.shape.name, g.az, g.shape.instance_types, g.shape.sizes())
                   for g in ctx.facts.groups if g.gpu)
    return CostReport(diff_key(graph.stack, graph.extras.get("project")), region, graph.kind, tuple(items), ctx.facts.gpu, ctx.facts.output_tokens_per_s,
                      tuple(ctx.notes), tuple(ctx.unpriced), gpu_groups=groups)


def cost_of_plan(plan_json: Mapping[str, Any], catalog: Catalog | None = None, prices: PriceBook | None = None,
                 assumptions: Assumptions | Mapping[str, Any] | None = None) -> CostReport:
    """Cost of an offline plan document `{"stack", "region", "plan", "resources"}`."""
    return cost_of_document(graph_of(plan_json, "plan"), catalog=catalog, prices=prices, assumptions=assumptions)


def cost_of_preview(preview_json: Mapping[str, Any], catalog: Catalog | None = None, prices: PriceBook | None = None,
                    assumptions: Assumptions | Mapping[str, Any] | None = None) -> CostReport:
    """Cost of a `pulumi preview --json` digest."""
    return cost_of_document(graph_of(preview_json, "preview"), catalog=catalog, prices=prices, assumptions=assumptions)


def cost_of_resources(resources: Iterable[Mapping[str, Any]], region: str | None, *, plan: Mapping[str, Any] | None = None,
                      stack: str = "", catalog: Catalog | None = None, prices: PriceBook | None = None,
                      assumptions: Assumptions | Mapping[str, Any] | None = None) -> CostReport:
    """Cost of plain resource dicts `{urn, type, name, parent, inputs[, propertyDependencies]}`."""
    graph = graph_from_resources(resources, region, plan=plan, stack=stack)
    return cost_of_document(graph, catalog=catalog, prices=prices, assumptions=assumptions)


def node_hour_price(
    instance_type: str,
    region: str,
    *,
    catalog: Catalog | None = None,
    prices: PriceBook | None = None,
    assumptions: Assumptions | Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    capacity_type: str = "ON_DEMAND",
) -> tuple[Decimal | None, str]:
    """$/instance-hour of one type in one region, by the rules the cost model uses, and its source.

    Overrides first (`instance_usd_per_hour`, then `usd_per_gpu_hour` for GPU types), then the
    plan's own price for its instance type, then the price book for the node group's
    `capacity_type` (EKS spelling). (None, why) when unpriced.
    """
    ctx = PricingContext(region, catalog or load_catalog(), prices or load_price_book(), _assumptions(assumptions),
                         dict(plan) if plan else None)
    if instance_type in ctx.catalog.instances:
        price, source, _ = ctx.gpu_price(instance_type, instance_type, capacity_type)
    else:
        price, source, _ = ctx.general_price(instance_type, instance_type)
    return price, (source if price is not None else "; ".join(ctx.unpriced))
