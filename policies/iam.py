"""IAM rules: no `*` action, no `*:*` admin, no `*` resource on actions that can be scoped,
trust policies pinned (IRSA to one service account and audience, Pod Identity to the account
and cluster)."""
from __future__ import annotations

import fnmatch
from typing import Any, Iterator, Mapping

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies._support import (
    actions_of,
    condition_values,
    federated_principals,
    is_unknown,
    listify,
    principal_services,
    resources_of,
    statements,
)

ROLE_TYPE = "aws:iam/role:Role"
POLICY_DOC_TYPES = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}

# Actions that take no resource-level permissions (Resource must be "*"): reads that list or
# describe, token and identity calls, metric puts. Anything else is restrictable and must name
# its resources (CKV_AWS_355's intent; the full AWS list is longer, this errs on flagging).
NON_RESTRICTABLE = (
    "*:Describe*", "*:List*", "ecr:GetAuthorizationToken", "sts:GetCallerIdentity", "sts:GetSessionToken",
    "cloudwatch:PutMetricData", "cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "logs:CreateLogGroup",
    "ec2:CreateTags", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses", "ec2:AttachNetworkInterface", "ec2:DetachNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute", "pricing:GetProducts", "servicequotas:GetServiceQuota",
    "elasticloadbalancing:Describe*", "autoscaling:Describe*", "eks:DescribeAddonVersions", "s3:ListAllMyBuckets",
    "kms:CreateKey", "iam:ListPolicies", "tag:GetResources", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
)


def _documents(args: ResourceValidationArgs) -> Iterator[tuple[str, Any]]:
    """(label, policy document) of every permissions policy a resource declares."""
    if args.resource_type in POLICY_DOC_TYPES:
        yield args.name, args.props.get(POLICY_DOC_TYPES[args.resource_type])
    elif args.resource_type == ROLE_TYPE:
        for p in listify(args.props.get("inlinePolicies")):
            if isinstance(p, Mapping):
                yield f"{args.name}/{p.get('name') or 'inline'}", p.get("policy")


def _allows(document: Any) -> Iterator[Mapping[str, Any]]:
    for st in statements(document):
        if st.get("Effect", "Allow") == "Allow":
            yield st


def validate_iam_no_wildcard_action(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Allow statements must not grant the `*` action (or use NotAction)."""
    for label, doc in _documents(args):
        for st in _allows(doc):
            if "*" in actions_of(st) or "NotAction" in st:
                report_violation(f"IAM policy {label} must list its actions; it allows "
                                 + ("NotAction" if "NotAction" in st else '"*"'))
                break


def validate_iam_no_admin_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Allow statements must not grant `*` on `*` (full administrator)."""
    for label, doc in _documents(args):
        for st in _allows(doc):
            if any(a in ("*", "*:*") for a in actions_of(st)) and "*" in resources_of(st):
                report_violation(f"IAM policy {label} must not grant full admin (Action \"*\" on Resource \"*\")")
                break


def _restrictable(action: str) -> bool:
    service, _, verb = action.partition(":")
    for pattern in NON_RESTRICTABLE:
        p_service, _, p_verb = pattern.partition(":")
        if fnmatch.fnmatchcase(service, p_service) and fnmatch.fnmatchcase(verb, p_verb):
            return False
    return True


def validate_iam_no_wildcard_resource(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Actions that support resource-level permissions must name resources, not `*`."""
    for label, doc in _documents(args):
        for st in _allows(doc):
            if "*" not in resources_of(st):
                continue
            scoped = [a for a in actions_of(st) if a not in ("*", "*:*") and _restrictable(a)]
            if scoped:
                report_violation(f"IAM policy {label} must scope {', '.join(sorted(set(scoped))[:5])} to named resources "
                                 "(Resource \"*\")")
                break


def _wild(values: list[str]) -> bool:
    return any("*" in v or "?" in v for v in values)


def validate_iam_trust_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Role trust must be pinned: IRSA to one service account `sub` and the STS `aud`; EKS Pod
    Identity to the account/cluster; never to any principal without conditions."""
    if args.resource_type != ROLE_TYPE:
        return
    doc = args.props.get("assumeRolePolicy")
    if is_unknown(doc):
        return
    for st in _allows(doc):
        actions = actions_of(st)
        principal = st.get("Principal")
        if (principal == "*" or (isinstance(principal, Mapping) and "*" in listify(principal.get("AWS")))) and not st.get("Condition"):
            report_violation(f"role {args.name} must not be assumable by any principal without conditions")
            continue
        if "sts:AssumeRoleWithWebIdentity" in actions and any("oidc" in f for f in federated_principals(st)):
            subs = condition_values(st, ("StringEquals",), ":sub")
            auds = condition_values(st, ("StringEquals",), ":aud")
            like = condition_values(st, ("StringLike",), ":sub")
            if not subs or _wild(subs) or like:
                report_violation(f"role {args.name} must pin its IRSA trust to a service account "
                                 "(StringEquals <issuer>:sub system:serviceaccount:<ns>:<name>, no wildcards)")
            if auds != ["sts.amazonaws.com"]:
                report_violation(f"role {args.name} must pin its IRSA trust audience (StringEquals <issuer>:aud sts.amazonaws.com)")
        if any(s.startswith("pods.eks.") for s in principal_services(st)):
            extra = [a for a in actions if a not in ("sts:AssumeRole", "sts:TagSession")]
            pinned = condition_values(st, ("StringEquals", "ArnEquals", "ArnLike"), "aws:SourceAccount") + \
                condition_values(st, ("StringEquals", "ArnEquals", "ArnLike"), "aws:SourceArn")
            if extra:
                report_violation(f"role {args.name} must grant EKS Pod Identity only sts:AssumeRole and sts:TagSession")
            if not pinned:
                report_violation(f"role {args.name} must pin its EKS Pod Identity trust with aws:SourceAccount or "
                                 "aws:SourceArn (the cluster)")


iam_no_wildcard_action = ResourceValidationPolicy(
    name="iam-no-wildcard-action",
    description='IAM policies must not allow the "*" action.',
    validate=validate_iam_no_wildcard_action,
    enforcement_level=EnforcementLevel.MANDATORY,
)
iam_no_admin_access = ResourceValidationPolicy(
    name="iam-no-admin-access",
    description='IAM policies must not allow "*" on "*".',
    validate=validate_iam_no_admin_access,
    enforcement_level=EnforcementLevel.MANDATORY,
)
iam_no_wildcard_resource = ResourceValidationPolicy(
    name="iam-no-wildcard-resource",
    description='Restrictable IAM actions must not apply to Resource "*".',
    validate=validate_iam_no_wildcard_resource,
    enforcement_level=EnforcementLevel.MANDATORY,
)
iam_trust_pinned = ResourceValidationPolicy(
    name="iam-trust-pinned",
    description="IRSA and Pod Identity trust policies must be pinned to their service account, audience or cluster.",
    validate=validate_iam_trust_pinned,
    enforcement_level=EnforcementLevel.MANDATORY,
)
POLICIES = [iam_no_wildcard_action, iam_no_admin_access, iam_no_wildcard_resource, iam_trust_pinned]
