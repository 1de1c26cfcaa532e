"""`prices`, `cost` and `cost-diff`: the price book and the cost model on the command line.

    python -m infra prices list [--region R] [--json [FILE]]
    python -m infra prices refresh [--region R ...] [--dry-run] [--json [FILE]]
    python -m infra cost FILE [--format table|markdown] [--json [FILE]]
    python -m infra cost-diff BASE HEAD [--format markdown|table] [--json [FILE]] [--policy-config FILE|DIR]

FILE, BASE and HEAD are offline plan JSONs (`plan --json`), `pulumi preview --json` digests,
or directories of them (one file per stack); a plan that failed (`plan --json` writes
`{"stack", "exit_code", "error"}` then) is shown as failed, never as a removed stack. JSON
follows the one money rule (infra/core/money.py). Exit codes: 0, or 2 for bad input;
`cost-diff --fail-on-violation` exits 3 when a head stack violates a mandatory policy.
"""
from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from infra.cli.argtypes import monthly_usd
from infra.cli.output import add_json_argument, emit_json
from infra.core import money
from infra.core.catalog import refresh as rf
from infra.core.catalog.prices import PRICES_PATH, REQUIRED_REGIONS, PriceBook, load_price_book, write_price_document
from infra.core.cost import Assumptions, CostReport, PolicyVerdict, cost_of_document, diff_reports
from infra.core.cost.diff import PlanFailure, TcoFigures, diff_key
from infra.core.cost.render import render_diff, render_report_markdown, render_report_table
from infra.core.errors import EXIT_OK, EXIT_POLICY, InputError, UserError
from infra.core.files import atomic_write, read_yaml_file
from infra.core.graph import ResourceGraph, as_decimal, graph_of, json_documents
from infra.core.labels import GLOBAL_PROJECT
from infra.core.paths import GLOBAL_DIRNAME
from infra.ops import aws

SPEND_CAP = "gpu-spend-cap"


def text_format(*choices: str) -> Any:
    """`--format` for the human formats; `json` points at `--json` (one way to ask for JSON)."""

    def parse(text: str) -> str:
        if text == "json":
            raise argparse.ArgumentTypeError("'json' is not a --format any more; use --json (stdout) or --json FILE")
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; one of {', '.join(choices)}")
        return text

    return parse


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
    add_json_argument(ls, "the price rows")
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
    rf.add_argument("--api-models", action="store_true",
                    help="the managed-API token prices instead (Bedrock rows; OpenAI and Anthropic by hand, docs/tco.md)")
    rf.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    add_json_argument(rf, "the changes and what was written")
    rf.set_defaults(func=cmd_prices_refresh)

    c = subparsers.add_parser(
        "cost",
        help="cost of a plan JSON or a `pulumi preview --json` digest",
        description="Monthly and hourly cost per component and AZ: baseline (min nodes), expected (desired), "
        "worst case (max nodes + warm pool + hydration transfer), and $/1M output tokens. "
        "Positional arguments first: `cost PLAN.json --json`.",
    )
    c.add_argument("file", help="plan JSON, preview JSON, or a directory of them")
    c.add_argument("--format", type=text_format("table", "markdown"), default="table", help="table (default) or markdown")
    c.add_argument("--cost-config", default=None, help="assumptions and price overrides (YAML/JSON)")
    add_json_argument(c, "the cost report (a directory: {\"reports\": [...]})")
    c.set_defaults(func=cmd_cost)

    d = subparsers.add_parser(
        "cost-diff",
        help="what a change costs: base vs head plans or previews, per stack",
        description="Per stack: monthly before / after / delta / %, per component, GPU changes first (counts and "
        "instance types), budget headroom and the policy verdict; failed plans are shown as failed. "
        "Positional arguments first: `cost-diff BASE HEAD --json`.",
    )
    d.add_argument("base", help="base plan/preview JSON or directory (one file per stack); may be missing")
    d.add_argument("head", help="head plan/preview JSON or directory")
    d.add_argument("--format", type=text_format("markdown", "table"), default="table", help="table (default) or markdown")
    d.add_argument("--policy-config", default=None,
                   help="policy pack config JSON, or a directory holding config.<stack>.json (default: policies/)")
    d.add_argument("--cost-config", default=None, help="assumptions and price overrides (YAML/JSON)")
    d.add_argument("--budget-usd", type=monthly_usd, default=None, help="monthly budget for every stack (overrides config)")
    d.add_argument("--output", default=None, help="write the table or markdown here instead of stdout")
    d.add_argument("--fail-on-violation", action="store_true", help="exit 3 when a head stack violates a mandatory policy")
    add_json_argument(d, "the diff")
    d.set_defaults(func=cmd_cost_diff)


