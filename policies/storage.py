"""S3 rules. pulumi-aws 7 splits a bucket into companion resources (encryption, versioning,
public access block, policy): each companion is checked where it is declared (resource rules,
which also run in `pulumi preview`), and `s3-bucket-controls` checks on the stack that every
bucket has all four (stack rules run at `pulumi up` and in the offline plan).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies._support import actions_of, as_bool, get, is_unknown, listify, mapping, statements

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING_TYPES = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PAB_TYPES = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
POLICY_TYPES = ("aws:s3/bucketPolicy:BucketPolicy",)
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _sse_rules_ok(rules: Iterable[Any]) -> bool | None:
    """True: every rule is SSE-KMS; False: some is not (or none); None: unknown."""
    rules = [r for r in rules if isinstance(r, Mapping)]
    if not rules:
        return False
    for rule in rules:
        algo = get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if is_unknown(algo):
            return None
        if algo not in KMS_ALGORITHMS:
            return False
    return True


def _inline_sse(bucket_props: Mapping[str, Any]) -> list:
    inline = bucket_props.get("serverSideEncryptionConfiguration")
    return listify(get(inline, "rule")) if isinstance(inline, Mapping) else []


def validate_s3_bucket_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Bucket encryption configurations must use SSE-KMS."""
    if args.resource_type in SSE_TYPES:
        rules = listify(args.props.get("rules"))
    elif args.resource_type in BUCKET_TYPES and args.props.get("serverSideEncryptionConfiguration") is not None:
        rules = _inline_sse(args.props)
    else:
        return
    if _sse_rules_ok(rules) is False:
        report_violation(f"{args.name} must encrypt objects with SSE-KMS (sseAlgorithm aws:kms or aws:kms:dsse)")


def _versioning_enabled(props: Mapping[str, Any], bucket_inline: bool = False) -> bool | None:
    status = get(props, "versioning", "enabled") if bucket_inline else get(props, "versioningConfiguration", "status")
    if is_unknown(status):
        return None
    return status is True or status == "Enabled"


