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

from infra.cli.argtypes import command_parser
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
    def calibration(self) -> tuple[dict[str, float], str, list]:
        from infra.core.catalog import load_catalog
        from infra.core.sizing import calibrate
        from infra.core.sizing.perf import load_engines

        engines = dict(load_engines())
        rows, _ = calibrate.read_measurements()
        summary = calibrate.summarise(calibrate.evaluate(rows, engines, load_catalog()))
        loaded = calibrate.simulate_load(engines)
        return summary, calibrate.report_for(engines, loaded=loaded), calibrate.summarise_load(loaded[0])

    @cached_property
    def prod_tco(self) -> Any:
        """prod's TCO at its own tco config, judged on the date of its newest API price (so no
        generated text depends on the day `docs --write` runs; `tco` flags stale rows)."""
        from datetime import date

        from infra.cli.tco import tco_of_resolved
        from infra.core.catalog.prices import load_price_book

        newest = max(date.fromisoformat(r.date) for r in load_price_book().api_models.values())
        return tco_of_resolved(self.prod, self.prod_cost, today=newest)

    @cached_property
    def environment_tco(self) -> list:
        """The TCO of every region stack of prod's environment (stacks/prod.yaml), judged as prod_tco is."""
        from infra.cli.tco import tco_of_resolved
        from infra.core.resolve import resolve
        from infra.program.offline import plan_stack
        from policies import check_plan

        out = []
        for region in self.prod.environment.regions if self.prod.environment else ():
            if region.stack == "prod":
                out.append(self.prod_tco)
                continue
            resolved = resolve(region.stack, self.project_dir)
            report = check_plan(plan_stack(region.stack, self.project_dir).to_json(), project_dir=self.project_dir).report
            out.append(tco_of_resolved(resolved, report, today=self.prod_tco.today))
        return out

    @cached_property
    def prod_scenarios(self) -> list:
        """The prod plan's verification scenarios, rerun for their timelines (as `simulate --stack prod`)."""
        from infra.core.sizing.simulate.scenarios import SCENARIOS, run_scenario
        from infra.core.sizing.simulate.workload import Lengths

        plan, w = self.prod.plan, self.prod.spec.workload
        return [run_scenario(plan, w, name, lengths=Lengths(w.input_tokens, w.output_tokens),
                             rate_per_s=plan.load["arrival_rate_per_s"],
                             warm_pool_state=self.prod.config.gpu_nodes.warm_pool_state) for name in SCENARIOS]


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
    diff = diff_reports(before, after, {"prod": f.prod.config.budget.monthly_usd}, {"prod": None},
                        tco_before={"prod": _tco_figures(f, f.prod_cost)}, tco_after={"prod": _tco_figures(f, after["prod"])})
    return "```\n" + render_diff_markdown(diff).rstrip("\n") + "\n```"


def _tco_figures(f: Facts, report: Any) -> Any:
    """What `plan --json` writes under `tco` for prod's plan priced by `report` (judged as prod_tco is)."""
    from infra.cli.tco import tco_of_resolved
    from infra.core.cost.diff import TcoFigures

    return TcoFigures.from_dict(tco_of_resolved(f.prod, report, today=f.prod_tco.today).to_dict())


def _p95s(v) -> str:
    def ms(x: float | None, digits: int = 0) -> str:
        return "miss" if x is None else f"{x:,.{digits}f}"

    return f"{ms(v.ttft_p95_ms)} ms / {ms(v.tpot_p95_ms, 1)} ms / {ms(v.e2e_p95_ms)} ms"


