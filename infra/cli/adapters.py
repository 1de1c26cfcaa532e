"""The rollout's and deploy's adapters to the rest of the project: resolver + offline plan, cost
model, pack, and the deploy path.

The command layer is where these meet (the rollout's core and runner see only the interfaces in
`infra.core.rollout`): `offline_plan` is the real program under mocks for a resolved stack;
`CostModelAdapter` prices a plan or a `pulumi preview --json`; `evaluate_policies` runs the
policy pack with the stack's generated pack config (`policies.config_for_stack`); `deploy_path`
wires a stack's two projects (the base here, the workloads in the VPC where the endpoint is
private) for `deploy` and `rollout` alike; `global_workspace` the environment's global stack for
the rollout's traffic steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

from infra.core.config import StackConfig
from infra.core.cost import cost_of_document
from infra.core.errors import UserError
from infra.core.graph import graph_of
from infra.core.resolve import resolve
from infra.core.rollout.dryrun import OfflinePlan
from infra.core.rollout.interfaces import CostFigure
from infra.program.offline import plan_stack
from policies import config_for_stack, config_path, evaluate


class CostModelAdapter:
    """`interfaces.CostModel` over infra.core.cost (offline plans and preview documents alike)."""

    def monthly(self, document: Mapping[str, Any], scenario: str) -> CostFigure:
        graph = graph_of(dict(document), "document")
        report = cost_of_document(graph)
        return CostFigure(Decimal(report.total_month(scenario)), graph.kind)


def slo_targets(stack: str, project_dir: Path) -> tuple[str, Any]:
    """(served model name, declared workload): what the health gate's `slo:` queries are bound to."""
    resolved = resolve(stack, project_dir)
    return resolved.plan.served_name, resolved.config.workload


def checked_pack_config(stack: str, project_dir: Path) -> str:
    """The path of the stack's pack config, once it is known to match the stack config."""
    config_for_stack(stack, project_dir)
    return str(config_path(stack, project_dir))


def evaluate_policies(stack: str, document: Mapping[str, Any], cfg: StackConfig,
                      project_dir: Path) -> tuple[list[dict[str, str]], bool, str]:
    """(violations as dicts, evaluated?, where the verdict came from)."""
    if isinstance(document.get("policy"), Mapping):  # `plan --json` already carries the verdict
        raw = document["policy"].get("violations") or []
        return [dict(v) for v in raw if isinstance(v, Mapping)], True, "from the plan document"
    config = config_for_stack(stack, project_dir)
    violations = evaluate(document.get("resources") or [], config, plan=document.get("plan"),
                          region=document.get("region"))
    return [v.to_dict() for v in violations], True, f"policy config policies/config.{stack}.json"


class ProjectEvaluator:
    """The dry run's `OfflineEvaluator` over this repository's resolver, program, cost model and pack.

    `plan_path` is the rollout plan the dry run was given: each stack must take its share from
    it, because the program (and so `pulumi up`) sizes the stack from the plan that lists it.
    """

    def __init__(self, project_dir: Path, plan_path: str | Path | None = None) -> None:
        self.project_dir = Path(project_dir)
        self.plan_path = Path(plan_path).resolve() if plan_path else None
        self.costs = CostModelAdapter()

    def plan(self, stack: str) -> OfflinePlan:
        resolved = resolve(stack, self.project_dir)
        declared = resolved.environment_path.resolve() if resolved.environment_path else None
        if self.plan_path is not None and declared != self.plan_path:
            where = declared or "no rollout plan (it would be sized for the whole declared workload)"
            raise UserError(f"stack {stack!r} takes its traffic share from {where}, not from {self.plan_path}: "
                            f"the program sizes it from there; roll out that plan")
        run = plan_stack(stack, self.project_dir)
        return OfflinePlan(resolved.config, resolved.spec, run.to_json())

    def cost(self, document: Mapping[str, Any], scenario: str) -> Decimal:
        return Decimal(self.costs.monthly(document, scenario).usd_per_month)

    def policy(self, stack: str, document: Mapping[str, Any], cfg: StackConfig) -> tuple[list[dict[str, str]], bool, str]:
        return evaluate_policies(stack, document, cfg, self.project_dir)


# --- the deploy path: both projects of a stack, in the VPC where the endpoint is private --------------


