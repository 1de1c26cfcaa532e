"""The pack config of a stack (`pulumi preview --policy-pack-config policies/config.<stack>.json`),
generated from the stack's own config so the offline verdict and the real one read one budget.

`stack_pack_config(cfg)` derives it from `Pulumi.<stack>.yaml` (budget, region, per-type price
overrides, instance allowlist, node ceiling, required tags, the public listener). The JSON files are
written by `python -m infra docs --write`; `config_for_stack` refuses a stack whose file is
missing or out of date, because the real preview would read that file and nothing else.

An environment's global stack (global/Pulumi.yaml, named after the environment) has its own,
`policies/global/config.<env>.json` (`global_pack_config`: the global section's budget, Route 53's
region, the required tags, the hostname whose records must be health-checked), checked the same
way by `config_for_global`.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from infra.core.config import LISTENER_PORT, StackConfig, load_stack_config
from infra.core.global_stack import ROUTE53_REGION, GlobalStack, resolve_global
from infra.core.cost import Assumptions
from infra.core.errors import InputError, UserError
from infra.core.files import read_json_file
from infra.core.labels import REQUIRED_TAGS
from infra.core.paths import GLOBAL_DIRNAME, POLICIES_DIRNAME, REPO_ROOT

FIX = "regenerate it with `python -m infra docs --write`"


def _json_number(value: Any) -> int | float:
    d = Decimal(str(value))
    return int(d) if d == d.to_integral_value() else float(d)  # JSON numbers for the real pack


def pack_config(
    *,
    monthly_budget_usd: Any,
    region: str,
    allowed_instance_types: Sequence[str] | None = None,
    max_nodes_per_group: int | None = None,
    required_tags: Sequence[str] | None = None,
    public_ports: Sequence[int] | None = None,
    **cost: Any,
) -> dict[str, Any]:
    """A pack config (the `--policy-pack-config` shape) from the few values a stack decides."""
    spend = {"monthly_budget_usd": _json_number(monthly_budget_usd), "region": region, **cost}
    out: dict[str, Any] = {"gpu-spend-cap": dict(spend), "gpu-spend-cap-stack": dict(spend)}
    if allowed_instance_types is not None:
        out["gpu-instance-allowlist"] = {"allowed_instance_types": list(allowed_instance_types)}
    if max_nodes_per_group is not None:
        out["gpu-node-group-max-size"] = {"max_nodes_per_group": int(max_nodes_per_group)}
    if required_tags is not None:
        out["required-tags"] = {"required_tags": list(required_tags)}
    if public_ports is not None:
        out["security-group-no-world-ingress"] = {"public_ports": [int(p) for p in public_ports]}
    return out


def stack_pack_config(cfg: StackConfig) -> dict[str, Any]:
    """The pack config a stack's own config implies (what its JSON file must hold)."""
    cost: dict[str, Any] = {"scale_events_per_month": Assumptions().scale_events_per_month}
    if cfg.fleet.instance_usd_per_hour:
        cost["instance_usd_per_hour"] = {t: _json_number(usd) for t, usd in sorted(cfg.fleet.instance_usd_per_hour.items())}
    return pack_config(
        monthly_budget_usd=cfg.budget.monthly_usd,
        region=cfg.region,
        allowed_instance_types=list(cfg.fleet.instance_types),
        max_nodes_per_group=cfg.fleet.max_nodes_per_az,
        required_tags=list(REQUIRED_TAGS),
        public_ports=[LISTENER_PORT],
        **cost,
    )


def global_pack_config(stack: GlobalStack) -> dict[str, Any]:
    """The pack config of an environment's global stack (what its JSON file must hold)."""
    out = pack_config(monthly_budget_usd=stack.endpoint.budget_monthly_usd, region=ROUTE53_REGION,
                      required_tags=list(REQUIRED_TAGS))
    out["route53-record-health-check"] = {"hostnames": [stack.hostname]}
    return out


def render_pack_config(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


def config_path(stack: str, project_dir: Path | str | None = None) -> Path:
    return Path(project_dir or REPO_ROOT) / POLICIES_DIRNAME / f"config.{stack}.json"


def load_pack_config(path: Path | str) -> dict[str, Any]:
    data = read_json_file(path, "policy config", "policy pack config JSON (policies/config.<stack>.json)")
    if not isinstance(data, dict):
        raise InputError("policy config", str(path), "a JSON object keyed by policy name")
    return data


def global_config_path(environment: str, project_dir: Path | str | None = None) -> Path:
    return Path(project_dir or REPO_ROOT) / POLICIES_DIRNAME / GLOBAL_DIRNAME / f"config.{environment}.json"


def _problem(path: Path, expected: dict[str, Any], project_dir: Path | str | None, source: str) -> str | None:
    shown = path.relative_to(Path(project_dir or REPO_ROOT))
    if not path.is_file():
        return f"{shown} is missing (a real preview would run without a budget)"
    actual = load_pack_config(path)
    if actual != expected:
        changed = sorted(k for k in set(actual) | set(expected) if actual.get(k) != expected.get(k))
        return f"{shown} is out of date with {source} (differs in {', '.join(changed)})"
    return None


def pack_config_problem(stack: str, project_dir: Path | str | None = None) -> str | None:
    """Why the stack's committed pack config is not what its stack config implies, or None."""
    expected = stack_pack_config(load_stack_config(stack, Path(project_dir or REPO_ROOT)))
    return _problem(config_path(stack, project_dir), expected, project_dir, f"Pulumi.{stack}.yaml")


def config_for_global(environment: str, project_dir: Path | str | None = None) -> dict[str, Any]:
    """The pack config the global stack's real preview reads; refused (exit 2) when missing or stale."""
    path = global_config_path(environment, project_dir)
    expected = global_pack_config(resolve_global(environment, Path(project_dir or REPO_ROOT)))
    problem = _problem(path, expected, project_dir, f"stacks/{environment}.yaml")
    if problem:
        raise UserError(f"{problem}; {FIX}")
    return load_pack_config(path)


def config_for_stack(stack: str, project_dir: Path | str | None = None) -> dict[str, Any]:
    """The pack config a real `pulumi preview --policy-pack-config` reads for the stack.

    Refused (exit 2) when the file is missing or does not match the stack config, because then
    the offline verdict and the real one would differ.
    """
    problem = pack_config_problem(stack, project_dir)
    if problem:
        raise UserError(f"{problem}; {FIX}")
    return load_pack_config(config_path(stack, project_dir))
