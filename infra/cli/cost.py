"""`prices`, `cost` and `cost-diff`: the price book and the cost model on the command line.

    python -m infra prices list [--region R]
    python -m infra prices refresh [--region R ...] [--dry-run]
    python -m infra cost FILE [--format table|markdown|json]
    python -m infra cost-diff BASE HEAD [--format markdown|table|json] [--policy-config FILE|DIR]

FILE, BASE and HEAD are offline plan JSONs (`plan --json`), `pulumi preview --json` digests,
or directories of them (one file per stack). Exit codes: 0, or 2 for bad input; `cost-diff
--fail-on-violation` exits 3 when a head stack violates a mandatory policy.
"""
from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping


from infra.core.catalog import refresh as rf
from infra.core.catalog.prices import PRICES_PATH, REQUIRED_REGIONS, load_price_book, write_price_document
from infra.core.cost import Assumptions, CostReport, PolicyVerdict, cost_of_document, diff_reports
from infra.core.cost.render import render_diff, render_report_json, render_report_markdown, render_report_table
from infra.core.errors import EXIT_OK, EXIT_POLICY, InputError, UserError
from infra.core.files import atomic_write, read_yaml_file
from infra.core.graph import ResourceGraph, as_decimal, load_graphs
from infra.ops import aws