def preview_violations(stack: str, document: Mapping[str, Any], project_dir: Path) -> list[dict[str, str]]:
    """The pack's verdict over a `pulumi preview --json` document (an in-VPC preview's)."""
    return [v.to_dict() for v in evaluate(graph_of(dict(document), "preview"), config_for_stack(stack, project_dir))]


def gpu_urns(stack: str, project_dir: Path) -> list[str]:
    """What the first pass of a deploy leaves out: the base's GPU node groups, from the offline plan."""
    from infra.core.deploy import gpu_node_group_urns

    return gpu_node_group_urns(plan_stack(stack, project_dir).graph)


@dataclass
class DeployPath:
    """A stack's two projects, wired: `workspace` (the runner's `Workspace`, and `destroy`), and
    `runner`, the in-VPC deployer the private stacks' workloads and Prometheus queries go through."""

    project_dir: Path
    workspace: Any  # infra.ops.deploy.workspace.StackWorkspace
    runner: Any  # infra.ops.deploy.codebuild.CodeBuildRunner
    in_vpc: Callable[[str], bool]

    def prometheus_for(self, gate_url: str, environment: str) -> Callable[[str], Any]:
        from infra.ops.deploy.prometheus import InVpcPrometheus
        from infra.ops.rollout.health import UrlPrometheus

        direct, remote = UrlPrometheus(gate_url, environment), InVpcPrometheus(self.runner)
        return lambda stack: remote if self.in_vpc(stack) else direct


def global_workspace(project_dir: Path) -> Any:
    """The global project (global/Pulumi.yaml) over the Automation API: its stacks are the
    environments, previews and ups run the pack with policies/global/config.<env>.json."""
    from infra.core.paths import GLOBAL_DIRNAME, POLICIES_DIRNAME
    from infra.ops.rollout.automation import AutomationWorkspace
    from policies import config_for_global, global_config_path

    def pack(environment: str) -> str:
        config_for_global(environment, project_dir)  # refused when missing or stale
        return str(global_config_path(environment, project_dir))

    return AutomationWorkspace(project_dir / GLOBAL_DIRNAME, pack_config_for=pack, repo_dir=project_dir,
                               up_policy_packs=(POLICIES_DIRNAME,))


def deploy_path(project_dir: Path) -> DeployPath:
    """The deploy path `deploy` and `rollout` share (real Automation API, CodeBuild, elbv2)."""
    from functools import lru_cache

    import boto3

    from infra.core.deploy import OUT_DEPLOYER
    from infra.core.paths import POLICIES_DIRNAME, WORKLOADS_DIRNAME
    from infra.ops.deploy.codebuild import CodeBuildRunner
    from infra.ops.deploy.loadbalancers import ElbV2LoadBalancers
    from infra.ops.deploy.workspace import ByStack, InVpcWorkspace, StackWorkspace
    from infra.ops.rollout.automation import AutomationWorkspace

    @lru_cache(maxsize=None)
    def config(stack: str) -> StackConfig:
        return resolve(stack, project_dir).config

    def pack(stack: str) -> str:
        return checked_pack_config(stack, project_dir)

    packs = (POLICIES_DIRNAME,)  # every up runs the pack, as every preview does
    base = AutomationWorkspace(project_dir, pack_config_for=pack, up_policy_packs=packs)
    local = AutomationWorkspace(project_dir / WORKLOADS_DIRNAME, pack_config_for=pack, repo_dir=project_dir,
                                up_policy_packs=packs)
    runner = CodeBuildRunner(project_dir, deployer_of=lambda s: base.outputs(s).get(OUT_DEPLOYER),
                             region_of=lambda s: config(s).region)
    in_vpc_ws = InVpcWorkspace(runner, outputs_from=local,
                               evaluate_policies=lambda s, doc: preview_violations(s, doc, project_dir))

    def in_vpc(stack: str) -> bool:
        return config(stack).deploys_in_vpc

    workspace = StackWorkspace(
        base=base, workloads=ByStack(lambda s: in_vpc_ws if in_vpc(s) else local),
        gpu_urns=lambda s: gpu_urns(s, project_dir), config_text_of=base.config_text,
        load_balancers=ElbV2LoadBalancers(lambda s: boto3.client("elbv2", region_name=config(s).region)),
    )
    return DeployPath(project_dir, workspace, runner, in_vpc)
