"""Launch template rules: IMDSv2 only, hop limit 1, encrypted volumes, no public IP, no
credentials in user data."""
from __future__ import annotations

import base64
import binascii
import re

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies._support import as_bool, as_int, get, is_unknown, listify

LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
# AWS access key ids and the usual secret variable names (what CKV_AWS_46 looks for).
_SECRET_RE = re.compile(
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b|aws_secret_access_key\s*[=:]|AWS_SECRET_ACCESS_KEY\s*[=:]", re.IGNORECASE
)


def _is_lt(args: ResourceValidationArgs) -> bool:
    return args.resource_type == LAUNCH_TEMPLATE_TYPE


def validate_launch_template_imdsv2(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Instance metadata must require session tokens (IMDSv2), unless IMDS is disabled."""
    if not _is_lt(args):
        return
    meta = args.props.get("metadataOptions") or {}
    if get(meta, "httpEndpoint") == "disabled":
        return
    tokens = get(meta, "httpTokens")
    if not is_unknown(tokens) and tokens != "required":
        report_violation(f"launch template {args.name} must require IMDSv2 (metadataOptions.httpTokens: required)")


def validate_launch_template_hop_limit(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The IMDS PUT hop limit must be 1, set explicitly (EKS managed node groups default to 2)."""
    if not _is_lt(args):
        return
    meta = args.props.get("metadataOptions") or {}
    if get(meta, "httpEndpoint") == "disabled":
        return
    raw = get(meta, "httpPutResponseHopLimit")
    if is_unknown(raw):
        return
    if as_int(raw) != 1:
        report_violation(
            f"launch template {args.name} must set metadataOptions.httpPutResponseHopLimit to 1 "
            f"(it is {raw if raw is not None else 'unset'}; pods must not reach node credentials)"
        )


def validate_launch_template_encrypted_volumes(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every EBS block device of a launch template must be encrypted."""
    if not _is_lt(args):
        return
    bad = []
    for bdm in listify(args.props.get("blockDeviceMappings")):
        ebs = get(bdm, "ebs")
        if ebs is None:
            continue
        enc = get(ebs, "encrypted")
        if not is_unknown(enc) and as_bool(enc) is not True:
            bad.append(str(get(bdm, "deviceName") or "?"))
    if bad:
        report_violation(f"launch template {args.name} must encrypt every EBS volume; unencrypted: {', '.join(bad)}")


def validate_launch_template_no_public_ip(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Network interfaces of a launch template must not get a public IP."""
    if not _is_lt(args):
        return
    for ni in listify(args.props.get("networkInterfaces")):
        value = get(ni, "associatePublicIpAddress")
        if not is_unknown(value) and as_bool(value) is True:
            report_violation(f"launch template {args.name} must not associate a public IP address with its interfaces")
            return


def validate_launch_template_no_user_data_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """User data must not carry AWS credentials."""
    if not _is_lt(args):
        return
    raw = args.props.get("userData")
    if not isinstance(raw, str) or is_unknown(raw) or not raw:
        return
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        text = raw
    if _SECRET_RE.search(text):
        report_violation(f"launch template {args.name} must not put AWS credentials in user data; use the node role")


launch_template_imdsv2 = ResourceValidationPolicy(
    name="launch-template-imdsv2",
    description="Launch templates must require IMDSv2.",
    validate=validate_launch_template_imdsv2,
    enforcement_level=EnforcementLevel.MANDATORY,
)
launch_template_hop_limit = ResourceValidationPolicy(
    name="launch-template-hop-limit",
    description="Launch templates must set the IMDS hop limit to 1.",
    validate=validate_launch_template_hop_limit,
    enforcement_level=EnforcementLevel.MANDATORY,
)
launch_template_encrypted_volumes = ResourceValidationPolicy(
    name="launch-template-encrypted-volumes",
    description="Launch template EBS volumes must be encrypted.",
    validate=validate_launch_template_encrypted_volumes,
    enforcement_level=EnforcementLevel.MANDATORY,
)
launch_template_no_public_ip = ResourceValidationPolicy(
    name="launch-template-no-public-ip",
    description="Launch template network interfaces must not get public IPs.",
    validate=validate_launch_template_no_public_ip,
    enforcement_level=EnforcementLevel.MANDATORY,
)
launch_template_no_user_data_secrets = ResourceValidationPolicy(
    name="launch-template-no-user-data-secrets",
    description="Launch template user data must not contain AWS credentials.",
    validate=validate_launch_template_no_user_data_secrets,
    enforcement_level=EnforcementLevel.MANDATORY,
)

POLICIES = [launch_template_imdsv2, launch_template_hop_limit, launch_template_encrypted_volumes,
            launch_template_no_public_ip, launch_template_no_user_data_secrets]
