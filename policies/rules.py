"""The pack's rules in the pack's order, and the scanner check each one mirrors."""
from policies import compute, dns, eks, iam, kms, network, spend, storage

POLICIES = [
    *spend.POLICIES,
    *storage.POLICIES,
    *eks.POLICIES,
    *compute.POLICIES,
    *network.POLICIES,
    *iam.POLICIES,
    *kms.POLICIES,
    *dns.POLICIES,
]

# Rule -> the scanner check(s) it mirrors (Checkov ids; KICS/CIS where Checkov has none).
MIRRORS: dict[str, str] = {
    "gpu-spend-cap": "none (FinOps; infracost-style budget guard)",
    "gpu-spend-cap-stack": "none (FinOps; infracost-style budget guard)",
    "gpu-instance-allowlist": "none (FinOps allowlist)",
    "gpu-node-group-max-size": "none (FinOps ceiling)",
    "required-tags": "none (tagging policy; cf. AWS Config required-tags)",
    "s3-bucket-encryption": "CKV_AWS_19, CKV_AWS_145 (KMS)",
    "s3-bucket-versioning": "CKV_AWS_21",
    "s3-public-access-block": "CKV2_AWS_6, CKV_AWS_53, CKV_AWS_54, CKV_AWS_55, CKV_AWS_56",
    "s3-tls-only": "KICS 4bc4dd4c-7d8d-405e-a0fb-57fa4c31b4d9, CIS AWS 2.1.1, AWS Config s3-bucket-ssl-requests-only",
    "s3-bucket-controls": "CKV_AWS_19, CKV_AWS_21, CKV2_AWS_6 (presence on every bucket)",
    "eks-endpoint-private": "CKV_AWS_39, CKV_AWS_38",
    "eks-secrets-encryption": "CKV_AWS_58",
    "eks-control-plane-logging": "CKV_AWS_37",
    "launch-template-imdsv2": "CKV_AWS_79",
    "launch-template-hop-limit": "CKV_AWS_341",
    "launch-template-encrypted-volumes": "CKV_AWS_3 (EBS; no scanner checks launch-template devices)",
    "launch-template-no-public-ip": "CKV_AWS_88",
    "launch-template-no-user-data-secrets": "CKV_AWS_46",
    "security-group-no-world-ingress": "CKV_AWS_24, CKV_AWS_277 (and CKV_AWS_25, CKV_AWS_260)",
    "iam-no-wildcard-action": "CKV_AWS_63",
    "iam-no-admin-access": "CKV_AWS_62",
    "iam-no-wildcard-resource": "CKV_AWS_355",
    "iam-trust-pinned": "none (EKS best-practices guide: IRSA/Pod Identity trust scoping)",
    "kms-key-rotation": "CKV_AWS_7",
    "route53-record-health-check": "none (Route 53 developer guide: DNS failover needs health checks on every record)",
}
