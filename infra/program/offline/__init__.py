"""The offline plan: the real Pulumi programs (`__main__.py`, `workloads/__main__.py`,
`global/__main__.py`) under mocks.

`run_program` executes a region stack's two projects exactly as `pulumi up` would (same files, same
config keys) against the mocks of `mocks` (a fake AWS world) in the isolated runtime of
`isolation`: the base first, then the workloads with their StackReference answered from the base
run's outputs. `plan_global` plans an environment's global stack: every region stack's own
offline plan first, then the global program with its StackReferences answered from those plans'
workloads outputs.
`lean_imports` only makes pulumi_aws import faster. The plan comes from the resolver, which each
program itself calls with the same inputs (memoised, so it is sized once).
"""
from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from infra.core import money
from infra.core.config import parse_stack_config, stack_file_entries
from infra.core.deploy import base_stack_reference, workloads_stack_reference
from infra.core.global_stack import ROUTE53_REGION, GlobalStack, resolve_global
from infra.core.graph import ResourceGraph
from infra.core.labels import GLOBAL_PROJECT, PROJECT, WORKLOADS_PROJECT
from infra.core.paths import GLOBAL_DIRNAME, REPO_ROOT, WORKLOADS_DIRNAME
from infra.core.resolve import ResolvedStack, resolve
from infra.core.rollout.traffic import WEIGHTS_KEY
from infra.core.sizing.plan import FleetPlan
from infra.program.offline.isolation import MockedRun, normalize, run_mocked
from infra.program.offline.mocks import MOCK_ACCOUNT_ID, MOCK_ORGANIZATION, FleetMocks, StackOutputs, region_azs


@dataclass(frozen=True)
class Program:
    """One Pulumi project's program file."""

    project: str
    path: Path


BASE_PROGRAM = Program(PROJECT, REPO_ROOT / "__main__.py")
WORKLOADS_PROGRAM = Program(WORKLOADS_PROJECT, REPO_ROOT / WORKLOADS_DIRNAME / "__main__.py")
PROGRAMS = (BASE_PROGRAM, WORKLOADS_PROGRAM)  # in deploy order: the workloads read the base's outputs
GLOBAL_PROGRAM = Program(GLOBAL_PROJECT, REPO_ROOT / GLOBAL_DIRNAME / "__main__.py")  # one per environment
PROGRAM = BASE_PROGRAM.path


@dataclass
class ProgramRun(MockedRun):
    """A mocked run of the stack's programs: their resources as one graph (each URN names its
    project), the outputs of each project, and the resolved stack they were built from."""

    resolved: ResolvedStack | None = None
    projects: dict[str, MockedRun] = field(default_factory=dict)

    @property
    def plan(self) -> FleetPlan:
        assert self.resolved is not None
        return self.resolved.plan

    def project(self, name: str) -> MockedRun:
        return self.projects[name]

    def to_json(self, project: str | None = None) -> dict[str, Any]:
        """The plan document: `{"stack", "region", "plan", "resources", "projects"}` of the whole
        stack (`plan --json` adds cost and policy); with `project`, that project alone as its own
        preview sees it: `{"stack", "region", "project", "resources"}` (no fleet plan)."""
        if project is not None:
            return {"stack": self.stack, "region": self.region, "project": project,
                    "resources": self.graph.of_project(project).resources()}
        return {"stack": self.stack, "region": self.region, "plan": self.plan.to_dict(),
                "resources": self.graph.resources(),
                "projects": {name: {"resources": len(run.resources), "outputs": public_outputs(run)}
                             for name, run in self.projects.items()}}


def public_outputs(run: MockedRun) -> dict[str, Any]:
    """A run's outputs with its secrets shown as `[secret]`, as `pulumi stack output` does."""
    return {k: "[secret]" if k in run.secret_outputs else v for k, v in run.outputs.items()}


def stack_entries(stack: str, project_dir: Path = REPO_ROOT) -> dict[str, Any]:
    """The config the engine would hand the programs: Pulumi.yaml defaults + Pulumi.<stack>.yaml.

    Validates it first, so a bad config fails here with the loader's message.
    """
    entries = stack_file_entries(stack, project_dir)
    parse_stack_config(entries, source=f"Pulumi.{stack}.yaml")
    return entries


def _run_one(program: Program, entries: Mapping[str, Any], stack: str, region: str,
             references: Mapping[str, StackOutputs]) -> MockedRun:
    if str(program.path.parent) not in sys.path:
        sys.path.insert(0, str(program.path.parent))
    return run_mocked(lambda: runpy.run_path(str(program.path), run_name="__main__"), stack, region,
                      config=entries, project=program.project, stack_outputs=references)


