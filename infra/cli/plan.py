"""`python -m infra plan [--stack prod] [--project base|workloads|all|global] [--json [FILE]]`: the offline plan.

Runs both Pulumi programs of the stack under mocks (infra/program/offline) with its config: the
AWS base (root Pulumi.yaml, project `llm-fleet`), then the in-cluster workloads
(workloads/Pulumi.yaml, project `llm-fleet-workloads`) against the base's outputs. Prints the
sizing summary, the resources of each project by type and AZ, the cost (baseline, expected,
worst) and the verdict of every rule of the policy pack (policies/, the same functions `pulumi
preview --policy-pack policies` runs): one combined gate over both projects, and what each
project's own preview would report, and the short self-host vs API block (`tco`). `--json FILE`
writes `{"stack", "region", "plan", "resources", "projects", "cost", "policy", "tco"}` (every URN
names its project; atomically, also when a
policy fails: the PR workflow diffs it; bare `--json` or `-` for stdout, which then carries only
the JSON). When the plan fails (bad config, a missing or stale policy config, infeasible SLOs),
`--json` gets `{"stack", "exit_code", "error"}` instead, so a reader never mistakes a failed plan
for a missing stack. `--project base|workloads` plans one project as its own preview sees it (its
resources, cost and verdict; no fleet plan in the document). `--project global` plans the global
stack named `--stack` (an environment, stacks/<env>.yaml with a `global:` section): every region
stack's offline plan first, then global/Pulumi.yaml's program with its StackReferences answered from
them; its own document (`{"stack", "project", "regions", "resources", "cost", "policy", ...}`) checked
with policies/global/config.<env>.json. Copied-looking values (a
`tags.environment` of another stack) are warned about on stderr. Exit codes: 0 ok; 2 bad config
or infeasible sizing; 3 a mandatory policy is violated (e.g. gpu-spend-cap: worst case above the
budget).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, TextIO

from infra.cli.argtypes import command_parser
from infra.cli.output import STDOUT, add_json_argument, emit_json, warn
from infra.cli.tco import tco_of_resolved, vs_api_text
from infra.core.cost.diff import failure_document
from infra.core.deploy import OUT_GATEWAY_DNS_NAME, OUT_HEALTH_PATH
from infra.core.errors import InputError, UserError
from infra.core.graph import short_type
from infra.core.labels import GLOBAL_PROJECT, PROJECT, WORKLOADS_PROJECT
from infra.core.paths import REPO_ROOT
from infra.core.tables import table

REGIONAL = "regional"
PROJECT_CHOICES = {"base": PROJECT, "workloads": WORKLOADS_PROJECT, "all": None, "global": GLOBAL_PROJECT}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "plan", __doc__, help="offline plan: run the Pulumi program under mocks and show what it would create")
    p.add_argument("--stack", default="prod",
                   help="stack name: reads Pulumi.<stack>.yaml; with --project global an environment, "
                        "stacks/<stack>.yaml (default: prod)")
    p.add_argument("--project", choices=sorted(PROJECT_CHOICES), default="all",
                   help="a region stack's two projects with one combined gate (all, the default), one of them as "
                        "its own preview sees it, or the environment's global stack (global)")
    add_json_argument(p, "the plan (or, when it fails, {stack, exit_code, error})")
    p.add_argument(
        "--project-dir",
        metavar="DIR",
        default=None,
        help="directory holding Pulumi.yaml and Pulumi.<stack>.yaml (default: the repository root)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json not in (None, STDOUT):
        check_json_target(Path(args.json))
    try:
        return _run(args)
    except UserError as exc:
        if args.json is not None:  # one JSON object on failure too: the PR workflow reads it
            project = GLOBAL_PROJECT if args.project == "global" else None
            emit_json(args.json, failure_document(args.stack, exc.exit_code, str(exc), project))
        raise


def _run(args: argparse.Namespace) -> int:
    from infra.core.resolve import resolve
    from infra.program.offline import plan_stack

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    if not (project_dir / "Pulumi.yaml").is_file():
        raise InputError("--project-dir", str(project_dir), "a directory with a Pulumi.yaml")
    from policies import check_plan, config_for_stack  # the pack's rules, run offline over the mocked graph

    if args.project == "global":
        return _run_global(args, project_dir)
    resolved = resolve(args.stack, project_dir)  # config errors and infeasible SLOs first (memoised)
    pack_config = config_for_stack(args.stack, project_dir)  # a missing or stale one: before the program runs
    warn(resolved.warnings)
    result = plan_stack(args.stack, project_dir)
    project = PROJECT_CHOICES[args.project]
    doc = result.to_json(project)
    check = check_plan(doc, pack_config, project_dir=project_dir)
    doc.update(check.sections())
    for name, sections in check.project_sections().items():
        doc["projects"][name].update(sections)
    tco = tco_of_resolved(resolved, check.report) if project is None else None  # the fleet plan is the stack's
    if tco is not None:
        doc["tco"] = tco.to_dict()  # what cost-diff compares ($/1M tokens, break-even)
    if emit_json(args.json, doc):
        return check.exit_code
    render_text(result, sys.stdout, project)
    sys.stdout.write("\n" + check.render().rstrip("\n") + "\n")
    if tco is not None:
        sys.stdout.write("\n" + vs_api_text(tco))
    if args.json is not None:
        print(f"\nwrote {args.json}")
    return check.exit_code


def _run_global(args: argparse.Namespace, project_dir: Path) -> int:
    from infra.core.global_stack import resolve_global
    from infra.program.offline import plan_global
    from policies import check_plan, config_for_global

    warn(resolve_global(args.stack, project_dir).warnings)  # no such environment, names, sizing vs routing: exit 2
    pack_config = config_for_global(args.stack, project_dir)
    result = plan_global(args.stack, project_dir)
    doc = result.to_json()
    check = check_plan(doc, pack_config, project_dir=project_dir)
    doc.update(check.sections())
    doc["projects"][GLOBAL_PROJECT].update(check.summary())  # one project: its own verdict is the gate
    if emit_json(args.json, doc):
        return check.exit_code
    render_global_text(result, sys.stdout)
    sys.stdout.write("\n" + check.render().rstrip("\n") + "\n")
    if args.json is not None:
        print(f"\nwrote {args.json}")
    return check.exit_code


def check_json_target(path: Path) -> None:
    """Refuse a --json FILE whose directory does not exist before the plan runs (seconds of work)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError("--json", str(path), "a file in an existing directory")


