"""`rollout --dry-run`: what a rollout would do, offline. Changes nothing.

For each wave and stack: the region's share and what it is sized for, the offline plan summary,
the cost delta against the stack's last deployed cost (cost gate), the policy verdict (policy
gate), and the steps the real run would take; for each wave with a traffic step, the weights the
global stack holds from its first up to the end of its bake and what each region then serves. The plan, cost and policy numbers come from an
`OfflineEvaluator` (the resolver, the program under mocks, the cost model and the pack, wired by
`infra.cli.adapters.ProjectEvaluator`; a fake in tests), so this module stays pure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Protocol, Sequence

from infra.core import money
from infra.core.config import SizingSpec, StackConfig, Workload
from infra.core.errors import EXIT_OK, EXIT_POLICY, EXIT_ROLLOUT_HALTED, EXIT_USAGE, UserError
from infra.core.rollout.gates import APPROVE_ALL, GateVerdict, cost_verdict, policy_verdict, usd
from infra.core.rollout.regions import sizing_share_pct
from infra.core.rollout.spec import BenchCheck, RolloutPlan, Wave
from infra.core.rollout.traffic import changes, declared_weights, routed_pct, served_text, weights_during


@dataclass(frozen=True)
class OfflinePlan:
    """A stack as the real run would build it: its config, what it is sized for, its plan document."""

    config: StackConfig
    spec: SizingSpec  # the declared workload scaled to the region's share
    document: Mapping[str, Any]  # {"stack", "region", "plan", "resources"}


class OfflineEvaluator(Protocol):
    def plan(self, stack: str) -> OfflinePlan: ...

    def cost(self, document: Mapping[str, Any], scenario: str) -> Decimal: ...

    def policy(self, stack: str, document: Mapping[str, Any],
               cfg: StackConfig) -> tuple[list[dict[str, str]], bool, str]: ...


class DeployedRecords(Protocol):
    def read_deployed(self, stack: str) -> dict[str, Any] | None: ...


@dataclass
class StackDryRun:
    wave: str
    stack: str
    region: str
    share_pct: Decimal
    sized_pct: Decimal
    absorbs: bool
    concurrent_requests: int = 0
    output_tokens_per_s: float | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    resources: int = 0
    cost: GateVerdict | None = None
    policy: GateVerdict | None = None
    policy_note: str = ""
    budget_usd: Decimal | None = None
    steps: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def stops(self) -> list[str]:
        return [v.gate for v in (self.policy, self.cost) if v is not None and v.stops] + (["plan"] if self.error else [])

    def to_dict(self) -> dict[str, Any]:
        def verdict(v: GateVerdict | None) -> dict[str, Any] | None:
            return None if v is None else {"status": v.status, "reason": v.reason, **({"data": dict(v.data)} if v.data else {})}

        return {
            "wave": self.wave, "stack": self.stack, "region": self.region,
            "traffic_share_pct": money.number(self.share_pct), "sized_for_pct": money.number(self.sized_pct),
            "absorb_region_failure": self.absorbs,
            "sized_load": {"concurrent_requests": self.concurrent_requests, "output_tokens_per_s": self.output_tokens_per_s},
            "plan": self.plan, "resources": self.resources,
            "gates": {"cost": verdict(self.cost), "policy": verdict(self.policy)},
            "policy_note": self.policy_note,
            "budget_usd_per_month": money.usd(self.budget_usd),
            "would_run": self.steps, "error": self.error or None, "would_stop_at": self.stops,
        }


@dataclass(frozen=True)
class TrafficStep:
    """A wave's traffic step as the real run takes it (through the global stack)."""

    declared: dict[str, int]  # the weights restored after the bake when nothing else held them
    during: dict[str, int]
    served_pct: dict[str, Decimal]  # what each region in DNS serves meanwhile (worst case for latency)
    served: str

    def to_dict(self) -> dict[str, Any]:
        return {"weights_before_up": self.during, "weights_after_bake": self.declared,
                "serves_pct": {s: money.number(p) for s, p in self.served_pct.items()}}


