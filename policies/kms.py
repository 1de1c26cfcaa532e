"""KMS rule: symmetric customer managed keys rotate."""
from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies._support import as_bool, is_unknown

KMS_KEY_TYPE = "aws:kms/key:Key"


def validate_kms_key_rotation(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Symmetric KMS keys must rotate."""
    if args.resource_type != KMS_KEY_TYPE:
        return
    spec = args.props.get("customerMasterKeySpec") or args.props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec != "SYMMETRIC_DEFAULT":
        return
    value = args.props.get("enableKeyRotation")
    if not is_unknown(value) and as_bool(value) is not True:
        report_violation(f"KMS key {args.name} must enable automatic key rotation (enableKeyRotation: true)")


kms_key_rotation = ResourceValidationPolicy(
    name="kms-key-rotation",
    description="Symmetric KMS keys must enable automatic rotation.",
    validate=validate_kms_key_rotation,
    enforcement_level=EnforcementLevel.MANDATORY,
)

POLICIES = [kms_key_rotation]