def seed_table(f: Facts) -> str:
    p = f.seed_plan
    per_million_at_2 = p.cost.usd_per_million_output_tokens * 2 / p.cost.usd_per_gpu_hour
    n, c = p.nodes_per_az, p.control
    serving = n.desired - p.warm_spares_per_az
    pred = p.predicted
    by = {v.name: v for v in p.verification}
    rows = [
        "| | seed 004 (hand) | llm-fleet `size` (verified in the fleet simulator) |",
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
        f"| load simulated | 5,000 tok/s | {p.load['arrival_rate_per_s']:,.1f} requests/s "
        f"({p.load['arrival_rate_per_s'] * p.load['output_tokens']:,.0f} tok/s: 200 in flight at the simulated latency) |",
    ]
    for name, label in (("sustained", "sustained"), ("az-loss", "one AZ lost"), ("burst", f"{p.load['burst_concurrent_requests'] / p.load['concurrent_requests']:g}x burst")):
        v = by.get(name)
        if v is not None:
            rows.append(f"| simulated p95 {label} (TTFT / TPOT / e2e), joint attainment | not checked | {_p95s(v)}, "
                        f"{v.attainment_pct:.2f} % of {v.requests:,} requests ({'pass' if v.passed else 'FAIL'}) |")
    rows += [
        f"| closed form p95 with one AZ lost (the pre-filter) | not checked | {pred.ttft_p95_ms:,.0f} ms / "
        f"{pred.tpot_p95_ms:,.1f} ms / {pred.e2e_p95_ms:,.0f} ms |",
        f"| knee per replica (simulated) | 32 concurrent assumed | {c.knee_rate_per_replica:,.2f} req/s, "
        f"{c.knee_concurrency_per_replica:,.0f} in flight; max-num-seqs {c.max_num_seqs} |",
        f"| autoscaling | \"2 more nodes via autoscale\" | {c.min_replicas}-{c.max_replicas} replicas, KEDA on running + "
        f"waiting > {c.scale_threshold_per_replica} per replica, admission {c.admission_limit_per_replica} per replica |",
    ]
    return "\n".join(rows)


def prod_budget_verdict(f: Facts) -> str:
    """Whether the verified prod plan fits prod's budget (the README says so either way)."""
    report, cfg, plan = f.prod_cost, f.prod.config, f.prod.plan
    worst, budget = report.total_month("worst"), cfg.budget.monthly_usd
    fits = worst <= budget
    return (f"The verified `prod` plan ({plan.nodes_per_az.desired * plan.azs} x {plan.instance_type} at baseline, up to "
            f"{plan.nodes_per_az.max * plan.azs} at the burst) costs {usd(report.total_month('expected'))} a month expected "
            f"and {usd(worst)} in the worst case: it {'fits' if fits else 'does **not** fit'} the "
            f"{usd(budget)} budget{'' if fits else ' (`python -m infra plan --stack prod` exits 3 on gpu-spend-cap)'}.")


def prod_scenarios_table(f: Facts) -> str:
    """The prod plan in each scenario (what `simulate --stack prod` prints)."""
    rows = ["| scenario | verdict | requests | shed or lost | joint attainment | p95 TTFT / TPOT / e2e | replicas |",
            "|---|---|---|---|---|---|---|"]
    for run in f.prod_scenarios:
        v = run.result
        rows.append(f"| {v.name} | {'pass' if v.passed else 'FAIL'} | {v.requests:,} | {v.rejected:,} | "
                    f"{v.attainment_pct:.2f} % | {_p95s(v)} | {v.replicas_min}-{v.replicas_max} |")
    return "\n".join(rows)


def prod_control(f: Facts) -> str:
    c = f.prod.plan.control
    lines = [f"- {line}" for line in c.derivation]
    h = c.hpa
    lines.append(f"- HPA: scale up at once (stabilization {h.scale_up_stabilization_s} s) by {h.scale_up_pods} pod(s) or "
                 f"{h.scale_up_percent} % per {h.scale_up_period_s} s, whichever is more; scale down after "
                 f"{h.scale_down_stabilization_s} s, {h.scale_down_pods} pod per {h.scale_down_period_s} s; KEDA polls every "
                 f"{c.polling_interval_s} s; min {c.min_replicas}, max {c.max_replicas} replicas.")
    lines.append(f"- Query: `{c.scale_query}`")
    return "\n".join(lines)