def traffic_step(plan: RolloutPlan, wave: Wave) -> TrafficStep | None:
    if not wave.traffic or plan.global_ is None:
        return None
    during = weights_during(plan, wave)
    return TrafficStep(declared_weights(plan), during, routed_pct(plan.regions, during, plan.global_.routing),
                       served_text(plan, during))


@dataclass
class DryRunReport:
    environment: str
    plan_path: str
    waves: list[tuple[Wave, list[StackDryRun]]]
    on_failure: str
    traffic: dict[str, TrafficStep] = field(default_factory=dict)  # wave -> its traffic step

    @property
    def stacks(self) -> list[StackDryRun]:
        return [s for _, stacks in self.waves for s in stacks]

    @property
    def exit_code(self) -> int:
        stacks = self.stacks
        if any(s.error for s in stacks):
            return EXIT_USAGE
        if any(s.policy is not None and s.policy.stops and (s.policy.data or {}).get("mandatory") for s in stacks):
            return EXIT_POLICY
        if any(s.stops for s in stacks):
            return EXIT_ROLLOUT_HALTED
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment, "plan": self.plan_path, "dry_run": True,
            "on_failure": self.on_failure,
            "waves": [
                {"name": w.name, "bake_minutes": w.bake_minutes,
                 "traffic": self.traffic[w.name].to_dict() if w.name in self.traffic else None,
                 "stacks": [s.to_dict() for s in stacks]}
                for w, stacks in self.waves
            ],
            "would_stop": [{"stack": s.stack, "gates": s.stops} for s in self.stacks if s.stops],
            "exit_code": self.exit_code,
        }


def _deployed_cost(record: Mapping[str, Any] | None, scenario: str) -> Decimal | None:
    if not record:
        return None
    raw = (record.get("cost") or {}).get(scenario)
    try:
        return Decimal(str(raw)) if raw not in (None, "") else None
    except InvalidOperation:
        return None


def _plan_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    plan = doc.get("plan") or {}
    keys = ("instance_type", "gpus_per_node", "precision", "tensor_parallel", "azs", "nodes_per_az",
            "warm_spares_per_az", "replicas_baseline", "replicas_max", "gpus_baseline")
    out = {k: plan[k] for k in keys if k in plan}
    if isinstance(plan.get("cost"), Mapping) and "usd_per_hour_baseline" in plan["cost"]:
        out["gpu_usd_per_hour_baseline"] = plan["cost"]["usd_per_hour_baseline"]
    return out


def _steps(plan: RolloutPlan, stack: str, in_vpc: bool | None = None) -> list[str]:
    """What the real run does for `stack`; `in_vpc`: its workloads run in the in-VPC deployer
    (None: the stack's config is unknown)."""
    gates = plan.gates
    health = gates.health
    where = {True: "in the VPC (CodeBuild)", False: "from here", None: "from here or in the VPC"}[in_vpc]
    steps = [
        "preflight: instance offerings per AZ, P-instance vCPU quota, capacity reservations, weights bucket/KMS/manifest",
        f"preview --policy-pack {' --policy-pack '.join(gates.policy.policy_packs)}"
        + (" (policy gate: mandatory must pass" + (", advisory too)" if gates.policy.fail_on_advisory else ")")
           if gates.policy.enabled else " (policy gate disabled)"),
        f"cost gate: {gates.cost.scenario} monthly increase <= {usd(gates.cost.max_monthly_increase_usd)}"
        + (f" and <= {gates.cost.max_monthly_increase_pct}%" if gates.cost.max_monthly_increase_pct is not None else "")
        + " unless approved" if gates.cost.enabled else "cost gate disabled",
        f"up {stack}: the base without its GPU node groups, the workloads {where}, the base in full",
    ]
    if health is None:
        steps.append("health gate: none configured")
    else:
        parts = []
        if health.queries:
            parts.append(f"{len(health.queries)} PromQL SLO quer{'y' if len(health.queries) == 1 else 'ies'} "
                         f"({', '.join(q.name for q in health.queries)}){' in the VPC' if in_vpc else ''}")
        if health.http:
            parts.append(f"{len(health.http)} HTTP check{'s' if len(health.http) != 1 else ''} ({', '.join(c.name for c in health.http)})")
        if parts:
            steps.append(f"health gate: {' + '.join(parts)}; wait up to {health.wait_timeout_s:g} s, "
                         f"every {health.interval_s:g} s")
        if health.bench is not None:
            steps.append(bench_step(health.bench))
    return steps