def _fmt_usd(x: float) -> str:
    return f"${x:,.2f}"


def sizing_lines(plan: Any) -> list[str]:
    n = plan.nodes_per_az
    p = plan.predicted
    return [
        f"  instance type     {plan.instance_type} ({plan.gpus_per_node}x {plan.gpu}), {plan.precision}, "
        f"TP={plan.tensor_parallel}",
        f"  replicas          {plan.replicas_baseline} at baseline ({plan.replicas_per_az}/AZ x {plan.azs} AZs, "
        f"{plan.replicas_per_node}/node), {plan.replicas_max} at burst",
        f"  GPU nodes per AZ  min {n.min} / desired {n.desired} / max {n.max} "
        f"(incl. {plan.warm_spares_per_az} warm spare{'s' if plan.warm_spares_per_az != 1 else ''})",
        f"  predicted p95     TTFT {p.ttft_p95_ms:.1f} ms, TPOT {p.tpot_p95_ms:.2f} ms, e2e {p.e2e_p95_ms:.0f} ms"
        + (" (one AZ lost)" if plan.survive_az_loss else ""),
        f"  GPU cost          {_fmt_usd(plan.cost.usd_per_hour_baseline)}/h baseline, "
        f"{_fmt_usd(plan.cost.usd_per_hour_max)}/h at burst ({_fmt_usd(plan.cost.usd_per_node_hour)}/node-h)",
    ]


def resource_table(result: Any) -> list[str]:
    """Counts of resources by type (rows) and AZ (columns); components marked with *."""
    counts: dict[str, Counter] = defaultdict(Counter)
    azs: set[str] = set()
    for r in result.resources:
        az = result.az_of(r) or REGIONAL
        if az != REGIONAL:
            azs.add(az)
        counts[short_type(r.type)][az] += 1
    columns = [REGIONAL, *sorted(azs)]
    width = max(len(t) for t in counts) + 2 if counts else 10
    header = "  " + "TYPE".ljust(width) + "".join(c.rjust(12) for c in columns) + "TOTAL".rjust(8)
    lines = [header]
    components = sorted(t for t in counts if t.startswith("llm-fleet:"))
    custom = sorted(t for t in counts if not t.startswith("llm-fleet:"))
    for typ in components + custom:
        row = counts[typ]
        cells = "".join((str(row[c]) if row[c] else "-").rjust(12) for c in columns)
        lines.append("  " + typ.ljust(width) + cells + str(sum(row.values())).rjust(8))
    total = Counter()
    for row in counts.values():
        total.update(row)
    lines.append("  " + "TOTAL".ljust(width) + "".join(str(total[c]).rjust(12) for c in columns)
                 + str(sum(total.values())).rjust(8))
    return lines