def validate_s3_bucket_versioning(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Bucket versioning must be Enabled (weights can be restored; deletes leave markers)."""
    if args.resource_type in VERSIONING_TYPES:
        ok = _versioning_enabled(args.props)
    elif args.resource_type in BUCKET_TYPES and args.props.get("versioning") is not None:
        ok = _versioning_enabled(args.props, bucket_inline=True)
    else:
        return
    if ok is False:
        report_violation(f"{args.name} must enable versioning (status Enabled)")


def _pab_missing(props: Mapping[str, Any]) -> list[str]:
    return [f for f in PAB_FLAGS if not is_unknown(props.get(f)) and as_bool(props.get(f)) is not True]


def validate_s3_public_access_block(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Public access blocks must set all four flags."""
    if args.resource_type not in PAB_TYPES:
        return
    missing = _pab_missing(args.props)
    if missing:
        report_violation(f"{args.name} must block all public access; not true: {', '.join(missing)}")


def _denies_insecure_transport(policy: Any) -> bool | None:
    if is_unknown(policy):
        return None
    for st in statements(policy):
        if st.get("Effect") != "Deny":
            continue
        principal = st.get("Principal")
        if not (principal == "*" or get(principal, "AWS") == "*" or listify(get(principal, "AWS")) == ["*"]):
            continue
        if not any(a in ("*", "s3:*") for a in actions_of(st)):
            continue
        value = get(st, "Condition", "Bool", "aws:SecureTransport")
        if value is False or str(value).lower() == "false":
            return True
    return False


def validate_s3_tls_only(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Bucket policies must deny every request not made over TLS (aws:SecureTransport false)."""
    if args.resource_type in POLICY_TYPES:
        policy = args.props.get("policy")
    elif args.resource_type in BUCKET_TYPES and args.props.get("policy") is not None:
        policy = args.props.get("policy")
    else:
        return
    if _denies_insecure_transport(policy) is False:
        report_violation(f"{args.name} must deny s3:* to every principal when aws:SecureTransport is false")


def _bucket_keys(bucket: Any) -> set[str]:
    props = mapping(getattr(bucket, "props", {}))
    keys = {str(bucket.name), str(bucket.urn)}
    name = props.get("bucket")
    if isinstance(name, str) and not is_unknown(name):
        keys.add(name)
    return keys


def validate_s3_bucket_controls(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every bucket must have an SSE-KMS configuration, versioning, a public access block and a TLS-only policy."""
    buckets = [r for r in args.resources if r.resource_type in BUCKET_TYPES]
    if not buckets:
        return
    companions: dict[str, list[Any]] = {"encryption": [], "versioning": [], "public access block": [], "TLS-only policy": []}
    kinds = {SSE_TYPES: "encryption", VERSIONING_TYPES: "versioning", PAB_TYPES: "public access block",
             POLICY_TYPES: "TLS-only policy"}
    for r in args.resources:
        for types, kind in kinds.items():
            if r.resource_type in types:
                companions[kind].append(r)

    def attached(bucket: Any, companion: Any) -> bool:
        deps = getattr(companion, "property_dependencies", {}) or {}
        if any(getattr(d, "urn", None) == bucket.urn for d in deps.get("bucket", [])):
            return True
        ref = mapping(companion.props).get("bucket")
        if isinstance(ref, str) and not is_unknown(ref) and ref in _bucket_keys(bucket):
            return True
        # An unknown reference under the same parent as a lone bucket: the component's own.
        siblings = [b for b in buckets if getattr(b.parent, "urn", None) == getattr(companion.parent, "urn", None)]
        return is_unknown(ref) and len(siblings) == 1 and siblings[0] is bucket

    for bucket in buckets:
        props = mapping(bucket.props)
        missing = []
        for kind, items in companions.items():
            mine = [c for c in items if attached(bucket, c)]
            if kind == "encryption":
                ok = any(_sse_rules_ok(listify(c.props.get("rules"))) is not False for c in mine) or (
                    props.get("serverSideEncryptionConfiguration") is not None and _sse_rules_ok(_inline_sse(props)))
            elif kind == "versioning":
                ok = any(_versioning_enabled(c.props) is not False for c in mine) or (
                    props.get("versioning") is not None and _versioning_enabled(props, bucket_inline=True) is not False)
            elif kind == "public access block":
                ok = any(not _pab_missing(c.props) for c in mine)
            else:
                ok = any(_denies_insecure_transport(c.props.get("policy")) is not False for c in mine) or (
                    props.get("policy") is not None and _denies_insecure_transport(props.get("policy")) is not False)
            if not ok:
                missing.append(kind)
        if missing:
            report_violation(f"bucket {bucket.name} must have {', '.join(missing)} (compliant companion resources)", bucket.urn)


s3_bucket_encryption = ResourceValidationPolicy(
    name="s3-bucket-encryption",
    description="S3 bucket encryption must be SSE-KMS.",
    validate=validate_s3_bucket_encryption,
    enforcement_level=EnforcementLevel.MANDATORY,
)
s3_bucket_versioning = ResourceValidationPolicy(
    name="s3-bucket-versioning",
    description="S3 bucket versioning must be Enabled.",
    validate=validate_s3_bucket_versioning,
    enforcement_level=EnforcementLevel.MANDATORY,
)
s3_public_access_block = ResourceValidationPolicy(
    name="s3-public-access-block",
    description="S3 public access blocks must set all four flags.",
    validate=validate_s3_public_access_block,
    enforcement_level=EnforcementLevel.MANDATORY,
)
s3_tls_only = ResourceValidationPolicy(
    name="s3-tls-only",
    description="S3 bucket policies must deny requests without TLS.",
    validate=validate_s3_tls_only,
    enforcement_level=EnforcementLevel.MANDATORY,
)
s3_bucket_controls = StackValidationPolicy(
    name="s3-bucket-controls",
    description="Every S3 bucket must have SSE-KMS, versioning, a public access block and a TLS-only policy.",
    validate=validate_s3_bucket_controls,
    enforcement_level=EnforcementLevel.MANDATORY,
)

POLICIES = [s3_bucket_encryption, s3_bucket_versioning, s3_public_access_block, s3_tls_only, s3_bucket_controls]
