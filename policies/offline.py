"""Run the pack's rules without the policy server: over a stack's resource graph (the offline
plan's or a preview digest's, `infra.core.graph`), with the same config the real pack receives.

    from infra.core.graph import load_graph
    from policies import evaluate, load_pack_config, has_mandatory
    violations = evaluate(load_graph("plan.json"), load_pack_config("policies/config.prod.json"))

The config has the shape of `pulumi preview --policy-pack-config FILE`: one object per policy
name (its properties, optionally `enforcementLevel`), a string level instead of an object, and
an optional `"all"` level. Offline conveniences, documented because the real pack lacks them:
`gpu-spend-cap-stack` falls back to the `gpu-spend-cap` section, `region` defaults to the
document's region, and the stack spend cap sees the fleet plan (weights size, declared load).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError

from infra.core import money
from infra.core.graph import AWS_PROVIDER, ResourceGraph, graph_from_resources, graph_of, urn_label
from infra.core.cost import Assumptions, cost_of_document, render_report_table
from infra.core.errors import EXIT_OK, EXIT_POLICY, InputError
from policies._support import config_with_defaults
from policies.config import config_for_stack
from policies.rules import POLICIES

SPEND_POLICIES = ("gpu-spend-cap", "gpu-spend-cap-stack")


@dataclass(frozen=True)
class Violation:
    policy_name: str
    enforcement: str  # "mandatory" | "advisory"
    urn: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"policy": self.policy_name, "enforcement": self.enforcement, "urn": self.urn, "message": self.message}


def _opts(parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def _level(value: Any) -> str | None:
    if isinstance(value, EnforcementLevel):
        return value.value
    if isinstance(value, str) and value in {e.value for e in EnforcementLevel}:
        return value
    if value is not None:
        raise InputError("policy config enforcementLevel", value, f"one of {', '.join(e.value for e in EnforcementLevel)}")
    return None


def policy_config(policy: Policy, config: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(config with schema defaults, enforcement level) of one policy from a pack config."""
    raw = config.get(policy.name)
    if raw is None and policy.name == "gpu-spend-cap-stack":
        raw = config.get("gpu-spend-cap")
    level = _level(config.get("all")) or (policy.enforcement_level.value if policy.enforcement_level else "advisory")
    cfg: dict[str, Any] = {}
    if isinstance(raw, str):
        level = _level(raw) or level
    elif isinstance(raw, Mapping):
        cfg = {k: v for k, v in raw.items() if k != "enforcementLevel"}
        level = _level(raw.get("enforcementLevel")) or level
    elif raw is not None:
        raise InputError(f"policy config {policy.name}", raw, "an object of properties or an enforcement level")
    props = policy.config_schema.properties if policy.config_schema else {}
    return config_with_defaults(props, cfg), ("mandatory" if level == "remediate" else level)


def _stack_resources(graph: ResourceGraph, provider: PolicyProviderResource | None) -> list[PolicyResource]:
    """The graph as the engine hands a stack policy: parents and property dependencies linked."""
    resources = [PolicyResource(n.type, n.inputs, n.urn, n.name, _opts(n.parent), provider, None, [], {}) for n in graph]
    by_urn = {pr.urn: pr for pr in resources}
    for n, pr in zip(graph, resources):
        pr.parent = by_urn.get(n.parent or "")
        pr.property_dependencies = {k: [by_urn[u] for u in urns if u in by_urn]
                                    for k, urns in n.property_dependencies.items()}
    return resources


