"""Consistency of an environment's stack files with its rollout plan. Pure (reads YAML files).

Every region stack of `stacks/<env>.yaml` must have a `Pulumi.<stack>.yaml` that validates,
deploys to the region the plan says, and declares the very same workload and model as every
other stack of the environment: the shares in the plan split ONE declared service.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.core.config import load_stack_config
from infra.core.files import read_yaml_file
from infra.core.errors import UserError
from infra.core.rollout.spec import RolloutPlan

SHARED_SECTIONS = ("llm-fleet:workload", "llm-fleet:model")


def _stack_doc(project_dir: Path, stack: str) -> dict[str, Any]:
    doc = read_yaml_file(project_dir / f"Pulumi.{stack}.yaml", "--stack")
    return (doc or {}).get("config") or {} if isinstance(doc, dict) else {}


def environment_problems(plan: RolloutPlan, project_dir: Path | str) -> list[str]:
    project_dir = Path(project_dir)
    problems: list[str] = []
    docs: dict[str, dict[str, Any]] = {}
    for r in plan.regions:
        try:
            cfg = load_stack_config(r.stack, project_dir)
        except UserError as exc:
            problems.append(f"regions: stack {r.stack!r}: {exc}")
            continue
        if cfg.region != r.region:
            problems.append(
                f"regions: stack {r.stack!r} has region {r.region!r} in the plan but Pulumi.{r.stack}.yaml deploys "
                f"to {cfg.region!r}; make them equal"
            )
        docs[r.stack] = _stack_doc(project_dir, r.stack)
    if len(docs) > 1:
        first, *rest = docs
        for key in SHARED_SECTIONS:
            for other in rest:
                if docs[other].get(key) != docs[first].get(key):
                    problems.append(
                        f"{key}: Pulumi.{other}.yaml differs from Pulumi.{first}.yaml; every stack of environment "
                        f"{plan.environment!r} declares the same {key.split(':')[1]} (the plan's traffic shares split it)"
                    )
    return problems


def check_environment(plan: RolloutPlan, project_dir: Path | str, source: str = "rollout plan") -> None:
    problems = environment_problems(plan, project_dir)
    if problems:
        head = f"{source}: " + (f"{len(problems)} problems: " if len(problems) > 1 else "")
        raise UserError(head + "; ".join(problems))
