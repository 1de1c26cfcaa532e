"""A rollout's traffic steps, through the environment's global stack (the `Workspace` interface).

The global stack is named after the environment. Its weights now are its `weights` output (the
declared ones when it has none yet); a step applies weights with `up --config-file` holding them
as `llm-fleet-global:weights` (infra/core/rollout/traffic.py), or with no file when they are the
declared ones (the stack's normal state: its program takes the traffic shares). Tests drive it
with a fake workspace.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from infra.core.deploy import OUT_WEIGHTS
from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import OnOutput, UpOutcome, Workspace
from infra.core.rollout.spec import RolloutPlan
from infra.core.rollout.traffic import declared_weights, parse_weights, weights_config_text


@dataclass
class GlobalTraffic:
    plan: RolloutPlan
    workspace: Workspace  # the global project (global/Pulumi.yaml)

    @property
    def stack(self) -> str:
        return self.plan.environment

    def current(self) -> dict[str, int]:
        """The weights the global stack applies now: its output, else (never deployed) the declared ones."""
        declared = declared_weights(self.plan)
        try:
            outputs: Mapping[str, Any] = self.workspace.outputs(self.stack)
        except WorkspaceError as exc:
            if exc.kind != "not-found":
                raise
            return declared
        return {**declared, **parse_weights(outputs.get(OUT_WEIGHTS), self.plan, f"{self.stack} output {OUT_WEIGHTS}")}

    def apply(self, weights: Mapping[str, int], on_output: OnOutput) -> None:
        """Update the global stack to `weights` (WorkspaceError when the update fails)."""
        if dict(weights) == declared_weights(self.plan):
            result = self.workspace.up(self.stack, on_output=on_output)
        else:
            result = up_with_config(self.workspace, self.stack, weights_config_text(weights), on_output)
        if result.result != "succeeded":
            raise WorkspaceError(f"{self.stack} (global): update {result.result}")


def up_with_config(workspace: Workspace, stack: str, config_text: str, on_output: OnOutput) -> UpOutcome:
    """`up --config-file` with `config_text` in a temporary file (removed afterwards)."""
    fd, path = tempfile.mkstemp(prefix=f"config-{stack}-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(config_text)
        return workspace.up(stack, on_output=on_output, config_file=path)
    finally:
        Path(path).unlink(missing_ok=True)