# --- prices ---------------------------------------------------------------------------------


def _row_json(row: Any) -> dict[str, Any]:
    return {"usd": money.usd_exact(row.usd), "unit": row.unit, "source": row.source, "date": row.date,
            "confirmed": row.confirmed, **({"basis": row.basis} if row.basis else {})}


def price_rows(book: PriceBook, regions: list[str]) -> dict[str, Any]:
    """The book's rows per region as JSON (money rule: `usd` a decimal string)."""
    out: dict[str, Any] = {}
    for region in regions:
        out[region] = {
            section: {key: _row_json(row) for key, row in sorted(getattr(book, section).get(region, {}).items())}
            for section in ("instances", "general_instances", "services")
        }
        out[region]["unpriced"] = dict(sorted(book.unpriced.get(region, {}).items()))
    return out


def cmd_prices_list(args: argparse.Namespace) -> int:
    book = load_price_book(args.prices)
    regions = args.region or list(book.regions)
    for region in regions:
        if region not in book.regions:
            raise InputError("--region", region, f"regions in the price book: {', '.join(book.regions)}")
    global_rows = {key: _row_json(row) for key, row in book.global_services.items()}
    api_rows = {key: {"provider": r.provider, "model": r.model, "region": r.region or None,
                      "usd_per_million_input_tokens": money.usd_exact(r.usd_per_million_input_tokens),
                      "usd_per_million_output_tokens": money.usd_exact(r.usd_per_million_output_tokens),
                      "source": r.source, "date": r.date, "confirmed": r.confirmed} for key, r in book.api_models.items()}
    reservations = {key: {"discount_pct": money.number(r.discount_pct), "applies_to": r.applies_to, "source": r.source,
                          "date": r.date, "confirmed": r.confirmed} for key, r in book.reservations.items()}
    if emit_json(args.json, {"regions": price_rows(book, regions), "global_services": global_rows,
                             "api_models": api_rows, "reservations": reservations}):
        return EXIT_OK
    for region in regions:
        print(f"== {region}")
        for section in ("instances", "general_instances", "services"):
            rows = getattr(book, section).get(region, {})
            for key, row in sorted(rows.items()):
                flag = "" if row.confirmed else "  [unconfirmed]"
                print(f"  {section:<17} {key:<30} ${row.usd} per {row.unit}  ({row.source}, {row.date}){flag}")
        for key, why in sorted(book.unpriced.get(region, {}).items()):
            print(f"  {'unpriced':<17} {key:<30} {why}")
    print("== global (Route 53: billed per account, whatever the region)")
    for key, row in book.global_services.items():
        flag = "" if row.confirmed else "  [unconfirmed]"
        print(f"  {'global_services':<17} {key:<30} ${row.usd} per {row.unit}  ({row.source}, {row.date}){flag}")
    print("== managed APIs (USD per 1M input / output tokens) and reservations")
    for key, r in book.api_models.items():
        flag = "" if r.confirmed else "  [unconfirmed]"
        print(f"  {'api_models':<17} {key:<30} ${r.usd_per_million_input_tokens} / ${r.usd_per_million_output_tokens}  "
              f"({r.source}, {r.date}){flag}")
    for key, r in book.reservations.items():
        flag = "" if r.confirmed else "  [unconfirmed]"
        print(f"  {'reservations':<17} {key:<30} {r.discount_pct}% off  ({r.source}, {r.date}){flag}")
    return EXIT_OK


def cmd_prices_refresh(args: argparse.Namespace, client: Any = None) -> int:
    """Refresh through `client` (a Price List API client; default: boto3's, from infra.ops.aws)."""
    path = Path(args.prices) if args.prices else PRICES_PATH
    book = load_price_book(path)
    regions = args.region or list(REQUIRED_REGIONS)
    try:
        client = client or aws.pricing_client()
        if getattr(args, "api_models", False):
            result = rf.refresh_api_models(client, book)
        else:
            result = rf.refresh(client, book, regions, services=not args.no_services)
    except UserError:
        raise
    except Exception as exc:  # botocore errors: say what to do, no traceback
        if exc.__class__.__module__.startswith("botocore"):
            raise aws.explain_aws_error(exc) from None
        raise
    if not args.dry_run:
        write_price_document(path, result.book)
    doc = {"path": str(path), "regions": regions, "changes": list(result.changes), "written": not args.dry_run}
    if emit_json(args.json, doc):
        return EXIT_OK
    for line in result.changes:
        print(line)
    if not result.changes:
        print("no changes")
    print(f"dry run: {path} not written" if args.dry_run else f"wrote {path}")
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


