"""What a stack costs and what it may cost (pure: no pulumi, no boto3).

Layering (infracost's): the resource graph (`infra.core.graph`: an offline plan or a
`pulumi preview --json` digest) -> `pricers` (one small function per priced resource type,
registered by type token, over the facts `context` computes once) -> `report` (line items per
component and AZ, baseline / expected / worst case, Decimal) -> `diff` -> `render` (table,
markdown, JSON). Prices come from the one price book, `infra.core.catalog.prices`.

Entry points for the rest of the project:

    from infra.core.cost import cost_of_plan, render_report_table
    report = cost_of_plan(plan_json)            # plan_json: {"stack","region","plan","resources"}
    report.to_dict()                            # the `cost` section of `plan --json`
    print(render_report_table(report))          # the table `plan` prints
"""
from infra.core.cost.context import Assumptions
from infra.core.cost.diff import CostDiff, PolicyVerdict, StackDiff, diff_reports
from infra.core.cost.model import cost_of_document, cost_of_plan, cost_of_preview, cost_of_resources, node_hour_price
from infra.core.cost.nodegroup import NodeGroupShape, is_gpu_group, node_group_shape
from infra.core.cost.pricers import REGISTRY, pricer, pricers_for
from infra.core.cost.render import (
    render_diff,
    render_diff_json,
    render_diff_markdown,
    render_diff_table,
    render_report_json,
    render_report_markdown,
    render_report_table,
)
from infra.core.cost.report import COMPONENTS, SCENARIOS, CostReport, GpuCount, LineItem, cents

__all__ = [
    "Assumptions", "COMPONENTS", "CostDiff", "CostReport", "GpuCount", "LineItem", "NodeGroupShape", "PolicyVerdict",
    "REGISTRY", "SCENARIOS", "StackDiff", "cents", "cost_of_document", "cost_of_plan", "cost_of_preview",
    "cost_of_resources", "diff_reports", "is_gpu_group", "node_group_shape", "node_hour_price", "pricer",
    "pricers_for", "render_diff", "render_diff_json", "render_diff_markdown", "render_diff_table",
    "render_report_json", "render_report_markdown", "render_report_table",
]
