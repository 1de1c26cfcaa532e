"""EKS control plane rules: private endpoint, secrets encryption, all control-plane logs."""
from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies._support import as_bool, get, is_unknown, listify

CLUSTER_TYPE = "aws:eks/cluster:Cluster"
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
WORLD = ("0.0.0.0/0", "::/0")


def validate_eks_endpoint_private(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The API endpoint must be private, or public only to listed CIDRs (never 0.0.0.0/0)."""
    if args.resource_type != CLUSTER_TYPE:
        return
    vpc = args.props.get("vpcConfig") or {}
    private = get(vpc, "endpointPrivateAccess")
    public = get(vpc, "endpointPublicAccess")
    if is_unknown(private) or is_unknown(public):
        return
    if as_bool(private) is not True:
        report_violation(f"EKS cluster {args.name} must enable the private API endpoint (vpcConfig.endpointPrivateAccess)")
    if public is None or as_bool(public) is True:  # the provider default is public
        cidrs = [c for c in listify(get(vpc, "publicAccessCidrs")) if isinstance(c, str)]
        if not cidrs or any(c in WORLD for c in cidrs):
            report_violation(
                f"EKS cluster {args.name} must disable the public API endpoint (vpcConfig.endpointPublicAccess: false) "
                "or restrict publicAccessCidrs to known networks (not 0.0.0.0/0)"
            )


def validate_eks_secrets_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Kubernetes secrets must be envelope-encrypted with a KMS key."""
    if args.resource_type != CLUSTER_TYPE:
        return
    configs = listify(args.props.get("encryptionConfig"))
    ok = any("secrets" in listify(get(c, "resources")) and get(c, "provider", "keyArn") for c in configs)
    if not ok:
        report_violation(f"EKS cluster {args.name} must encrypt secrets with a KMS key "
                         "(encryptionConfig: resources [secrets], provider.keyArn)")


def validate_eks_control_plane_logging(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """All five control-plane log types must be enabled."""
    if args.resource_type != CLUSTER_TYPE:
        return
    enabled = {str(t) for t in listify(args.props.get("enabledClusterLogTypes"))}
    missing = [t for t in LOG_TYPES if t not in enabled]
    if missing:
        report_violation(f"EKS cluster {args.name} must enable every control-plane log type; missing: {', '.join(missing)}")


eks_endpoint_private = ResourceValidationPolicy(
    name="eks-endpoint-private",
    description="EKS API endpoints must be private, or public only to listed CIDRs.",
    validate=validate_eks_endpoint_private,
    enforcement_level=EnforcementLevel.MANDATORY,
)
eks_secrets_encryption = ResourceValidationPolicy(
    name="eks-secrets-encryption",
    description="EKS secrets must be envelope-encrypted with KMS.",
    validate=validate_eks_secrets_encryption,
    enforcement_level=EnforcementLevel.MANDATORY,
)
eks_control_plane_logging = ResourceValidationPolicy(
    name="eks-control-plane-logging",
    description="EKS clusters must enable all five control-plane log types.",
    validate=validate_eks_control_plane_logging,
    enforcement_level=EnforcementLevel.MANDATORY,
)

POLICIES = [eks_endpoint_private, eks_secrets_encryption, eks_control_plane_logging]
