"""DNS rule: every Route 53 record of the global hostname is health-checked.

A name answered by several records (one per region: latency-based, weighted, failover, geo; they
carry a `setIdentifier`) fails over only if Route 53 can tell a region is down: a record without a
health check counts as healthy forever, so clients keep being sent to a region whose /health fails
(Route 53 developer guide, "How Amazon Route 53 chooses records when health checking is
configured"). An alias record's `evaluateTargetHealth` is no substitute: it sees the NLB's targets
(Envoy answering TCP), not the engines behind them. The pack config may name `hostnames` (the
global stack's config names its hostname) whose records are checked even without a set identifier.
"""
from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from infra.core.graph import ROUTE53_RECORD
from policies._support import config_with_defaults, is_unknown, listify

HOSTNAME_PROPERTIES = {
    "hostnames": {"type": "array", "items": {"type": "string"}, "default": [],
                  "description": "DNS names every record of which must carry a health check (the global hostname)."},
}


def validate_route53_record_health_check(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Records of a name several regions answer (or of a configured hostname) must have a health check."""
    if args.resource_type != ROUTE53_RECORD:
        return
    cfg = config_with_defaults(HOSTNAME_PROPERTIES, args.get_config())
    name = str(args.props.get("name") or "").rstrip(".").lower()
    identifier = args.props.get("setIdentifier")
    watched = {str(h).rstrip(".").lower() for h in listify(cfg.get("hostnames"))}
    if not identifier and name not in watched:
        return
    check = args.props.get("healthCheckId")
    if is_unknown(check) or (isinstance(check, str) and check.strip()):
        return
    who = f"{name} ({identifier})" if identifier else name
    report_violation(f"Route 53 record {who} must have a health check (healthCheckId): without one Route 53 keeps "
                     "answering with its region when its /health fails")


route53_record_health_check = ResourceValidationPolicy(
    name="route53-record-health-check",
    description="Route 53 records of a name several regions answer (the global hostname) must have a health check.",
    validate=validate_route53_record_health_check,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=HOSTNAME_PROPERTIES),
)

POLICIES = [route53_record_health_check]