def load_side(path: str | Path) -> tuple[dict[str, ResourceGraph], dict[str, PlanFailure]]:
    """The plans (graphs) and the failed plans of a file or directory, keyed by stack."""
    graphs: dict[str, ResourceGraph] = {}
    failures: dict[str, PlanFailure] = {}
    for where, doc in json_documents(path):
        failure = PlanFailure.from_document(doc)
        graph = graph_of(doc, where) if failure is None else None
        stack = str((graph.stack if graph else doc.get("stack")) or Path(where).stem)
        key = diff_key(stack, graph.extras.get("project") if graph else doc.get("project"))
        if key in graphs or key in failures:
            raise InputError("path", where, f"one document per stack; stack {key!r} appears twice")
        if graph is not None:
            graphs[key] = graph
        else:
            failures[key] = failure  # type: ignore[assignment]
    return graphs, failures


def cmd_cost(args: argparse.Namespace) -> int:
    graphs, failures = load_side(args.file)
    for stack, failure in failures.items():
        raise UserError(f"{args.file}: the plan of stack {stack!r} failed (exit {failure.exit_code}): "
                        f"{failure.error}; there is nothing to cost")
    assume = Assumptions.from_mapping(read_mapping(args.cost_config, "--cost-config"), "--cost-config")
    reports = [cost_of_document(graph, assumptions=assume) for graph in graphs.values()]
    single = Path(args.file).is_file()
    if emit_json(args.json, reports[0].to_dict() if single else {"reports": [r.to_dict() for r in reports]}):
        return EXIT_OK
    renderer = {"table": render_report_table, "markdown": render_report_markdown}[args.format]
    sys.stdout.write("\n".join(renderer(r) for r in reports))
    return EXIT_OK


def _pack_config_for(stack: str, option: str | None) -> dict | None:
    """The policy pack config of a stack: --policy-config FILE, DIR/config.<stack>.json (a global
    stack's: DIR/global/config.<env>.json), policies/."""
    if option and Path(option).is_file():
        return read_mapping(option, "--policy-config")
    directory = Path(option) if option else Path("policies")
    if option and not directory.is_dir():
        raise InputError("--policy-config", option, "a policy pack config JSON file or a directory of config.<stack>.json")
    env = stack.removeprefix(f"{GLOBAL_PROJECT}/")
    candidate = directory / (f"config.{stack}.json" if env == stack else f"{GLOBAL_DIRNAME}/config.{env}.json")
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
    has_base = base_path.exists() and (base_path.is_file() or any(base_path.glob("*.json")))
    base, base_failures = load_side(args.base) if has_base else ({}, {})
    head, head_failures = load_side(args.head)
    cost_config = read_mapping(args.cost_config, "--cost-config")
    before: dict[str, CostReport] = {}
    after: dict[str, CostReport] = {}
    budgets: dict[str, Decimal | None] = {}
    verdicts: dict[str, PolicyVerdict | None] = {}
    base_verdicts: dict[str, PolicyVerdict | None] = {}
    for stack in dict.fromkeys([*head, *head_failures, *base, *base_failures]):
        pack = _pack_config_for(stack, args.policy_config)
        assume = Assumptions.from_mapping({**assumptions_from_pack_config(pack), **cost_config}, "cost config")
        if stack in base:
            before[stack] = cost_of_document(base[stack], assumptions=assume)
            base_verdicts[stack] = PolicyVerdict.from_dict(base[stack].policy)  # its own plan's verdict only
        if stack in head:
            after[stack] = cost_of_document(head[stack], assumptions=assume)
            verdicts[stack] = verdict_of(head[stack], pack)
        budgets[stack] = args.budget_usd if args.budget_usd is not None else budget_of(pack, head.get(stack))
    diff = diff_reports(before, after, budgets, verdicts, base_verdicts=base_verdicts,
                        head_failures=head_failures, base_failures=base_failures,
                        tco_before={s: TcoFigures.from_dict(g.extras.get("tco")) for s, g in base.items()},
                        tco_after={s: TcoFigures.from_dict(g.extras.get("tco")) for s, g in head.items()})
    text = render_diff(diff, args.format)
    if args.output:
        atomic_write(args.output, text, field="--output")
    if not emit_json(args.json, diff.to_dict()) and not args.output:
        sys.stdout.write(text)
    mandatory = sum(v.mandatory for v in verdicts.values() if v)
    if args.fail_on_violation and mandatory:
        print(f"error: {mandatory} mandatory policy violation(s) in head", file=sys.stderr)
        return EXIT_POLICY
    return EXIT_OK