def run_program(entries: Mapping[str, Any], stack: str = "prod",
                programs: Sequence[Program] = PROGRAMS) -> ProgramRun:
    """Run the programs under mocks, in order, with the given config entries (full keys -> values).

    The stack is resolved first (bad config fails fast, with the loader's messages) from the
    repository root, as each program resolves it. A later program's StackReference to an earlier
    one's stack is answered with that run's outputs.
    """
    resolved = resolve(stack, REPO_ROOT, entries=entries)
    runs: dict[str, MockedRun] = {}
    references: dict[str, StackOutputs] = {}
    for program in programs:
        run = _run_one(program, entries, stack, resolved.region, references)
        runs[program.project] = run
        if program.project == PROJECT:
            references[base_stack_reference(MOCK_ORGANIZATION, stack)] = StackOutputs(run.outputs, run.secret_outputs)
    nodes = tuple(sorted((n for run in runs.values() for n in run.resources), key=lambda n: (n.project != PROJECT, n.urn)))
    graph = ResourceGraph("plan", stack, resolved.region, nodes)
    outputs = {k: v for run in runs.values() for k, v in run.outputs.items()}
    secrets = tuple(sorted({k for run in runs.values() for k in run.secret_outputs}))
    diagnostics = [line for run in runs.values() for line in run.diagnostics]
    return ProgramRun(graph, outputs, secrets, diagnostics, resolved, runs)


def plan_stack(stack: str = "prod", project_dir: Path = REPO_ROOT) -> ProgramRun:
    """The offline plan of a stack: its config files, the real programs, mocks."""
    return run_program(stack_entries(stack, project_dir), stack=stack)


@dataclass
class GlobalRun(MockedRun):
    """A mocked run of an environment's global stack, and the region plans that answered its references."""

    resolved: GlobalStack | None = None
    regions: dict[str, ProgramRun] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """`{"stack", "project", "region", "environment", "hostname", "routing", "regions", "resources",
        "projects"}`: the global project's own document (`plan --project global --json` adds cost and policy)."""
        g = self.resolved
        assert g is not None
        served = g.routed_pct()
        return {
            "stack": self.stack, "project": GLOBAL_PROJECT, "region": self.region, "environment": g.environment,
            "hostname": g.hostname, "zone_name": g.endpoint.zone_name, "routing": g.endpoint.routing,
            "health_check": g.endpoint.health_check.model_dump(),
            "regions": [{"stack": r.stack, "region": r.region,
                         "traffic_share_pct": money.number(r.share.traffic_share_pct),
                         "sized_for_pct": money.number(r.sized_pct), "weight": r.weight,
                         "serves_pct": money.number(served[r.stack]) if r.stack in served else 0,
                         "outputs": public_outputs(self.regions[r.stack].project(WORKLOADS_PROJECT))}
                        for r in g.regions],
            "resources": self.graph.resources(),
            "projects": {GLOBAL_PROJECT: {"resources": len(self.resources), "outputs": public_outputs(self)}},
        }


def run_global(stack: GlobalStack, regions: Mapping[str, ProgramRun], *,
               body: Callable[[], Any] | None = None) -> GlobalRun:
    """The global program under mocks, its StackReferences answered by the region runs' workloads
    outputs; the stack's weights that differ from the declared ones are passed as its config, as a
    traffic step passes them. `body` replaces the program file (tests run the composition on a
    stack resolved from another directory)."""
    references = {
        workloads_stack_reference(MOCK_ORGANIZATION, name): StackOutputs(run.project(WORKLOADS_PROJECT).outputs,
                                                                       run.project(WORKLOADS_PROJECT).secret_outputs)
        for name, run in regions.items()
    }
    entries = {WEIGHTS_KEY: {s: w for s, w in stack.weights.items() if w != stack.declared[s]}}
    if body is None:
        run = _run_one(GLOBAL_PROGRAM, entries, stack.environment, ROUTE53_REGION, references)
    else:
        run = run_mocked(body, stack.environment, ROUTE53_REGION, config=entries, project=GLOBAL_PROJECT,
                         stack_outputs=references)
    return GlobalRun(run.graph, run.outputs, run.secret_outputs, run.diagnostics, stack, dict(regions))


def plan_global(environment: str = "prod", project_dir: Path = REPO_ROOT) -> GlobalRun:
    """The offline plan of an environment's global stack: every region stack's offline plan, then
    the global program against their outputs."""
    stack = resolve_global(environment, project_dir)  # config and routing problems first (exit 2)
    return run_global(stack, {r.stack: plan_stack(r.stack, project_dir) for r in stack.regions})


__all__ = [
    "BASE_PROGRAM", "GLOBAL_PROGRAM", "GlobalRun", "MOCK_ACCOUNT_ID", "PROGRAMS", "plan_global", "run_global", "WORKLOADS_PROGRAM", "FleetMocks", "MockedRun", "Program",
    "ProgramRun", "normalize", "plan_stack", "public_outputs", "region_azs", "run_mocked", "run_program",
    "stack_entries",
]