def keda_serving(f: Facts) -> str:
    """docs/serving.md's autoscaling bullet, from the rendered ScaledObject."""
    from infra.program.serving import autoscaling

    so = autoscaling.scaled_object(f.serving)["spec"]
    (trigger,) = so["triggers"]
    beh = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    up, down = beh["scaleUp"], beh["scaleDown"]
    pods = next(p for p in up["policies"] if p["type"] == "Pods")
    return (f"- **KEDA** ScaledObject on `{f.serving.deployment_name}`, rendered from the plan's control block (what the "
            f"fleet simulator ran): Prometheus trigger `{trigger['metadata']['query']}` (running + waiting), AverageValue "
            f"target {trigger['metadata']['threshold']} per replica, min {so['minReplicaCount']} (baseline), max "
            f"{so['maxReplicaCount']} (burst), polling {so['pollingInterval']} s, initial cooldown "
            f"{so['initialCooldownPeriod']} s (one engine load). Scale-up: no stabilization, +{pods['value']} pods or "
            f"+100 % per {pods['periodSeconds']} s, whichever is more. Scale-down: {down['stabilizationWindowSeconds']} s "
            f"stabilization, one pod per {down['policies'][0]['periodSeconds'] // 60} minutes. Fallback after "
            f"{so['fallback']['failureThreshold']} failed reads: `currentReplicasIfHigher` with {so['fallback']['replicas']} "
            "replicas, so missing metrics never shrink the fleet; a query with no series counts as a failure "
            "(`ignoreNullValues: false`).")


def serving_figures(f: Facts) -> str:
    """docs/serving.md's prod figures: engine flags, startup and drain, admission, Retry-After."""
    from infra.program.serving import ingress, vllm

    spec = f.serving
    c, d = spec.plan.control, spec.defaults
    (model,) = vllm.vllm_stack_values(spec)["servingEngineSpec"]["modelSpec"]
    startup = vllm.probes(spec)["startupProbe"]
    cb = ingress.backend_traffic_policy(spec)["spec"]["circuitBreaker"]
    ing = spec.config.ingress
    return "\n".join([
        f"- Engine flags beyond the chart's: `{' '.join(model['vllmConfig']['extraArgs'])}`.",
        f"- Startup: the {spec.plan.precision.upper()} plan loads a {spec.checkpoint_gib:.1f} GiB checkpoint from NVMe "
        f"(weights in HBM: {spec.weights_gib:.1f} GiB), expected {spec.expected_load_s:.0f} s; the startup probe allows "
        f"{startup['failureThreshold']} x {startup['periodSeconds']} s.",
        f"- Drain: preStop {d.endpoint_propagation_s} s, then `--shutdown-timeout` {vllm.drain_timeout_s(spec)} s (the "
        f"simulated e2e p99, {spec.e2e_p99_s * 1e3:,.0f} ms); grace period {vllm.termination_grace_s(spec)} s.",
        f"- Admission: {c.gateway_proxies} Envoy replicas x {cb['perEndpoint']['maxConnections']} connections per "
        f"engine = {c.admission_limit_per_replica} requests in flight per engine (max-num-seqs {c.max_num_seqs}); "
        f"pending queue {cb['maxPendingRequests']} per Envoy; cluster budgets {cb['maxConnections']} per Envoy.",
        f"- `Retry-After`: {ingress.retry_after_overloaded_s(spec)} s on a 503 (the e2e p95 target), "
        f"{ingress.retry_after_rate_limited_s(spec)} s on a 429 (one rate-limit window); per-tenant limit "
        f"{ing.rate_limit_requests_per_minute}/min, the benchmark tenant {ing.bench_rate_limit_requests_per_minute}/min.",
    ])


