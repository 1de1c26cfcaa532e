"""The offline plan: the real Pulumi program (`__main__.py`) under Pulumi mocks.

`run_program` executes the program exactly as `pulumi up` would (same file, same config keys)
against the mocks of `mocks` (a fake AWS world) in the isolated runtime of `isolation`;
`lean_imports` only makes pulumi_aws import faster. The plan comes from the resolver, which the
program itself calls with the same inputs (memoised, so it is sized once).
"""
from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from infra.core.config import parse_stack_config, stack_file_entries
from infra.core.paths import REPO_ROOT
from infra.core.resolve import ResolvedStack, resolve
from infra.core.sizing.plan import FleetPlan
from infra.program.offline.isolation import MockedRun, normalize, run_mocked
from infra.program.offline.mocks import MOCK_ACCOUNT_ID, FleetMocks, region_azs

PROGRAM = REPO_ROOT / "__main__.py"


@dataclass
class ProgramRun(MockedRun):
    """A mocked run of the program, with the resolved stack it was built from."""

    resolved: ResolvedStack | None = None

    @property
    def plan(self) -> FleetPlan:
        assert self.resolved is not None
        return self.resolved.plan

    def to_json(self) -> dict[str, Any]:
        """The plan document: `{"stack", "region", "plan", "resources"}` (`plan --json` adds cost, policy)."""
        return {"stack": self.stack, "region": self.region, "plan": self.plan.to_dict(),
                "resources": self.graph.resources()}


def stack_entries(stack: str, project_dir: Path = REPO_ROOT) -> dict[str, Any]:
    """The config the engine would hand the program: Pulumi.yaml defaults + Pulumi.<stack>.yaml.

    Validates it first, so a bad config fails here with the loader's message.
    """
    entries = stack_file_entries(stack, project_dir)
    parse_stack_config(entries, source=f"Pulumi.{stack}.yaml")
    return entries


def run_program(entries: Mapping[str, Any], stack: str = "prod", program: Path = PROGRAM) -> ProgramRun:
    """Run the program under mocks with the given config entries (full keys -> values).

    The stack is resolved first (bad config fails fast, with the loader's messages) from the
    program's own directory, as the program resolves it.
    """
    resolved = resolve(stack, program.parent, entries=entries)
    if str(program.parent) not in sys.path:
        sys.path.insert(0, str(program.parent))
    run = run_mocked(lambda: runpy.run_path(str(program), run_name="__main__"), stack, resolved.region,
                     config=entries)
    return ProgramRun(run.graph, run.outputs, run.secret_outputs, run.diagnostics, resolved)


def plan_stack(stack: str = "prod", project_dir: Path = REPO_ROOT) -> ProgramRun:
    """The offline plan of a stack: its config files, the real program, mocks."""
    return run_program(stack_entries(stack, project_dir), stack=stack)


__all__ = [
    "MOCK_ACCOUNT_ID", "FleetMocks", "MockedRun", "ProgramRun", "normalize", "plan_stack", "region_azs",
    "run_mocked", "run_program", "stack_entries",
]