SPEND_CAP = "gpu-spend-cap"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prices",
        help="list or refresh the price catalog (infra/core/catalog/prices.yaml)",
        description="On-demand instance and service prices per region, each with source and date.",
    )
    sub = p.add_subparsers(dest="prices_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="print the price book (unconfirmed rows flagged)")
    ls.add_argument("--region", action="append", help="only this region (repeatable)")
    ls.add_argument("--prices", default=None, help="prices YAML (default: infra/core/catalog/prices.yaml)")
    ls.set_defaults(func=cmd_prices_list)
    rf = sub.add_parser(
        "refresh",
        help="re-read prices from the AWS Price List API (needs AWS credentials)",
        description="Fetch on-demand instance and service prices with boto3 (pricing endpoint in us-east-1) "
        "and rewrite the prices YAML atomically.",
    )
    rf.add_argument("--region", action="append", help=f"region to refresh (repeatable; default: {', '.join(REQUIRED_REGIONS)})")
    rf.add_argument("--prices", default=None, help="prices YAML to rewrite (default: infra/core/catalog/prices.yaml)")
    rf.add_argument("--no-services", action="store_true", help="instances only")
    rf.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    rf.set_defaults(func=cmd_prices_refresh)

    c = subparsers.add_parser(
        "cost",
        help="cost of a plan JSON or a `pulumi preview --json` digest",
        description="Monthly and hourly cost per component and AZ: baseline (min nodes), expected (desired), "
        "worst case (max nodes + warm pool + hydration transfer), and $/1M output tokens.",
    )
    c.add_argument("file", help="plan JSON, preview JSON, or a directory of them")
    c.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    c.add_argument("--cost-config", default=None, help="assumptions and price overrides (YAML/JSON)")
    c.set_defaults(func=cmd_cost)

    d = subparsers.add_parser(
        "cost-diff",
        help="what a change costs: base vs head plans or previews, per stack",
        description="Per stack: monthly before / after / delta / %, per component, GPU changes first, budget "
        "headroom and the policy verdict.",
    )
    d.add_argument("base", help="base plan/preview JSON or directory (one file per stack); may be missing")
    d.add_argument("head", help="head plan/preview JSON or directory")
    d.add_argument("--format", choices=["markdown", "table", "json"], default="table")
    d.add_argument("--policy-config", default=None,
                   help="policy pack config JSON, or a directory holding config.<stack>.json (default: policies/)")
    d.add_argument("--cost-config", default=None, help="assumptions and price overrides (YAML/JSON)")
    d.add_argument("--budget-usd", type=_usd_amount, default=None, help="monthly budget for every stack (overrides config)")
    d.add_argument("--output", default=None, help="write here instead of stdout")
    d.add_argument("--fail-on-violation", action="store_true", help="exit 3 when a head stack violates a mandatory policy")
    d.set_defaults(func=cmd_cost_diff)


def _usd_amount(text: str) -> Decimal:
    value = as_decimal(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; a non-negative USD amount is allowed")
    return value


# --- prices ---------------------------------------------------------------------------------


def cmd_prices_list(args: argparse.Namespace) -> int:
    book = load_price_book(args.prices)
    regions = args.region or list(book.regions)
    for region in regions:
        if region not in book.regions:
            raise InputError("--region", region, f"regions in the price book: {', '.join(book.regions)}")
        print(f"== {region}")
        for section in ("instances", "general_instances", "services"):
            rows = getattr(book, section).get(region, {})
            for key, row in sorted(rows.items()):
                flag = "" if row.confirmed else "  [unconfirmed]"
                print(f"  {section:<17} {key:<30} ${row.usd} per {row.unit}  ({row.source}, {row.date}){flag}")
        for key, why in sorted(book.unpriced.get(region, {}).items()):
            print(f"  {'unpriced':<17} {key:<30} {why}")
    return EXIT_OK


def cmd_prices_refresh(args: argparse.Namespace, client: Any = None) -> int:
    """Refresh through `client` (a Price List API client; default: boto3's, from infra.ops.aws)."""
    path = Path(args.prices) if args.prices else PRICES_PATH
    book = load_price_book(path)
    regions = args.region or list(REQUIRED_REGIONS)
    try:
        client = client or aws.pricing_client()
        result = rf.refresh(client, book, regions, services=not args.no_services)
    except UserError:
        raise
    except Exception as exc:  # botocore errors: say what to do, no traceback
        if exc.__class__.__module__.startswith("botocore"):
            raise aws.explain_aws_error(exc) from None
        raise
    for line in result.changes:
        print(line)
    if not result.changes:
        print("no changes")
    if args.dry_run:
        print(f"dry run: {path} not written")
        return EXIT_OK
    write_price_document(path, result.book)
    print(f"wrote {path}")
    return EXIT_OK


# --- cost -----------------------------------------------------------------------------------


def read_mapping(path: str | None, field: str) -> dict:
    if not path:
        return {}
    data = read_yaml_file(path, field)  # YAML reads JSON too
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(field, path, "a mapping")
    return data


def cmd_cost(args: argparse.Namespace) -> int:
    graphs = load_graphs(args.file)
    assume = Assumptions.from_mapping(read_mapping(args.cost_config, "--cost-config"), "--cost-config")
    renderer = {"table": render_report_table, "markdown": render_report_markdown, "json": render_report_json}[args.format]
    out = []
    for graph in graphs.values():
        out.append(renderer(cost_of_document(graph, assumptions=assume)))
    sys.stdout.write("\n".join(out))
    return EXIT_OK


def _pack_config_for(stack: str, option: str | None) -> dict | None:
    """The policy pack config of a stack: --policy-config FILE, DIR/config.<stack>.json, policies/."""
    if option and Path(option).is_file():
        return read_mapping(option, "--policy-config")
    directory = Path(option) if option else Path("policies")
    if option and not directory.is_dir():
        raise InputError("--policy-config", option, "a policy pack config JSON file or a directory of config.<stack>.json")
    candidate = directory / f"config.{stack}.json"
    return read_mapping(str(candidate), "--policy-config") if candidate.is_file() else None


def assumptions_from_pack_config(pack: Mapping[str, Any] | None) -> dict:
    """The cost assumptions the spend-cap policy is configured with (one source of truth)."""
    section = (pack or {}).get(SPEND_CAP)
    if not isinstance(section, Mapping):
        return {}
    return {k: v for k, v in section.items() if k in Assumptions.__dataclass_fields__}


def budget_of(pack: Mapping[str, Any] | None, graph: ResourceGraph | None) -> Decimal | None:
    """The budget the head was judged against (its plan's verdict), else the pack config's."""
    if graph is not None and graph.policy and graph.policy.get("monthly_budget_usd") is not None:
        return as_decimal(graph.policy["monthly_budget_usd"])
    section = (pack or {}).get(SPEND_CAP)
    if isinstance(section, Mapping) and section.get("monthly_budget_usd") is not None:
        return as_decimal(section["monthly_budget_usd"])
    return None


def verdict_of(graph: ResourceGraph, pack: Mapping[str, Any] | None) -> PolicyVerdict | None:
    """The plan's own verdict when it carries one, else the pack run offline, else None."""
    if graph.policy:
        return PolicyVerdict.from_dict(graph.policy)
    if pack is None:
        return None
    from policies import evaluate  # the policy pack's rule functions, run offline

    violations = evaluate(graph, pack)
    return PolicyVerdict(True, tuple(v.to_dict() for v in violations))


def cmd_cost_diff(args: argparse.Namespace) -> int:
    base_path = Path(args.base)
    base = load_graphs(args.base) if base_path.exists() and (base_path.is_file() or any(base_path.glob("*.json"))) else {}
    head = load_graphs(args.head)
    cost_config = read_mapping(args.cost_config, "--cost-config")
    before: dict[str, CostReport] = {}
    after: dict[str, CostReport] = {}
    budgets: dict[str, Decimal | None] = {}
    verdicts: dict[str, PolicyVerdict | None] = {}
    for stack in list(head) + [s for s in base if s not in head]:
        pack = _pack_config_for(stack, args.policy_config)
        assume = Assumptions.from_mapping({**assumptions_from_pack_config(pack), **cost_config}, "cost config")
        if stack in base:
            before[stack] = cost_of_document(base[stack], assumptions=assume)
        if stack in head:
            after[stack] = cost_of_document(head[stack], assumptions=assume)
            verdicts[stack] = verdict_of(head[stack], pack)
        budgets[stack] = args.budget_usd if args.budget_usd is not None else budget_of(pack, head.get(stack))
    diff = diff_reports(before, after, budgets, verdicts)
    text = render_diff(diff, args.format)
    if args.output:
        atomic_write(args.output, text, field="--output")
    else:
        sys.stdout.write(text)
    mandatory = sum(v.mandatory for v in verdicts.values() if v)
    if args.fail_on_violation and mandatory:
        print(f"error: {mandatory} mandatory policy violation(s) in head", file=sys.stderr)
        return EXIT_POLICY
    return EXIT_OK