def issue_table(f: Facts) -> str:
    """The closed form against the replica simulator on the cases that showed the closed form optimistic."""
    from infra.core.catalog import load_catalog
    from infra.core.sizing.load import steady_state
    from infra.core.sizing.perf import ReplicaModel, engine_params
    from infra.core.sizing.simulate.replica import run_open
    from infra.core.sizing.simulate.workload import Lengths, fixed_count

    import numpy as np

    cat, e = load_catalog(), engine_params("vllm")
    cases = [
        ("long prompts: 70B FP8 TP=2 H100, 8,000 in / 500 out, budget 2,048", "llama-3.3-70b", 2, "fp8", "fp8",
         8000, 500, 2048, 128, 0.78),
        ("seed brief: 70B FP8 TP=8 H100, 500 / 200, max-num-seqs 128", "llama-3.3-70b", 8, "fp8", "fp8",
         500, 200, 8192, 128, 24.0),
        ("8B BF16 TP=1 H100, 500 / 200", "llama-3.1-8b", 1, "bf16", "auto", 500, 200, 8192, 256, 60.0),
    ]
    rows = ["| case | rate per replica | closed form p95 TTFT / TPOT / e2e | simulated p95 TTFT / TPOT / e2e |",
            "|---|---|---|---|"]
    for label, model, tp, prec, kv, i, o, mbt, mns, rate in cases:
        rm = ReplicaModel(cat.model(model), cat.gpu("H100-SXM-80GB"), tp, prec, kv, e, max_num_seqs=mns,
                          max_num_batched_tokens=mbt)
        cf = steady_state(rm, i, o, arrival_rate_per_s=rate, request_overhead_ms=e.request_overhead_ms)
        r = run_open(rm, fixed_count(np.random.default_rng(0), Lengths(i, o), rate, 1500)).to_dict()
        sim = " / ".join(f"{r[k]['p95']:,.0f} ms" for k in ("ttft_ms", "tpot_ms", "e2e_ms"))
        closed = (f"{cf.ttft_ms_p95:,.0f} ms / {cf.tpot_ms_p95:,.0f} ms / {cf.e2e_ms_p95:,.0f} ms"
                  if not cf.saturated else "saturated")
        rows.append(f"| {label} | {rate:g} req/s | {closed} | {sim} |")
    return "\n".join(rows)


def calibration_summary(f: Facts) -> str:
    s, _, under_load = f.calibration
    lines = [f"- throughput: {s['rows_throughput']} rows, median |error| {s['median_abs_error_throughput'] * 100:.1f} %, "
             f"most optimistic row {s['max_optimism_throughput'] * 100:+.1f} %;",
             f"- first-token latency: {s['rows_ttft']} rows (2023 TensorRT-LLM), median |error| "
             f"{s['median_abs_error_ttft'] * 100:.0f} %;"]
    for x in under_load:
        lines.append(f"- under load, {x.engine} (the replica simulator): {x.rows} rows, {x.within_20_pct * 100:.0f} % of their "
                     f"TTFT/TPOT p50/p95 figures within 20 %, median |error| {x.median_abs_error * 100:.1f} %, most "
                     f"optimistic {x.most_optimistic * 100:+.1f} % (target: never below -25 %);")
    lines[-1] = lines[-1].rstrip(";") + "."
    return "\n".join(lines)


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


def time_to_serve_steps(f: Facts) -> str:
    """docs/serving.md: each path's steps in seconds, for prod's checkpoint, and each total."""
    from infra.core.sizing import time_to_serve as tts
    from infra.program.serving import warm_pool

    paths = warm_pool.time_to_serve(f.serving)
    steps = list(dict.fromkeys(step for path in tts.PATHS for step in paths[path]))
    gib = f.serving.checkpoint_gib
    where = {"S3 hydration of the weights": f" ({gib:.1f} GiB at {tts.ASSUMPTIONS.s3_hydration_gib_per_s:g} GiB/s)",
             tts.LOAD_STEP: f" ({gib:.1f} GiB at {tts.ASSUMPTIONS.nvme_load_gib_per_s:g} GiB/s + "
                            f"{tts.ASSUMPTIONS.engine_init_s} s init)"}
    rows = ["| step (s) | " + " | ".join(f"`{p}`" for p in tts.PATHS) + " |", "|---|" + "---:|" * len(tts.PATHS)]
    for step in steps:
        cells = [f"{paths[p][step]:.0f}" if step in paths[p] else "–" for p in tts.PATHS]
        rows.append(f"| {step}{where.get(step, '')} | " + " | ".join(cells) + " |")
    rows.append("")
    rows += [f"- `{p}`: {warm_pool.total_s(paths[p]):.0f} s = {warm_pool.total_s(paths[p]) / 60:.1f} min"
             for p in tts.PATHS]
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


