"""`python -m infra docs [--write]`: every generated block and number of the README and docs/.

A generated block sits between `<!-- BEGIN name (generated: python -m infra docs --write) -->`
and `<!-- END name -->`; whole generated files (docs/calibration-report.md, the policy pack
configs policies/config.<stack>.json) have no markers. Without `--write` the command compares
and lists what is stale with a diff (exit 4); tests call the same comparison. Each block is
built from the code that owns the fact (config models, the exit-code table, the policy pack,
the resolved prod plan and its cost, the calibration, the serving model).
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
import typing
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from infra.cli.output import add_json_argument, emit_json
from infra.core.errors import EXIT_OK, EXIT_PREFLIGHT, UserError, exit_code_table
from infra.core.files import atomic_write
from infra.core.paths import REPO_ROOT

MARK = "generated: python -m infra docs --write"
SEED_WORKLOAD = "examples/seed-004.yaml"


def begin(name: str) -> str:
    return f"<!-- BEGIN {name} ({MARK}) -->"


def end(name: str) -> str:
    return f"<!-- END {name} -->"


def usd(amount: Any) -> str:
    return f"${Decimal(str(amount)):,.2f}"


# --- the facts blocks are built from (computed once per run) ----------------------------------


class Facts:
    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir

    @cached_property
    def prod(self) -> Any:
        from infra.core.resolve import resolve

        return resolve("prod", self.project_dir)

    @cached_property
    def prod_check(self) -> tuple[dict[str, Any], Any]:
        """The prod offline plan document and its cost and policy check (what `plan --json` writes)."""
        from infra.program.offline import plan_stack
        from policies import check_plan

        doc = plan_stack("prod", self.project_dir).to_json()
        return doc, check_plan(doc, project_dir=self.project_dir)

    @property
    def prod_document(self) -> dict[str, Any]:
        return self.prod_check[0]

    @property
    def prod_cost(self) -> Any:
        return self.prod_check[1].report

    @cached_property
    def seed_plan(self) -> Any:
        from infra.core.config import load_sizing_spec
        from infra.core.resolve import sized

        return sized(load_sizing_spec(self.project_dir / SEED_WORKLOAD))[0]

    @cached_property
    def serving(self) -> Any:
        from infra.core.weights_layout import weights_bucket_name
        from infra.program.offline import MOCK_ACCOUNT_ID
        from infra.program.serving.spec import ServingSpec

        bucket = weights_bucket_name("prod", MOCK_ACCOUNT_ID, self.prod.region)
        return ServingSpec(plan=self.prod.plan, config=self.prod.config, weights_bucket=bucket)

    @cached_property
    def calibration(self) -> tuple[dict[str, float], str]:
        from infra.core.catalog import load_catalog
        from infra.core.sizing import calibrate
        from infra.core.sizing.perf import load_engines

        engines = dict(load_engines())
        rows, _ = calibrate.read_measurements()
        summary = calibrate.summarise(calibrate.evaluate(rows, engines, load_catalog()))
        return summary, calibrate.report_for(engines)


# --- blocks --------------------------------------------------------------------------------------


def config_keys(f: Facts) -> str:
    from pydantic import BaseModel

    from infra.core.config import StackConfig

    lines = []
    for name, field in StackConfig.model_fields.items():
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        keys = ", ".join(f"`{k}`" for k in sub.model_fields) if sub else "a mapping"
        need = "required" if field.is_required() else "optional"
        lines.append(f"- `llm-fleet:{name}` ({need}): {field.description} Keys: {keys}.")
    lines.append("- `aws:region` (required): must equal `fleet.region`.")
    return "\n".join(lines)


def policy_rules(f: Facts) -> str:
    from policies import MIRRORS, POLICIES

    rows = ["| rule | checks | mirrors |", "|---|---|---|"]
    rows += [f"| `{p.name}` | {p.description} | {MIRRORS[p.name]} |" for p in POLICIES]
    return "\n".join(rows)


def exit_codes(command: str | None) -> Callable[[Facts], str]:
    def build(f: Facts) -> str:
        rows = ["| code | meaning |", "|---|---|"]
        rows += [f"| {code} | {text} |" for code, text in exit_code_table(command).items()]
        return "\n".join(rows)

    return build


def project_resources(f: Facts) -> str:
    """What each Pulumi project of prod holds (the offline plan's counts)."""
    from infra.core.graph import graph_of
    from infra.core.labels import PROJECT

    graph = graph_of(f.prod_document, "plan")
    rows = ["| project | resources | AWS | Kubernetes | components | other |", "|---|---|---|---|---|---|"]
    for name in graph.projects:
        nodes = graph.of_project(name).nodes
        aws = sum(n.type.startswith("aws:") for n in nodes)
        k8s = sum(n.type.startswith("kubernetes:") for n in nodes)
        components = sum(n.type.startswith(f"{PROJECT}:") for n in nodes)
        rows.append(f"| `{name}` | {len(nodes)} | {aws} | {k8s} | {components} | {len(nodes) - aws - k8s - components} |")
    return "\n".join(rows)


def prod_traffic(f: Facts) -> str:
    """prod's waves: the weights each traffic step holds and what each region then serves."""
    from infra.core.rollout.dryrun import traffic_step
    from infra.core.rollout.spec import load_rollout_plan
    from infra.core.rollout.traffic import changes

    plan = load_rollout_plan(f.project_dir / "stacks" / "prod.yaml")
    rows = ["| wave | before its first up | meanwhile | after its bake |", "|---|---|---|---|"]
    for wave in plan.waves:
        step = traffic_step(plan, wave)
        if step is None:
            rows.append(f"| `{wave.name}` | no traffic step | declared weights | - |")
        else:
            rows.append(f"| `{wave.name}` | {changes(step.declared, step.during)} | {step.served} | the weights found "
                        f"before the wave (declared: {changes(step.during, step.declared)}) |")
    return "\n".join(rows)


def routing_refusal(f: Facts) -> str:
    """What refuses prod's records when us-west-2 does not absorb a lost region."""
    from infra.core.config import joined_problems
    from infra.core.rollout.regions import sizing_share_pct
    from infra.core.rollout.spec import load_rollout_plan, parse_rollout_plan
    from infra.core.rollout.traffic import routing_problems

    doc = load_rollout_plan(f.project_dir / "stacks" / "prod.yaml").model_dump(mode="json")
    doc["regions"][0]["absorb_region_failure"] = False
    plan = parse_rollout_plan(doc)
    problems = routing_problems(plan, {r.stack: sizing_share_pct(r, plan.regions) for r in plan.regions})
    return "```\nstacks/prod.yaml: " + joined_problems(problems) + "\n```"


def prod_cost_sentence(f: Facts) -> str:
    report, cfg = f.prod_cost, f.prod.config
    return (f"For `prod`: {usd(report.total_month('expected'))} a month expected, "
            f"{usd(report.total_month('worst'))} worst case, against a {usd(cfg.budget.monthly_usd)} budget.")


def prod_cost_table(f: Facts) -> str:
    from infra.core.cost import render_report_table

    return "```\n" + render_report_table(f.prod_cost).rstrip("\n") + "\n```"


def cost_diff_sample(f: Facts) -> str:
    """The PR comment for a change that doubles prod's GPU node groups."""
    import copy

    from infra.core.cost import cost_of_plan, diff_reports, render_diff_markdown
    from infra.core.graph import NODE_GROUP

    head = copy.deepcopy(f.prod_document)
    head.pop("cost", None)
    head.pop("policy", None)
    for r in head["resources"]:
        sc = r["inputs"].get("scalingConfig") if r["type"] == NODE_GROUP else None
        if sc and r["inputs"].get("instanceTypes") == [f.prod.plan.instance_type]:
            r["inputs"]["scalingConfig"] = {k: v * 2 for k, v in sc.items()}
    before = {"prod": f.prod_cost}
    after = {"prod": cost_of_plan(head)}
    diff = diff_reports(before, after, {"prod": f.prod.config.budget.monthly_usd}, {"prod": None})
    return "```\n" + render_diff_markdown(diff).rstrip("\n") + "\n```"


def seed_table(f: Facts) -> str:
    p = f.seed_plan
    per_million_at_2 = p.cost.usd_per_million_output_tokens * 2 / p.cost.usd_per_gpu_hour
    n = p.nodes_per_az
    serving = n.desired - p.warm_spares_per_az
    slots = p.replicas_baseline * p.vllm.max_num_seqs
    util = p.load["concurrent_requests"] / slots
    pred = p.predicted
    return "\n".join([
        "| | seed 004 (hand) | llm-fleet `size` |",
        "|---|---|---|",
        f"| shape | 3 nodes x 2 H100, TP=2 | {n.desired * p.azs} x {p.instance_type} ({n.desired} per AZ: {serving} serving "
        f"+ {p.warm_spares_per_az} warm spare), TP={p.tensor_parallel}, {p.replicas_baseline} replicas |",
        f"| GPUs | 6 | {p.gpus_baseline} |",
        f"| $/hour at the seed's $2/GPU-hour | $12 | ${p.gpus_baseline * 2} |",
        f"| $/hour at AWS on-demand (${p.cost.usd_per_gpu_hour:.2f}/GPU-hour, {p.instance_type} "
        f"${p.cost.usd_per_node_hour:.2f}) | ${6 * p.cost.usd_per_gpu_hour:,.2f} | ${p.cost.usd_per_hour_baseline:,.2f} |",
        f"| $ per 1M output tokens ({p.load['output_tokens_per_s']:,.0f} tok/s) | $0.67 "
        f"(${6 * p.cost.usd_per_gpu_hour / (p.load['output_tokens_per_s'] * 3600 / 1e6):,.2f} on-demand) | ${per_million_at_2:,.2f} at $2/GPU-h, "
        f"${p.cost.usd_per_million_output_tokens:,.2f} on-demand |",
        f"| predicted p95 with one AZ lost (TTFT / TPOT / e2e) | not checked | {pred.ttft_p95_ms:,.0f} ms / "
        f"{pred.tpot_p95_ms:,.1f} ms / {pred.e2e_p95_ms:,.0f} ms |",
        f"| burst ({p.load['burst_concurrent_requests']:,.0f} concurrent) | \"2 more nodes via autoscale\" | up to "
        f"{n.max} nodes per AZ, {p.replicas_max} replicas |",
        f"| utilisation at sustained load | ~100 % of 6 GPUs | {util * 100:.0f} % of the fleet's running-sequence slots |",
    ])


def calibration_summary(f: Facts) -> str:
    s, _ = f.calibration
    return (f"- throughput: {s['rows_throughput']} rows, median |error| {s['median_abs_error_throughput'] * 100:.1f} %, "
            f"most optimistic row {s['max_optimism_throughput'] * 100:+.1f} %;\n"
            f"- first-token latency: {s['rows_ttft']} rows (2023 TensorRT-LLM), median |error| "
            f"{s['median_abs_error_ttft'] * 100:.0f} %.")


def calibration_report(f: Facts) -> str:
    return f.calibration[1]


def time_to_serve(f: Facts) -> str:
    from infra.program.serving import warm_pool

    paths = warm_pool.time_to_serve(f.serving)
    cost = warm_pool.warm_pool_cost(f.serving)
    labels = [("cold", "cold node", "EC2 launch, boot, RAID0, join, device plugin, S3 hydration, image pull, load"),
              ("warm_node", "warm node (STOPPED pool)", "boot, RAID0, join, hydration, image pull, load"),
              ("warm_reused", "warm node (RUNNING pool, reused)", "join, device plugin, load from NVMe"),
              ("placeholder", "placeholder", "preemption, load from NVMe")]
    rows = ["| path | time to serve | what it pays for |", "|---|---|---|"]
    rows += [f"| {label} | {warm_pool.total_s(paths[key]) / 60:.1f} min | {what} |" for key, label, what in labels]
    plan = f.prod.plan
    rows += ["", f"What it costs per month in prod: the placeholders' {f.serving.placeholders} nodes "
             f"${cost['usd_per_month_placeholders']:,} (inside the plan's baseline); the STOPPED pool's "
             f"{(plan.nodes_per_az.max - plan.nodes_per_az.min) * plan.azs} instances only their EBS, "
             f"${cost['usd_per_month_stopped_pool']:,}."]
    return "\n".join(rows)


def warm_pool_cost(f: Facts) -> str:
    from infra.core.catalog import HOURS_PER_MONTH
    from infra.program.serving import warm_pool

    plan, spec = f.prod.plan, f.serving
    cost = warm_pool.warm_pool_cost(spec)
    pool = (plan.nodes_per_az.max - plan.nodes_per_az.min) * plan.azs
    serving = plan.nodes_per_az.min - plan.warm_spares_per_az
    return "\n".join([
        f"- Placeholders: {spec.placeholders} nodes × ${plan.cost.usd_per_node_hour:.2f} × {HOURS_PER_MONTH} h "
        f"(`HOURS_PER_MONTH`) = **${cost['usd_per_month_placeholders']:,} per month**,",
        f"  already inside the plan's baseline (`nodes_per_az.min` = {serving} serving + "
        f"{plan.warm_spares_per_az} spare per AZ).",
        f"- STOPPED node pool: the burst headroom, {pool} instances ({pool // plan.azs} per AZ), × "
        f"{f.prod.config.gpu_nodes.root_volume_gib} GiB gp3 = **${cost['usd_per_month_stopped_pool']:,} per month**.",
    ])


# docs/program.md's config reference, from the pydantic models.


def _type(ann: Any) -> str:
    import types

    from pydantic import BaseModel

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " \\| ".join(_type(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is tuple:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    names = {Decimal: "number", float: "number", int: "integer", str: "string", bool: "boolean"}
    if ann in names:
        return names[ann]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "mapping"
    return str(ann)


def _constraints(field: Any) -> str:
    import annotated_types as at

    out = []
    for m in field.metadata:
        for cls, attr, sym in ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<=")):
            if isinstance(m, cls):
                out.append(f"{sym} {getattr(m, attr)}")
        if isinstance(m, at.MinLen):
            unit = "character" if field.annotation is str else "item"
            out.append(f"at least {m.min_length} {unit}{'s' if m.min_length != 1 else ''}")
        if isinstance(m, at.MaxLen):
            out.append(f"at most {m.max_length} characters")
        if getattr(m, "pattern", None):
            out.append("format checked")
    return ", ".join(out)


def _default(field: Any) -> str:
    from pydantic import BaseModel

    if field.is_required():
        return "**required**"
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if extra.get("default_doc"):  # a default computed on the day (not a constant to print)
        return str(extra["default_doc"])
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(all defaults)"
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def config_reference(f: Facts) -> str:
    from pydantic import BaseModel

    from infra.core.config import STACK_SECTIONS, StackConfig

    lines = []
    for section in STACK_SECTIONS:
        field = StackConfig.model_fields[section]
        ann = field.annotation
        req = "required" if field.is_required() else "optional"
        lines += [f"### `llm-fleet:{section}` ({req})", "", field.description or "", ""]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            doc = (ann.__doc__ or "").strip().splitlines()
            if doc and doc[0] != (field.description or ""):
                lines += [" ".join(line.strip() for line in doc), ""]
            lines += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
            for name, sub in ann.model_fields.items():
                lines.append(f"| `{name}` | {_type(sub.annotation)} | {_default(sub)} | {_constraints(sub)} "
                             f"| {sub.description or ''} |")
            lines.append("")
        else:
            lines += [f"Type: {_type(ann)}.", ""]
    lines += ["### `aws:region` (required)", "",
              "The AWS provider's region. `llm-fleet:fleet.region` defaults to it and, when set, must equal it."]
    return "\n".join(lines)


# --- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    path: str  # repository-relative
    block: str | None  # marker name; None: the whole file
    build: Callable[[Facts], str]


BLOCKS = (
    Generated("README.md", "config-keys", config_keys),
    Generated("README.md", "policy-rules", policy_rules),
    Generated("README.md", "exit-codes", exit_codes(None)),
    Generated("README.md", "prod-cost", prod_cost_sentence),
    Generated("README.md", "time-to-serve", time_to_serve),
    Generated("README.md", "seed-table", seed_table),
    Generated("README.md", "calibration", calibration_summary),
    Generated("docs/program.md", "project-resources", project_resources),
    Generated("docs/program.md", "config-reference", config_reference),
    Generated("docs/weights.md", "exit-codes", exit_codes("weights")),
    Generated("docs/rollout.md", "exit-codes", exit_codes("rollout")),
    Generated("docs/rollout.md", "routing-refusal", routing_refusal),
    Generated("docs/rollout.md", "prod-traffic", prod_traffic),
    Generated("docs/cost-and-policy.md", "prod-cost", prod_cost_table),
    Generated("docs/cost-and-policy.md", "cost-diff-sample", cost_diff_sample),
    Generated("docs/serving.md", "warm-pool-cost", warm_pool_cost),
    Generated("docs/calibration-report.md", None, calibration_report),
)


def outputs(project_dir: Path) -> list[Generated]:
    """Every generated block and file, the policy pack config of every stack (and global stack) included."""
    from infra.core.config import load_stack_config
    from infra.core.global_stack import environments, resolve_global
    from policies import config_path, global_config_path, global_pack_config, stack_pack_config
    from policies.config import render_pack_config

    out = list(BLOCKS)
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        stack = path.name[len("Pulumi."):-len(".yaml")]
        rel = str(config_path(stack, project_dir).relative_to(project_dir))
        out.append(Generated(rel, None, lambda f, s=stack: render_pack_config(
            stack_pack_config(load_stack_config(s, f.project_dir)))))
    for env in environments(project_dir):  # the global stacks' pack configs
        rel = str(global_config_path(env, project_dir).relative_to(project_dir))
        out.append(Generated(rel, None, lambda f, e=env: render_pack_config(
            global_pack_config(resolve_global(e, f.project_dir)))))
    return out


def render(current: str, gen: Generated, text: str, path: str) -> str:
    """`current` with the block replaced by `text` (or `text` itself for a whole file)."""
    if gen.block is None:
        return text
    b, e = begin(gen.block), end(gen.block)
    if current.count(b) != 1 or current.count(e) != 1:
        raise UserError(f"{path}: the markers of block {gen.block!r} must appear exactly once ({b} ... {e})")
    head, rest = current.split(b, 1)
    _, tail = rest.split(e, 1)
    return f"{head}{b}\n{text.rstrip()}\n{e}{tail}"


def regenerate(project_dir: Path = REPO_ROOT) -> dict[str, tuple[str, str]]:
    """path -> (text now, text generated) for every generated file."""
    facts = Facts(project_dir)
    files: dict[str, tuple[str, str]] = {}
    for gen in outputs(project_dir):
        path = project_dir / gen.path
        old, new = files.get(gen.path, (path.read_text() if path.exists() else "",) * 2)
        files[gen.path] = (old, render(new, gen, gen.build(facts), gen.path))
    return files


def stale(project_dir: Path = REPO_ROOT) -> dict[str, str]:
    """path -> unified diff, for every generated file that is not what the code says."""
    out = {}
    for path, (old, new) in regenerate(project_dir).items():
        if old != new:
            out[path] = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                     f"{path} (now)", f"{path} (generated)"))
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "docs", help="check (or --write) every generated README/docs block, report and policy config",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--write", action="store_true", help="rewrite what is stale (atomically)")
    add_json_argument(p, "{written, stale: {path: diff}} of what is (or was) stale")
    p.add_argument("--project-dir", default=None, help="repository root (default: this repository)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    files = regenerate(project_dir)
    diffs = stale(project_dir) if not args.write else {}
    if args.write:
        for path, (old, new) in files.items():
            if old != new:
                diffs[path] = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path, path))
                (project_dir / path).parent.mkdir(parents=True, exist_ok=True)  # policies/global/ the first time
                atomic_write(project_dir / path, new)
    if not emit_json(args.json, {"written": args.write, "stale": diffs}):
        for path, diff in diffs.items():
            print(f"{'wrote' if args.write else 'stale'}: {path}")
            if not args.write:
                sys.stdout.write(diff)
        if not diffs:
            print(f"docs: all {len(files)} generated files are current")
    return EXIT_OK if args.write or not diffs else EXIT_PREFLIGHT


__all__ = ["BLOCKS", "Generated", "outputs", "regenerate", "stale"]
