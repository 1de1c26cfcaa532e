"""Security group rule: no ingress from the whole internet, except the documented public
listener (TCP 443 by default, `public_ports` in config)."""
from __future__ import annotations

from typing import Any, Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from infra.core.config import LISTENER_PORT
from policies._support import as_int, config_with_defaults, is_unknown, listify

SG_TYPE = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE_TYPE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LEGACY_RULE_TYPE = "aws:ec2/securityGroupRule:SecurityGroupRule"
WORLD = ("0.0.0.0/0", "::/0")

SG_PROPERTIES: dict[str, dict[str, Any]] = {
    "public_ports": {"type": "array", "items": {"type": "integer"}, "default": [LISTENER_PORT],
                     "description": "TCP ports that may be open to 0.0.0.0/0 (the documented public listener)."},
}


def _open_to_world(cidrs: list[Any]) -> list[str]:
    return [c for c in cidrs if isinstance(c, str) and c in WORLD]


def _rule_problem(proto: Any, from_port: Any, to_port: Any, allowed: set[int]) -> str | None:
    proto = str(proto).lower() if proto is not None else "tcp"
    if proto in ("-1", "all"):
        return "all protocols and ports"
    lo, hi = as_int(from_port), as_int(to_port)
    if lo is None or hi is None:
        return "an unspecified port range"
    if proto in ("tcp", "6") and lo == hi and lo in allowed:
        return None
    return f"{proto} {lo}-{hi}" if lo != hi else f"{proto} {lo}"


def _rules(args: ResourceValidationArgs) -> list[tuple[list[str], Any, Any, Any]]:
    """(world CIDRs, protocol, fromPort, toPort) of every ingress rule the resource declares."""
    p = args.props
    if args.resource_type == SG_TYPE:
        out = []
        for rule in listify(p.get("ingress")):
            if isinstance(rule, Mapping):
                cidrs = listify(rule.get("cidrBlocks")) + listify(rule.get("ipv6CidrBlocks"))
                out.append((_open_to_world(cidrs), rule.get("protocol"), rule.get("fromPort"), rule.get("toPort")))
        return out
    if args.resource_type == INGRESS_RULE_TYPE:
        cidrs = [p.get("cidrIpv4"), p.get("cidrIpv6")]
        return [(_open_to_world(cidrs), p.get("ipProtocol"), p.get("fromPort"), p.get("toPort"))]
    if args.resource_type == LEGACY_RULE_TYPE and p.get("type") == "ingress":
        cidrs = listify(p.get("cidrBlocks")) + listify(p.get("ipv6CidrBlocks"))
        return [(_open_to_world(cidrs), p.get("protocol"), p.get("fromPort"), p.get("toPort"))]
    return []


def validate_security_group_no_world_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Ingress from 0.0.0.0/0 or ::/0 is allowed only on the documented public TCP ports."""
    cfg = config_with_defaults(SG_PROPERTIES, args.get_config())
    allowed = {int(x) for x in listify(cfg.get("public_ports")) if as_int(x) is not None}
    for world, proto, lo, hi in _rules(args):
        if not world or any(is_unknown(v) for v in (proto, lo, hi)):
            continue
        problem = _rule_problem(proto, lo, hi, allowed)
        if problem:
            report_violation(
                f"{args.name} must not open {problem} to {', '.join(world)}; only TCP "
                f"{', '.join(str(x) for x in sorted(allowed)) or '(none)'} may face the internet"
            )


security_group_no_world_ingress = ResourceValidationPolicy(
    name="security-group-no-world-ingress",
    description="Security groups must not admit the internet except on the documented public TCP listener.",
    validate=validate_security_group_no_world_ingress,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=SG_PROPERTIES),
)

POLICIES = [security_group_no_world_ingress]