# --- self-host or API (issue 16): README's seed comparison and docs/tco.md -----------------------

SEED_HAIKU = "bedrock-claude-3-haiku"  # seed 004's "bedrock haiku at $0.25 in / $1.25 out"


def _x(ratio: Any) -> str:
    return f"{ratio:,.1f}x"


def tco_answer(f: Facts) -> str:
    """Our answer to seed 004's "self-hosted Llama 70B is ~2x cost of Haiku"."""
    from infra.core.cost.tco import tokens_text

    t, plan = f.prod_tco, f.prod.plan
    c, fl = t.costs, t.fleet
    haiku = next(a for a in t.apis if a.price.key == SEED_HAIKU)
    demand, capacity = t.usd_per_million_tokens("demand"), t.usd_per_million_tokens("capacity")
    return (
        f"For `prod` ({plan.nodes_per_az.desired * plan.azs} x {plan.instance_type} at ${t.usd_per_node_hour:,.2f}/node-hour, "
        f"{t.day.node_hours} node-hours a day) the total cost of ownership is **{usd(c.total)} a month**: GPU nodes "
        f"{usd(c.gpu)}, fixed infrastructure {usd(c.fixed)}, {t.config.oncall_fte:g} on-call FTE {usd(c.staffing)}. "
        f"At the demand it serves ({fl.demand_output_tokens_per_s:,.0f} output tokens/s in the peak hours of a "
        "business-hours day"
        + (f", {f.prod.share.traffic_share_pct.normalize():f} % of the declared "
           f"{f.prod.spec.workload.output_tokens_per_s:,.0f}: prod is one of two regions, each sized to absorb the other"
           if f.prod.share is not None and fl.served_share != 1 else "")
        + f"; {tokens_text(t.tokens_per_day_at_demand)} tokens a day, input and output) that is "
        f"**${demand:,.2f} per 1M tokens**, {_x(demand / haiku.usd_per_million_tokens)} Claude 3 Haiku on Bedrock "
        f"(${haiku.usd_per_million_tokens:,.4f} per 1M blended at {fl.input_tokens}:{fl.output_tokens}, the seed's "
        f"comparison). At the fleet's capacity within SLO, around the clock ({t.capacity_output_tokens_per_s:,.0f} "
        f"output tokens/s: the simulated knee x {fl.min_replicas} replicas, {tokens_text(t.tokens_per_day_at_capacity)} "
        f"tokens a day), it is **${capacity:,.2f}** (${t.usd_per_million_tokens('capacity', output_only=True):,.2f} per 1M "
        f"output tokens, the unit of the seed's $1.50 target), {_x(capacity / haiku.usd_per_million_tokens)} Haiku. "
        "So the seed's "
        f"\"~2x Haiku\" holds only for a fleet that runs at its SLO capacity 24 hours a day; the demand prod serves "
        f"uses {t.tokens_per_day_at_demand / t.tokens_per_day_at_capacity:.1%} of it, and Haiku's bill for that demand "
        f"would be {usd(haiku.bill_usd_per_month)} a month ({_x(t.cost_ratio(haiku))} less)."
        + _environment_sentence(f, haiku.price.key)
    )


