"""Run the pack's rules without the policy server: over a normalised resource list (the
offline plan's graph or a preview digest), with the same config the real pack receives.

    from policies import evaluate, load_pack_config, has_mandatory
    violations = evaluate(doc["resources"], load_pack_config("policies/config.prod.json"),
                          plan=doc["plan"], region=doc["region"])

The config has the shape of `pulumi preview --policy-pack-config FILE`: one object per policy
name (its properties, optionally `enforcementLevel`), a string level instead of an object, and
an optional `"all"` level. Offline conveniences, documented because the real pack lacks them:
`gpu-spend-cap-stack` falls back to the `gpu-spend-cap` section, `region` defaults to the
document's region, and the stack spend cap sees the fleet plan (weights size, declared load).
"""
from __future__ import annotations

from dataclasses import dataclass
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

from infra.core.errors import InputError
from infra.core.files import read_json_file
from policies._support import config_with_defaults

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


def evaluate(
    resources: Iterable[Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
    *,
    plan: Mapping[str, Any] | None = None,
    region: str | None = None,
    policies: Sequence[Policy] | None = None,
) -> list[Violation]:
    """Every violation of every rule over `resources` ({urn, type, name, parent, inputs})."""
    from policies.rules import POLICIES  # the pack's list, in its order

    config = dict(config or {})
    resources = [dict(r) for r in resources]
    provider_res = next((r for r in resources if r.get("type") == "pulumi:providers:aws"), None)
    provider = (PolicyProviderResource(provider_res["type"], provider_res.get("inputs") or {}, provider_res.get("urn", ""),
                                       provider_res.get("name", "")) if provider_res else None)
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
            for r in resources:
                if r.get("type", "").startswith("pulumi:"):
                    continue
                args = ResourceValidationArgs(r["type"], r.get("inputs") or {}, r.get("urn", ""), r.get("name", ""),
                                              _opts(r.get("parent")), provider, cfg)
                try:
                    policy.validate(args, lambda m, u=None, _r=r: report(m, u, _u=_r.get("urn", "")))
                except _NotApplicableError:
                    continue
        elif isinstance(policy, StackValidationPolicy):
            by_urn: dict[str, PolicyResource] = {}
            stack_resources = []
            for r in resources:
                pr = PolicyResource(r["type"], r.get("inputs") or {}, r.get("urn", ""), r.get("name", ""),
                                    _opts(r.get("parent")), provider, None, [], {})
                by_urn[pr.urn] = pr
                stack_resources.append((pr, r.get("parent")))
            for pr, parent in stack_resources:
                pr.parent = by_urn.get(parent) if parent else None
            try:
                policy.validate(StackValidationArgs([pr for pr, _ in stack_resources], cfg), report)
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
        out["monthly_budget_usd"] = str(monthly_budget_usd)
    return out


def render_violations(violations: Sequence[Violation]) -> str:
    """One line per violation, mandatory first: `MANDATORY rule-name  resource  message`."""
    if not violations:
        return "policy: no violations\n"
    ordered = sorted(violations, key=lambda v: (v.enforcement != "mandatory", v.policy_name, v.urn))
    lines = [f"policy: {sum(v.enforcement == 'mandatory' for v in violations)} mandatory, "
             f"{sum(v.enforcement != 'mandatory' for v in violations)} advisory violation(s)"]
    for v in ordered:
        where = v.urn.rsplit("::", 1)[-1] if v.urn else "(stack)"
        lines.append(f"  {v.enforcement.upper():<9} {v.policy_name:<34} {where}: {v.message}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlanCheck:
    """Cost and policy verdict of one offline plan document (what `plan` adds to its output)."""

    report: Any  # infra.core.cost.CostReport
    violations: tuple[Violation, ...]
    monthly_budget_usd: Decimal | None

    @property
    def exit_code(self) -> int:
        from infra.core.errors import EXIT_OK, EXIT_POLICY

        return EXIT_POLICY if has_mandatory(self.violations) else EXIT_OK

    def sections(self) -> dict[str, Any]:
        """`{"cost": ..., "policy": ...}` to merge into the `plan --json` document."""
        return {"cost": self.report.to_dict(), "policy": verdict_dict(self.violations, self.monthly_budget_usd)}

    def render(self) -> str:
        from infra.core.cost import render_report_table

        return render_report_table(self.report) + "\n" + render_violations(self.violations)


def check_plan(doc: Mapping[str, Any], config: Mapping[str, Any] | None = None, *,
               project_dir: Path | str | None = None) -> PlanCheck:
    """Cost the plan document and run every rule over its resources.

    `config` defaults to `config_for_stack(doc["stack"], project_dir)` (the generated pack config). The cost report uses the
    spend cap's assumptions (price overrides, scale events), so both agree on the worst case.
    """
    from infra.core.cost import Assumptions, cost_of_plan
    from policies.config import config_for_stack

    cfg = dict(config) if config is not None else config_for_stack(str(doc.get("stack") or ""), project_dir)
    spend = cfg.get("gpu-spend-cap") if isinstance(cfg.get("gpu-spend-cap"), Mapping) else {}
    keys = set(Assumptions.__dataclass_fields__)
    assume = Assumptions.from_mapping({k: v for k, v in spend.items() if k in keys and v is not None}, "gpu-spend-cap")
    report = cost_of_plan(doc, assumptions=assume)
    violations = evaluate(doc.get("resources") or [], cfg, plan=doc.get("plan"), region=doc.get("region"))
    budget = spend.get("monthly_budget_usd")
    return PlanCheck(report, tuple(violations), Decimal(str(budget)) if budget is not None else None)
