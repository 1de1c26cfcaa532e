"""llm-fleet CrossGuard policy pack: the rules, importable without starting the policy server.

`POLICIES` is the pack (policies/__main__.py hands it to `PolicyPack`, which serves it to
`pulumi preview --policy-pack policies`); `evaluate()` runs the same rule functions offline
over the offline plan's resources or a preview digest. One function per rule, kebab-case
names, messages phrased "X must Y". `MIRRORS` names the scanner check each rule follows.
"""
from policies.rules import MIRRORS, POLICIES
from policies.config import (
    config_for_global,
    config_for_stack,
    config_path,
    global_config_path,
    global_pack_config,
    load_pack_config,
    pack_config,
    stack_pack_config,
)
from policies.offline import (
    PlanCheck,
    Violation,
    check_plan,
    evaluate,
    has_mandatory,
    policy_config,
    render_violations,
    verdict_dict,
)

__all__ = [
    "MIRRORS", "POLICIES", "PlanCheck", "Violation", "check_plan", "config_for_global", "config_for_stack",
    "config_path", "evaluate", "global_config_path", "global_pack_config",
    "has_mandatory", "load_pack_config", "pack_config", "policy_config", "render_violations", "stack_pack_config",
    "verdict_dict",
]