def _environment_sentence(f: Facts, api_key: str) -> str:
    """The environment as a whole: every region it runs for the declared traffic, against one API."""
    from infra.core.cost.tco import DAYS_PER_MONTH, MILLION, tokens_text

    regions = f.environment_tco
    if len(regions) < 2:
        return ""
    total = sum((t.costs.total for t in regions), Decimal(0))
    tokens = sum((t.tokens_per_day_at_demand for t in regions), Decimal(0))
    bill = sum((next(a for a in t.apis if a.price.key == api_key).bill_usd_per_month for t in regions), Decimal(0))
    return (f" The prod environment runs {len(regions)} such regions ({', '.join(f'`{t.stack}`' for t in regions)}), "
            f"each sized to carry the other's traffic too: together **{usd(total)} a month** for the declared "
            f"{tokens_text(tokens)} tokens a day, ${total / (tokens * DAYS_PER_MONTH / MILLION):,.2f} per 1M tokens, "
            f"{_x(total / bill)} the same API's bill ({usd(bill)}).")


def tco_break_even(f: Facts) -> str:
    """Seed 003's break-even table, for prod's plan, against every API of the price book."""
    from infra.core.cost.tco import tokens_text

    t = f.prod_tco
    fl = t.fleet
    rows = [f"| API | $/1M tokens ({fl.input_tokens}:{fl.output_tokens} in:out) | its bill for the volume prod serves "
            f"({tokens_text(t.tokens_per_day_at_demand)} tokens/day) | self-hosted / API | break-even tokens/day | "
            "price recorded |", "|---|---:|---:|---:|---:|---|"]
    for a in sorted(t.apis, key=lambda a: a.usd_per_million_tokens):
        even = ("never" if a.break_even_tokens_per_day is None else tokens_text(a.break_even_tokens_per_day)
                + ("" if a.within_capacity else " (beyond prod's capacity)"))
        rows.append(f"| {a.price.provider} {a.price.model} | ${a.usd_per_million_tokens:,.4f} | {usd(a.bill_usd_per_month)} "
                    f"| {_x(t.cost_ratio(a))} | {even} | {a.price.date}{'' if a.price.confirmed else ', unconfirmed'} |")
    within = [a for a in t.apis if a.within_capacity]
    cheapest = min(within, key=lambda a: a.break_even_tokens_per_day) if within else None
    rows += ["", f"prod's plan carries at most {tokens_text(t.capacity_tokens_per_day_in_shape)} tokens a day with the "
             f"declared day's shape (its max replicas in the peak hour). Seed 003 puts self-hosting ahead above ~2M tokens "
             f"a day; for a fleet that meets prod's SLOs with an AZ lost the lowest break-even is "
             + (f"{tokens_text(cheapest.break_even_tokens_per_day)} tokens a day (against {cheapest.price.provider} "
                f"{cheapest.price.model}), {cheapest.break_even_tokens_per_day / t.tokens_per_day_at_demand:,.1f}x the "
                "volume prod serves" if cheapest else "out of reach: no API is undercut within the plan's capacity")
             + "; the APIs whose break-even lies beyond the plan's capacity are never undercut by this plan."]
    return "\n".join(rows)


