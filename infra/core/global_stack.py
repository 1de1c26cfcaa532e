"""The global stack of an environment, resolved: what the global/ Pulumi program builds. Pure.

The global stack is named after its environment (`stacks/<env>.yaml`, whose `global:` section is
its configuration) and serves ONE public hostname: the `ingress.hostname` every region stack of
the environment declares (each gateway serves it, its certificate covers it), with one Route 53
record per region stack, latency-based or weighted by `traffic_share_pct`, each health-checked on
the region's /health. Every region is resolved through `infra.core.resolve` (its config, and the
sizing share its plan is sized for), and the records are refused (exit 2) when a region would
serve more than that in any scenario they allow (`infra.core.rollout.traffic.routing_problems`).

A rollout's traffic step passes the weights it holds as the stack's config (`WEIGHTS_KEY`); the
program reads them back through `entries` and applies them over the declared ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from infra.core.config import NAMESPACE, StackConfig, joined_problems
from infra.core.errors import InputError, UserError, shown
from infra.core.paths import REPO_ROOT, STACKS_DIRNAME
from infra.core.resolve import ResolvedStack, resolve
from infra.core.rollout.spec import GlobalEndpoint, RegionShare, RolloutPlan, load_rollout_plan
from infra.core.rollout.traffic import (
    WEIGHTS_KEY,
    changes,
    declared_weights,
    parse_weights,
    routed_pct,
    routing_problems,
)

# Route 53 is a global service whose API lives in us-east-1: the global stack's provider region.
ROUTE53_REGION = "us-east-1"
ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class RegionRecord:
    """One region stack as the global stack routes to it."""

    share: RegionShare
    config: StackConfig
    sized_pct: Decimal  # the sizing share its plan is sized for (infra.core.resolve)
    weight: int  # as applied: declared, or a traffic step's; 0 takes it out of DNS

    @property
    def stack(self) -> str:
        return self.share.stack

    @property
    def region(self) -> str:
        return self.share.region


@dataclass(frozen=True)
class GlobalStack:
    environment: str  # the global stack's name
    plan: RolloutPlan
    path: Path  # stacks/<env>.yaml
    hostname: str
    regions: tuple[RegionRecord, ...]

    @property
    def endpoint(self) -> GlobalEndpoint:
        assert self.plan.global_ is not None
        return self.plan.global_

    @property
    def weights(self) -> dict[str, int]:
        return {r.stack: r.weight for r in self.regions}

    @property
    def declared(self) -> dict[str, int]:
        return declared_weights(self.plan)

    @property
    def tags(self) -> dict[str, str]:
        """The tags every region stack carries with the same value (the health checks get them)."""
        first, *rest = [r.config.tags for r in self.regions]
        return {k: v for k, v in sorted(first.items()) if all(t.get(k) == v for t in rest)}

    @property
    def warnings(self) -> list[str]:
        """What may keep a region out of DNS without being wrong enough to refuse."""
        return [f"Pulumi.{r.stack}.yaml: {NAMESPACE}ingress.allowed_source_cidrs {list(r.config.ingress.allowed_source_cidrs)} "
                "restricts the gateway's NLB: it must admit Route 53's health checkers (ip-ranges.json, service "
                "ROUTE53_HEALTHCHECKS), or the region's health check fails and it leaves DNS"
                for r in self.regions if ANYWHERE not in r.config.ingress.allowed_source_cidrs]

    def routed_pct(self) -> dict[str, Decimal]:
        """What each region in DNS serves with the weights as applied (worst case under latency routing)."""
        return routed_pct(self.plan.regions, self.weights, self.endpoint.routing)


def environments(project_dir: Path | str = REPO_ROOT) -> list[str]:
    """The environments with a global section: the global project's stacks."""
    directory = Path(project_dir) / STACKS_DIRNAME
    out = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
        if load_rollout_plan(path).global_ is not None:
            out.append(path.stem)
    return out