def bench_step(check: BenchCheck, workload: Workload | None = None, in_vpc: bool | None = None) -> str:
    """The bench gate as the real run takes it (after the health checks pass)."""
    from infra.core.bench.job import image_of
    from infra.core.bench.results import attainment_target_pct
    from infra.core.labels import BENCH_NAMESPACE, BENCH_TENANT

    load = ", ".join(f"{k} {v:g}" for k, v in check.load.items())
    if check.min_attainment_pct is not None:
        target = f"{check.min_attainment_pct:g} %"
    elif workload is not None:
        target = f"{attainment_target_pct(workload.slo_attainment_pct):g} %"
    else:
        target = "the stack's target"
    lengths = (f"{check.input_tokens or (workload.input_tokens if workload else 'the stack')}+"
               f"{check.output_tokens or (workload.output_tokens if workload else 'the stack')} tokens")
    image, pin = image_of(check)
    where = {True: ", started by the in-VPC build", False: ", started from here", None: ""}[in_vpc]
    return (f"bench gate: Job {check.name} in namespace {BENCH_NAMESPACE}{where}, as tenant {BENCH_TENANT} against "
            f"{check.url or 'the gateway Service'} ({load}, {lengths}, at most {check.requests} requests and "
            f"{check.duration_s:g} s; image {image}{'' if pin else ' (pinned by tag only)'}); the stack fails "
            f"below {target} attainment (failures count as misses)")


def dry_run(
    plan: RolloutPlan,
    plan_path: str,
    evaluator: OfflineEvaluator,
    records: DeployedRecords,
    approve_cost: Sequence[str] = (),
) -> DryRunReport:
    scenario = plan.gates.cost.scenario
    waves: list[tuple[Wave, list[StackDryRun]]] = []
    traffic = {w.name: step for w in plan.waves if (step := traffic_step(plan, w)) is not None}
    for wave in plan.waves:
        rows = []
        for stack in wave.stacks:
            share = plan.region_of(stack)
            row = StackDryRun(
                wave=wave.name, stack=stack, region=share.region, share_pct=share.traffic_share_pct,
                sized_pct=sizing_share_pct(share, plan.regions), absorbs=share.absorb_region_failure,
                steps=_steps(plan, stack),
            )
            rows.append(row)
            try:
                offline = evaluator.plan(stack)
            except UserError as exc:
                row.error = str(exc)
                continue
            cfg, doc = offline.config, offline.document
            row.steps = _steps(plan, stack, cfg.deploys_in_vpc)
            bench = plan.gates.health.bench if plan.gates.health is not None else None
            if bench is not None:
                from infra.core.bench.job import ensure_within_bench_bucket, token_secret_arn

                try:
                    token_secret_arn(bench, cfg, stack)
                    ensure_within_bench_bucket(bench, cfg, doc["plan"]["load"])
                except UserError as exc:
                    row.error = str(exc)
                    continue
                row.steps[-1] = bench_step(bench, offline.spec.workload, cfg.deploys_in_vpc)
            if wave.name in traffic and stack == wave.stacks[0]:
                step = traffic[wave.name]
                up = next(i for i, text in enumerate(row.steps) if text.startswith("up "))
                row.steps.insert(up, f"traffic: global stack {plan.environment} to {changes(step.declared, step.during)} "
                                     f"before this up, until wave {wave.name} has baked")
            row.concurrent_requests = offline.spec.workload.concurrent_requests
            row.output_tokens_per_s = offline.spec.workload.output_tokens_per_s
            row.budget_usd = cfg.budget.monthly_usd
            row.plan = _plan_summary(doc)
            row.resources = len(doc.get("resources") or [])
            after = evaluator.cost(doc, scenario)
            approved = "--approve-cost" if (stack in approve_cost or APPROVE_ALL in approve_cost) else None
            row.cost = cost_verdict(plan.gates.cost, _deployed_cost(records.read_deployed(stack), scenario), after,
                                    approved_by=approved)
            violations, evaluated, note = evaluator.policy(stack, doc, cfg)
            row.policy = policy_verdict(plan.gates.policy, violations, evaluated)
            row.policy_note = note
        waves.append((wave, rows))
    return DryRunReport(plan.environment, plan_path, waves, plan.on_failure.rollback, traffic)