def evaluate(
    source: ResourceGraph | Iterable[Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
    *,
    plan: Mapping[str, Any] | None = None,
    region: str | None = None,
    policies: Sequence[Policy] | None = None,
) -> list[Violation]:
    """Every violation of every rule over a resource graph (or plain resource dicts
    {urn, type, name, parent, inputs}, made into one); `plan` and `region` default to the graph's."""
    graph = source if isinstance(source, ResourceGraph) else graph_from_resources(source, region, plan=plan)
    plan = plan if plan is not None else graph.plan
    region = region or graph.region
    config = dict(config or {})
    provider_node = next(iter(graph.of_type(AWS_PROVIDER)), None)
    provider = (PolicyProviderResource(provider_node.type, provider_node.inputs, provider_node.urn, provider_node.name)
                if provider_node else None)
    out: list[Violation] = []
    for policy in policies if policies is not None else POLICIES:
        cfg, level = policy_config(policy, config)
        if level == "disabled":
            continue
        if policy.name in SPEND_POLICIES and not cfg.get("region") and region:
            cfg["region"] = region
        if policy.name == "gpu-spend-cap-stack" and plan:
            cfg["_plan"] = dict(plan)

        def report(message: str, urn: str | None = None, _p: Policy = policy, _l: str = level, _u: str = "") -> None:
            out.append(Violation(_p.name, _l, urn or _u, message))

        if isinstance(policy, ResourceValidationPolicy):
            for n in graph:
                if n.type.startswith("pulumi:"):
                    continue
                args = ResourceValidationArgs(n.type, n.inputs, n.urn, n.name, _opts(n.parent), provider, cfg)
                try:
                    policy.validate(args, lambda m, u=None, _n=n: report(m, u, _u=_n.urn))
                except _NotApplicableError:
                    continue
        elif isinstance(policy, StackValidationPolicy):
            try:
                policy.validate(StackValidationArgs(_stack_resources(graph, provider), cfg), report)
            except _NotApplicableError:
                continue
    return out


def has_mandatory(violations: Iterable[Violation]) -> bool:
    return any(v.enforcement == "mandatory" for v in violations)


def verdict_dict(violations: Sequence[Violation], monthly_budget_usd: Any = None) -> dict[str, Any]:
    """The `policy` section of `plan --json` (cost-diff reads it back)."""
    out: dict[str, Any] = {
        "passed": not has_mandatory(violations),
        "mandatory": sum(1 for v in violations if v.enforcement == "mandatory"),
        "advisory": sum(1 for v in violations if v.enforcement != "mandatory"),
        "violations": [v.to_dict() for v in violations],
    }
    if monthly_budget_usd is not None:
        out["monthly_budget_usd"] = money.usd(monthly_budget_usd)  # the one money rule (infra/core/money.py)
    return out


def render_violations(violations: Sequence[Violation]) -> str:
    """One line per violation, mandatory first: `MANDATORY rule-name  resource  message`."""
    if not violations:
        return "policy: no violations\n"
    ordered = sorted(violations, key=lambda v: (v.enforcement != "mandatory", v.policy_name, v.urn))
    lines = [f"policy: {sum(v.enforcement == 'mandatory' for v in violations)} mandatory, "
             f"{sum(v.enforcement != 'mandatory' for v in violations)} advisory violation(s)"]
    for v in ordered:
        where = urn_label(v.urn) or "(stack)"
        lines.append(f"  {v.enforcement.upper():<9} {v.policy_name:<34} {where}: {v.message}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlanCheck:
    """Cost and policy verdict of one offline plan document (what `plan` adds to its output).

    A document of several Pulumi projects gets one combined gate (`violations`, the exit code)
    and, in `projects`, the verdict each project's own `pulumi preview --policy-pack` would give:
    the rules over that project's resources alone, without the fleet plan.
    """

    report: Any  # infra.core.cost.CostReport
    violations: tuple[Violation, ...]
    monthly_budget_usd: Decimal | None
    projects: Mapping[str, "PlanCheck"] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_POLICY if has_mandatory(self.violations) else EXIT_OK

    def sections(self) -> dict[str, Any]:
        """`{"cost": ..., "policy": ...}` to merge into the `plan --json` document."""
        return {"cost": self.report.to_dict(), "policy": verdict_dict(self.violations, self.monthly_budget_usd)}

    def summary(self) -> dict[str, Any]:
        """`{"policy": the verdict, "cost": {"usd_per_month": {scenario: total}}}`: a project's entry."""
        return {"policy": verdict_dict(self.violations, self.monthly_budget_usd),
                "cost": {"usd_per_month": {s: v["usd_per_month"] for s, v in self.report.to_dict()["scenarios"].items()}}}

    def project_sections(self) -> dict[str, dict[str, Any]]:
        """project -> its own `summary()` (what its own preview would report)."""
        return {name: sub.summary() for name, sub in self.projects.items()}

    def render(self) -> str:
        text = render_report_table(self.report) + "\n" + render_violations(self.violations)
        if self.projects:
            text += "policy per project (what each project's own preview reports; the gate above is combined):\n"
            text += "".join(f"  {name:<22} {sum(v.enforcement == 'mandatory' for v in sub.violations)} mandatory, "
                            f"{sum(v.enforcement != 'mandatory' for v in sub.violations)} advisory\n"
                            for name, sub in self.projects.items())
        return text


def check_plan(doc: ResourceGraph | Mapping[str, Any], config: Mapping[str, Any] | None = None, *,
               project_dir: Path | str | None = None) -> PlanCheck:
    """Cost the plan (its graph, or the plan document) and run every rule over its resources; per
    project too when the document holds several.

    `config` defaults to `config_for_stack(stack, project_dir)` (the generated pack config). The cost report uses the
    spend cap's assumptions (price overrides, scale events), so both agree on the worst case.
    """
    graph = doc if isinstance(doc, ResourceGraph) else graph_of(doc, "plan")
    cfg = dict(config) if config is not None else config_for_stack(graph.stack, project_dir)
    spend = cfg.get("gpu-spend-cap") if isinstance(cfg.get("gpu-spend-cap"), Mapping) else {}
    keys = set(Assumptions.__dataclass_fields__)
    assume = Assumptions.from_mapping({k: v for k, v in spend.items() if k in keys and v is not None}, "gpu-spend-cap")
    budget = spend.get("monthly_budget_usd")
    budget_usd = Decimal(str(budget)) if budget is not None else None

    def check(g: ResourceGraph) -> tuple[Any, tuple[Violation, ...]]:
        return cost_of_document(g, assumptions=assume), tuple(evaluate(g, cfg))

    projects = graph.projects
    per_project = ({p: PlanCheck(*check(graph.of_project(p)), budget_usd) for p in projects}
                   if len(projects) > 1 else {})
    return PlanCheck(*check(graph), budget_usd, per_project)