def _in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def endpoint_problems(plan: RolloutPlan, configs: Mapping[str, StackConfig]) -> list[str]:
    """The names the records need: one hostname all regions serve, every name inside the zone."""
    assert plan.global_ is not None
    zone = plan.global_.zone_name
    problems = []
    hostnames = {s: c.ingress.hostname for s, c in configs.items()}
    first = plan.regions[0].stack
    for stack, name in hostnames.items():
        if name != hostnames[first]:
            problems.append(f"{NAMESPACE}ingress.hostname: Pulumi.{stack}.yaml serves {shown(name)} but Pulumi.{first}.yaml "
                            f"{shown(hostnames[first])}; every region of an environment with a global section serves "
                            "its one hostname (the records' name, which each region's certificate covers)")
    for stack, cfg in configs.items():
        for key, name in (("hostname", cfg.ingress.hostname), ("regional_hostname", cfg.regional_hostname)):
            if not _in_zone(name, zone):
                problems.append(f"{NAMESPACE}ingress.{key}: {shown(name)} (Pulumi.{stack}.yaml) is not allowed; it must lie "
                                f"in global.zone_name {zone!r}, where the global stack writes its records")
    regional = [c.regional_hostname for c in configs.values()]
    for stack, cfg in configs.items():
        if regional.count(cfg.regional_hostname) > 1:
            problems.append(f"{NAMESPACE}ingress.regional_hostname: {shown(cfg.regional_hostname)} (Pulumi.{stack}.yaml) is "
                            "not allowed; each region has its own (its health check and its record)")
    return list(dict.fromkeys(problems))


def _problems(plan: RolloutPlan, resolved: Mapping[str, ResolvedStack]) -> list[str]:
    """The records' names, and what each region serves against what it is sized for."""
    return (endpoint_problems(plan, {s: rs.config for s, rs in resolved.items()})
            + routing_problems(plan, {s: rs.sizing_share_pct for s, rs in resolved.items()}))


def check_global(plan: RolloutPlan, project_dir: Path | str, source: str = "rollout plan") -> None:
    """Refuse (UserError, exit 2) a plan whose global records the regions could not carry; every
    region resolved as its program resolves it. Nothing to check without a global section."""
    if plan.global_ is None:
        return
    problems = _problems(plan, {r.stack: resolve(r.stack, project_dir) for r in plan.regions})
    if problems:
        raise UserError(f"{source}: {joined_problems(problems)}")


def resolve_global(environment: str, project_dir: Path | str = REPO_ROOT, *,
                   entries: Mapping[str, Any] | None = None) -> GlobalStack:
    """The global stack `environment`: its plan, every region resolved, the weights as applied.

    Raises UserError (exit 2) naming each problem: no such environment or no global section,
    hostnames that disagree or lie outside the zone, or a region that would serve more than it
    is sized for (both numbers named).
    """
    project_dir = Path(project_dir)
    path = project_dir / STACKS_DIRNAME / f"{environment}.yaml"
    if not path.is_file():
        known = environments(project_dir)
        raise InputError("--stack", environment,
                         f"an environment with a global section ({', '.join(known) or f'none in {STACKS_DIRNAME}/'}); "
                         f"the global project's stacks are environments (stacks/<env>.yaml)")
    plan = load_rollout_plan(path)
    if plan.global_ is None:
        raise UserError(f"{STACKS_DIRNAME}/{environment}.yaml has no global section: add one (zone_name, routing, "
                        "health_check) for the environment to have one public hostname (docs/rollout.md)")
    resolved = {r.stack: resolve(r.stack, project_dir) for r in plan.regions}
    problems = _problems(plan, resolved)
    sized = {s: rs.sizing_share_pct for s, rs in resolved.items()}
    applied = {**declared_weights(plan), **parse_weights((entries or {}).get(WEIGHTS_KEY), plan)}
    if not any(applied.values()):
        problems.append(f"{WEIGHTS_KEY}: every region at 0 is not allowed; at least one region must stay in DNS")
    else:
        for stack, routed in routed_pct(plan.regions, applied, plan.global_.routing).items():
            if routed > sized[stack]:
                problems.append(f"{WEIGHTS_KEY}: with weights {changes(declared_weights(plan), applied)}, {stack} would "
                                f"serve {routed.normalize():f}% of the traffic, but it is sized for "
                                f"{sized[stack].normalize():f}%")
    if problems:
        raise UserError(f"{STACKS_DIRNAME}/{environment}.yaml: {joined_problems(problems)}")
    regions = tuple(RegionRecord(r, resolved[r.stack].config, sized[r.stack], applied[r.stack]) for r in plan.regions)
    return GlobalStack(environment, plan, path, resolved[plan.regions[0].stack].config.ingress.hostname, regions)


__all__ = ["GlobalStack", "ROUTE53_REGION", "RegionRecord", "check_global", "endpoint_problems", "environments",
           "resolve_global"]
