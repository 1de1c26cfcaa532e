"""`python -m infra tco --stack S [--json [FILE]]`: self-host or API, the whole breakdown.

The stack's offline plan (both Pulumi projects under mocks, priced by the cost model as `plan`
prices it) plus the TCO model (infra/core/cost/tco.py): GPU node-hours through the daily
profile, fixed infrastructure, on-call staffing and reservations (`llm-fleet:tco`), $/1M tokens
at the declared demand and at capacity within SLO, and per managed API of the price book its
blended price, its bill at the declared volume and the break-even daily volume. Stale or
unconfirmed API prices are flagged (docs/tco.md). Exit codes: 0, or 2 for bad input.
"""
from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from infra.cli.argtypes import command_parser
from infra.cli.output import add_json_argument, emit_json, warn
from infra.core.errors import EXIT_OK, InputError
from infra.core.paths import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "tco", __doc__, help="self-host or API: total cost of ownership, $/1M tokens and the break-even against managed APIs")
    p.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
    p.add_argument("--project-dir", metavar="DIR", default=None,
                   help="directory holding Pulumi.yaml and Pulumi.<stack>.yaml (default: the repository root)")
    add_json_argument(p, "the TCO report")
    p.set_defaults(func=run)


def demand_of(resolved: Any) -> dict[str, Any]:
    """The demand a resolved stack serves: its sized-for workload's rate, and the share of it its
    region's traffic is (stacks/<env>.yaml; 1 outside an environment)."""
    share = Decimal(1)
    if resolved.share is not None and resolved.sizing_share_pct:
        share = resolved.share.traffic_share_pct / resolved.sizing_share_pct
    return {"declared_output_tokens_per_s": resolved.spec.workload.output_tokens_per_s, "served_share": share}


def tco_of_resolved(resolved: Any, report: Any, **kwargs: Any) -> Any:
    """The TCO of a resolved stack whose cost model `report` gives (its own `tco` config and demand)."""
    from infra.core.cost.tco import tco_of

    return tco_of(report, resolved.plan, resolved.config.tco, **demand_of(resolved), **kwargs)


def gpu_only_tco(plan: Any, workload: Any, config: Any = None, stack: str = "") -> Any:
    """The TCO `size` shows: the plan's GPU node groups alone (no Pulumi program runs)."""
    from infra.core.config import TcoConfig
    from infra.core.cost import cost_of_plan
    from infra.core.cost.tco import tco_of

    report = cost_of_plan({"stack": stack, "region": plan.region, "plan": plan.to_dict(), "resources": []})
    return tco_of(report, plan, config or TcoConfig(), declared_output_tokens_per_s=workload.output_tokens_per_s)


def vs_api_text(t: Any) -> str:
    from infra.core.cost.tco import vs_api_lines

    return "\n".join(vs_api_lines(t)) + "\n"


def run(args: argparse.Namespace) -> int:
    from infra.core.cost.tco import render_tco_table
    from infra.core.resolve import resolve
    from infra.program.offline import plan_stack
    from policies import check_plan, config_for_stack

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    if not (project_dir / "Pulumi.yaml").is_file():
        raise InputError("--project-dir", str(project_dir), "a directory with a Pulumi.yaml")
    resolved = resolve(args.stack, project_dir)  # config errors (a bad tco section too) exit 2 here
    warn(resolved.warnings)
    pack_config = config_for_stack(args.stack, project_dir)
    doc = plan_stack(args.stack, project_dir).to_json()
    report = check_plan(doc, pack_config, project_dir=project_dir).report  # priced as `plan` prices it
    t = tco_of_resolved(resolved, report)
    if emit_json(args.json, t.to_dict()):
        return EXIT_OK
    sys.stdout.write(render_tco_table(t))
    return EXIT_OK
