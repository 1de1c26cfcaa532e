"""Adapters from the rollout to the rest of the project: offline plan, cost model, policy pack.

Each is a small function so that a change elsewhere is a one-line change here:

* `offline_plan`   - `infra.preview.run_program` (the real program under mocks) on the stack's
                     config with the workload scaled to the region's share;
* `CostModelAdapter` - `infra.cost.cost_of_document` over a plan or a `pulumi preview --json`;
* `evaluate_policies` - `policies.evaluate` with `policies/config.<stack>.json` (or, for a stack
                     without one, a config derived with `policies.pack_config` from its budget).

Imports of pulumi, pulumi_policy and the cost model are lazy: the planning modules of the rollout
import this file without pulling them in.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from infra.config import SizingSpec, StackConfig
from infra.rollout.interfaces import CostFigure
from infra.rollout.regions import share_applied_by_caller


def offline_plan(stack: str, spec: SizingSpec, project_dir: Path) -> dict[str, Any]:
    """The offline plan document `{"stack", "region", "plan", "resources"}` sized for `spec`."""
    from infra.preview import run_program, stack_entries

    entries = stack_entries(stack, project_dir)
    entries["llm-fleet:workload"] = spec.workload.model_dump(mode="json", exclude_none=True)
    with share_applied_by_caller():
        run = run_program(entries, stack=stack, project_dir=project_dir)
    return run.to_json()


class CostModelAdapter:
    """`interfaces.CostModel` over infra.cost (offline plans and preview documents alike)."""

    def monthly(self, document: Mapping[str, Any], scenario: str) -> CostFigure:
        from infra.cost import cost_of_document, normalise

        doc = normalise(dict(document), "document")
        report = cost_of_document(doc)
        return CostFigure(Decimal(report.total_month(scenario)), doc.kind)


def policy_pack_config(stack: str, project_dir: Path) -> tuple[dict[str, Any], str]:
    """(the pack config for `stack`, where it came from): the policy pack's own
    `config_for_stack`, so the rollout, the offline plan and the real preview read one budget."""
    from policies import config_for_stack, config_path

    path = config_path(stack, Path(project_dir) / "policies")
    source = (f"policies/config.{stack}.json with Pulumi.{stack}.yaml on top" if path.is_file()
              else f"derived from Pulumi.{stack}.yaml (no policies/config.{stack}.json)")
    return config_for_stack(stack, project_dir), source


def evaluate_policies(stack: str, document: Mapping[str, Any], cfg: StackConfig,
                      project_dir: Path) -> tuple[list[dict[str, str]], bool, str]:
    """(violations as dicts, evaluated?, note). Not evaluated when the policy package is missing."""
    if isinstance(document.get("policy"), Mapping):  # `plan --json` may already carry the verdict
        raw = document["policy"].get("violations") or []
        return [dict(v) for v in raw if isinstance(v, Mapping)], True, "from the plan document"
    try:
        from policies import evaluate
    except ImportError as exc:
        return [], False, f"policies package not importable ({exc})"
    config, source = policy_pack_config(stack, project_dir)
    violations = evaluate(document.get("resources") or [], config, plan=document.get("plan"),
                          region=document.get("region"))
    out = []
    for v in violations:
        out.append(v.to_dict() if hasattr(v, "to_dict") else {
            "policy": str(getattr(v, "policy_name", "")), "enforcement": str(getattr(v, "enforcement", "")),
            "urn": str(getattr(v, "urn", "")), "message": str(getattr(v, "message", "")),
        })
    return out, True, f"policy config {source}"


class ProjectEvaluator:
    """The dry run's `OfflineEvaluator` over this repository's program, cost model and pack."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = Path(project_dir)
        self.costs = CostModelAdapter()

    def plan(self, stack: str, spec: SizingSpec, cfg: StackConfig) -> dict[str, Any]:
        return offline_plan(stack, spec, self.project_dir)

    def cost(self, document: Mapping[str, Any], scenario: str) -> Decimal:
        return Decimal(self.costs.monthly(document, scenario).usd_per_month)

    def policy(self, stack: str, document: Mapping[str, Any], cfg: StackConfig) -> tuple[list[dict[str, str]], bool, str]:
        return evaluate_policies(stack, document, cfg, self.project_dir)