def _pct(d: Decimal) -> str:
    return f"{d.normalize():f}%"


def _load_text(row: StackDryRun) -> str:
    text = f"{row.concurrent_requests} concurrent requests"
    if row.output_tokens_per_s is not None:
        text += f", {row.output_tokens_per_s:g} output tokens/s"
    return text


def render_text(report: DryRunReport) -> str:
    lines = [
        f"llm-fleet rollout {report.environment}: dry run of {report.plan_path} (offline; nothing is changed)",
        "",
    ]
    n = len(report.waves)
    for i, (wave, rows) in enumerate(report.waves, 1):
        kind = " (canary)" if i == 1 and wave.name != "canary" else ""
        lines.append(f"wave {i}/{n} {wave.name}{kind}: {', '.join(wave.stacks)}; bake {wave.bake_minutes:g} min")
        step = report.traffic.get(wave.name)
        if step is not None:
            lines.append(f"  traffic   before the first up: {changes(step.declared, step.during)} (global stack "
                         f"{report.environment}; {step.served})")
            lines.append(f"  traffic   after the bake: back to the weights found before the wave (the declared "
                         f"shares when nothing else holds them: {changes(step.during, step.declared)})")
        for row in rows:
            sized = f"sized for {_pct(row.sized_pct)}"
            if row.absorbs and row.sized_pct != row.share_pct:
                sized += " (absorbs the largest other region's share)"
            lines.append(f"  {row.stack} ({row.region}): traffic share {_pct(row.share_pct)}, {sized}")
            if row.error:
                lines.append(f"    error     {row.error}")
                continue
            lines.append(f"    load      {_load_text(row)}")
            p = row.plan
            if p:
                nodes = p.get("nodes_per_az") or {}
                lines.append(
                    f"    plan      {p.get('instance_type', '?')} x {p.get('azs', '?')} AZs, nodes/AZ min {nodes.get('min', '?')} "
                    f"/ desired {nodes.get('desired', '?')} / max {nodes.get('max', '?')} "
                    f"(incl. {p.get('warm_spares_per_az', 0)} warm), {p.get('gpus_baseline', '?')} GPUs at baseline; "
                    f"{row.resources} resources"
                )
            if row.cost is not None:
                lines.append(f"    cost      {row.cost.status.upper()}: {row.cost.reason}")
                if row.budget_usd is not None and row.cost.data:
                    after = Decimal(str(row.cost.data["after_usd"]))
                    lines.append(f"    budget    {usd(row.budget_usd)}/month; headroom {usd(row.budget_usd - after)} "
                                 f"({row.cost.data['scenario']})")
            if row.policy is not None:
                note = f" [{row.policy_note}]" if row.policy_note else ""
                lines.append(f"    policy    {row.policy.status.upper()}: {row.policy.reason}{note}")
                for v in (row.policy.data or {}).get("violations", [])[:5]:
                    if str(v.get("enforcement")) == "mandatory":
                        lines.append(f"              MANDATORY {v.get('policy')}: {v.get('message')}")
            lines.append("    would run")
            for step in row.steps:
                lines.append(f"      - {step}")
        lines.append("")
    stops = [s for s in report.stacks if s.stops]
    lines.append(f"on failure: halt{'; roll the failed wave back to its last deployed config' if report.on_failure == 'failed-wave' else ''}")
    if not stops:
        lines.append("verdict: every gate would pass")
    else:
        lines.append(f"verdict: the rollout would stop at {stops[0].stack} ({', '.join(stops[0].stops)})")
        for s in stops:
            hint = f" (approve with --approve-cost {s.stack})" if "cost" in s.stops else ""
            lines.append(f"  {s.stack}: {', '.join(s.stops)}{hint}")
    return "\n".join(lines) + "\n"