def tco_assumptions(f: Facts) -> str:
    """What the figures above assume, each from the config or the price book."""
    from infra.cli.tco import demand_of
    from infra.core.catalog.prices import load_price_book
    from infra.core.cost.tco import tco_of

    t, cfg = f.prod_tco, f.prod.config.tco
    fl = t.fleet
    reserved = tco_of(f.prod_cost, f.prod.plan, cfg.model_copy(update={"reservation": "savings-plan-3yr"}),
                      **demand_of(f.prod), today=t.today)
    sp = load_price_book().reservations["savings-plan-3yr"]
    share = f.prod.share
    served = (f" x {share.traffic_share_pct.normalize():f} % (prod's traffic share in stacks/prod.yaml; it is sized "
              f"for {f.prod.sizing_share_pct.normalize():f} %, to absorb the other region)" if share is not None else "")
    return "\n".join([
        f"- Demand: `{fl.demand_from}`{served} = {fl.demand_output_tokens_per_s:,.0f} output tokens/s is the "
        f"sustained load, 1.0 in `tco.daily_profile`; the default profile is a business-hours day ({sum(cfg.daily_profile):g} full-load "
        "hours: a tenth of the load overnight, the declared load 09:00-17:00). Tokens are input + output at the "
        f"declared {fl.input_tokens}:{fl.output_tokens}.",
        f"- Fleet: KEDA's replicas per hour are ceil(requests in flight / {fl.threshold_per_replica}) within the control "
        f"block's {fl.min_replicas}-{fl.max_replicas}, "
        + (f"equal because the baseline must carry the burst (above), so prod runs {min(t.day.nodes)} nodes every hour. "
           if fl.min_replicas == fl.max_replicas else
           f"so prod runs {min(t.day.nodes)}-{max(t.day.nodes)} nodes, {t.day.node_hours} node-hours a day. ")
        + f"Capacity within SLO: the simulated knee, {fl.knee_rate_per_replica:.2f} requests/s per replica.",
        "- Fixed infrastructure: the cost model's expected month less its GPU nodes (EKS, NAT, NLB, system nodes, "
        "storage, KMS).",
        f"- Staffing: `tco.oncall_fte` {cfg.oncall_fte:g} x `tco.usd_per_fte_year` {usd(cfg.usd_per_fte_year)} (seed "
        "000's one ML infra engineer on the pager; seed 003 costs 0.25 FTE at $3,000-5,000 a month).",
        f"- Reservation: `tco.reservation` {cfg.reservation}. With `savings-plan-3yr` (the price book's "
        f"{sp.discount_pct.normalize():f} % off, {'confirmed' if sp.confirmed else 'an unconfirmed estimate'}) the month "
        f"would be {usd(reserved.costs.total)} and ${reserved.usd_per_million_tokens('capacity'):,.2f} per 1M tokens at "
        "capacity.",
        "- API prices: on-demand list prices (no batch, caching or provisioned-throughput discounts, no rate limits); "
        f"recorded as recalled on {max(a.price.date for a in t.apis)} and marked unconfirmed: nothing here could reach "
        "the providers' pages. `python -m infra tco` flags a row older than `tco.api_price_max_age_days` "
        f"({cfg.api_price_max_age_days}) as stale; docs/tco.md says how to update them.",
        "- Not counted: data transfer out, the value of data residency and of a model you control, the API's own "
        "latency and availability.",
    ])


def tco_prod_table(f: Facts) -> str:
    from infra.core.cost.tco import render_tco_table

    return "```\n" + render_tco_table(f.prod_tco).rstrip("\n") + "\n```"


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
    Generated("README.md", "prod-budget", prod_budget_verdict),
    Generated("README.md", "tco-answer", tco_answer),
    Generated("README.md", "tco-break-even", tco_break_even),
    Generated("README.md", "tco-assumptions", tco_assumptions),
    Generated("docs/tco.md", "tco-prod", tco_prod_table),
    Generated("README.md", "calibration", calibration_summary),
    Generated("docs/simulator.md", "prod-scenarios", prod_scenarios_table),
    Generated("docs/simulator.md", "prod-control", prod_control),
    Generated("docs/simulator.md", "closed-form-vs-simulator", issue_table),
    Generated("docs/serving.md", "keda", keda_serving),
    Generated("docs/serving.md", "serving-figures", serving_figures),
    Generated("docs/program.md", "project-resources", project_resources),
    Generated("docs/program.md", "config-reference", config_reference),
    Generated("docs/weights.md", "exit-codes", exit_codes("weights")),
    Generated("docs/rollout.md", "exit-codes", exit_codes("rollout")),
    Generated("docs/rollout.md", "routing-refusal", routing_refusal),
    Generated("docs/rollout.md", "prod-traffic", prod_traffic),
    Generated("docs/cost-and-policy.md", "prod-cost", prod_cost_table),
    Generated("docs/cost-and-policy.md", "cost-diff-sample", cost_diff_sample),
    Generated("docs/serving.md", "warm-pool-cost", warm_pool_cost),
    Generated("docs/serving.md", "time-to-serve-steps", time_to_serve_steps),
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
    p = command_parser(subparsers, "docs", __doc__, help="check (or --write) every generated README/docs block, report and policy config")
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
