"""What a stack costs and what it may cost (pure: no pulumi, no boto3).

Layering (infracost's): source documents -> `resources` (one normalised resource list from an
offline plan or a `pulumi preview --json` digest) -> `model` (line items per component and AZ,
baseline / expected / worst case, Decimal) -> `diff` -> `render` (table, markdown, JSON).
Prices come from `infra.core.catalog.prices`. The one effectful module, `infra.core.catalog.refresh`
(AWS Price List API through boto3), is not imported here.

Entry points for the rest of the project:

    from infra.core.cost import cost_of_plan, render_report_table
    report = cost_of_plan(plan_json)            # plan_json: {"stack","region","plan","resources"}
    report.to_dict()                            # the `cost` section of `plan --json`
    print(render_report_table(report))          # the table `plan` prints
"""
from infra.core.cost.diff import CostDiff, PolicyVerdict, StackDiff, diff_reports
from infra.core.cost.model import (
    COMPONENTS,
    SCENARIOS,
    Assumptions,
    CostReport,
    GpuCount,
    LineItem,
    NodeGroupShape,
    cost_of_document,
    cost_of_plan,
    cost_of_preview,
    cost_of_resources,
    is_gpu_group,
    node_group_shape,
)
from infra.core.cost.render import (
    render_diff,
    render_diff_json,
    render_diff_markdown,
    render_diff_table,
    render_report_json,
    render_report_markdown,
    render_report_table,
)
from infra.core.cost.resources import Document, load_document, load_documents, normalise

__all__ = [
    "Assumptions", "COMPONENTS", "CostDiff", "CostReport", "Document", "GpuCount", "LineItem", "NodeGroupShape",
    "PolicyVerdict", "SCENARIOS", "StackDiff", "cost_of_document", "cost_of_plan", "cost_of_preview",
    "cost_of_resources", "diff_reports", "is_gpu_group", "load_document", "load_documents", "node_group_shape",
    "normalise", "render_diff", "render_diff_json", "render_diff_markdown", "render_diff_table",
    "render_report_json", "render_report_markdown", "render_report_table",
]