PROJECT_ROLES = {PROJECT: "the AWS base, root Pulumi.yaml", WORKLOADS_PROJECT: "in-cluster, workloads/Pulumi.yaml",
                 GLOBAL_PROJECT: "Route 53, global/Pulumi.yaml"}


def _counts(resources: Any) -> str:
    return (f"{len(resources)} ({sum(1 for r in resources if r.custom)} custom, "
            f"{sum(1 for r in resources if not r.custom)} components)")


def _outputs(run: Any, out: TextIO) -> None:
    for key, value in run.outputs.items():
        if key in run.secret_outputs:
            shown = "[secret]"
        elif isinstance(value, (dict, list)):
            shown = json.dumps(value, sort_keys=True)
            if len(shown) > 100:
                shown = shown[:97] + "..."
        else:
            shown = str(value)
        out.write(f"  {key:<26}{shown}\n")


def render_text(result: Any, out: TextIO, project: str | None = None) -> None:
    """Sizing, then per project (all, or `project`): its resource table and its outputs."""
    plan = result.plan
    out.write(f"llm-fleet plan: stack {result.stack} in {result.region} (offline, Pulumi mocks)\n\n")
    out.write(f"Sizing: {plan.model} for {int(plan.load['concurrent_requests'])} concurrent requests "
              f"({plan.load['burst_concurrent_requests']:g} at burst)\n")
    out.write("\n".join(sizing_lines(plan)) + "\n")
    for note in getattr(plan, "notes", ()) or ():
        out.write(f"  note: {note}\n")
    shown = {name: run for name, run in result.projects.items() if project in (None, name)}
    if project is None:
        out.write(f"\nResources: {_counts(result.resources)} in {len(shown)} Pulumi projects\n")
    for name, run in shown.items():
        _project_text(name, run, out)
    for line in result.diagnostics:
        out.write(f"{line}\n")


def _project_text(name: str, run: Any, out: TextIO) -> None:
    out.write(f"\nProject {name} ({PROJECT_ROLES.get(name, 'project')}): {_counts(run.resources)}\n")
    out.write("\n".join(resource_table(run)) + "\n")
    out.write("Outputs:\n")
    _outputs(run, out)


def render_global_text(result: Any, out: TextIO) -> None:
    """The endpoint, one row per region (share, sizing, weight, what it serves, its NLB), then the
    global project's resources and outputs."""
    g = result.resolved
    e = g.endpoint
    out.write(f"llm-fleet plan: global stack {g.environment} (project {GLOBAL_PROJECT}; offline, Pulumi mocks)\n\n")
    outputs = {s: run.project(WORKLOADS_PROJECT).outputs for s, run in result.regions.items()}
    paths = ", ".join(sorted({str(o.get(OUT_HEALTH_PATH)) for o in outputs.values()}))
    out.write(f"Endpoint: {g.hostname} in zone {e.zone_name}, {e.routing} routing; health checks HTTPS {paths} every "
              f"{e.health_check.request_interval_s} s, a region out after {e.health_check.failure_threshold} failures\n")
    served = g.routed_pct()
    rows = [(r.stack, r.region, f"{r.share.traffic_share_pct.normalize():f}%", f"{r.sized_pct.normalize():f}%",
             r.weight, f"{served[r.stack].normalize():f}%" if r.stack in served else "out of DNS",
             outputs[r.stack].get(OUT_GATEWAY_DNS_NAME, "?")) for r in g.regions]
    text = table(("STACK", "REGION", "SHARE", "SIZED FOR", "WEIGHT", "SERVES", "GATEWAY NLB"), rows, right=(2, 3, 4, 5))
    out.write("".join(f"  {line}\n" for line in text.splitlines()))
    _project_text(GLOBAL_PROJECT, result, out)
    for line in result.diagnostics:
        out.write(f"{line}\n")
