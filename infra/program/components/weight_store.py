"""WeightStore: the S3 bucket model weights live in, and the one role allowed to read them.

Bucket: SSE-KMS with a dedicated customer-managed key and S3 Bucket Keys, versioning, all four
public-access blocks, ACLs disabled (bucket-owner-enforced), a policy that refuses non-TLS and
pre-TLS-1.2 requests, and a lifecycle that expires overwritten versions and revisions marked
retired (the weights tool tags a revision's objects `llm-fleet:revision-state=retired`).

Reader: an IAM role assumable only by EKS Pod Identity for this cluster (trust pinned with
`aws:SourceAccount` and `aws:SourceArn`), bound by a PodIdentityAssociation to exactly one
namespace/service account, whose permissions additionally require the Pod Identity session tags
of that namespace and service account. It can list and read `models/*` and decrypt through S3
only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws

from infra.program.components.common import AwsContext, merge_tags, policy_json

MODELS_PREFIX = "models/"
RETIRED_TAG = ("llm-fleet:revision-state", "retired")


def bucket_policy_document(bucket_arn: str) -> str:
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return policy_json(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyOutdatedTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
            },
        ]
    )


def reader_policy_document(
    bucket_arn: str, key_arn: str, region: str, namespace: str, service_account: str,
    dns_suffix: str = "amazonaws.com",
) -> str:
    session = {
        "aws:PrincipalTag/kubernetes-namespace": namespace,
        "aws:PrincipalTag/kubernetes-service-account": service_account,
    }
    return policy_json(
        [
            {
                "Sid": "ListModels",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}, "StringEquals": session},
            },
            {
                "Sid": "ReadModels",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"],
                "Resource": [f"{bucket_arn}/{MODELS_PREFIX}*"],
                "Condition": {"StringEquals": session},
            },
            {
                "Sid": "DecryptThroughS3",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": [key_arn],
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.{dns_suffix}", **session}},
            },
        ]
    )


def pod_identity_trust_policy(account_id: str, cluster_arn: str, dns_suffix: str = "amazonaws.com") -> str:
    return policy_json(
        [
            {
                "Sid": "EksPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": f"pods.eks.{dns_suffix}"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnEquals": {"aws:SourceArn": cluster_arn},
                },
            }
        ]
    )


@dataclass(frozen=True)
class WeightStoreArgs:
    bucket_name: str
    aws: AwsContext
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    namespace: str
    service_account: str
    # From llm-fleet:weights (infra/core/config.py WeightsConfig holds the defaults).
    noncurrent_version_expiration_days: int
    retired_revision_expiration_days: int
    abort_incomplete_upload_days: int = 7
    tags: Mapping[str, str] = field(default_factory=dict)


class WeightStore(pulumi.ComponentResource):
    """S3 weight bucket + KMS key + read-only hydrator role bound to one service account."""

    bucket: aws.s3.Bucket
    key: aws.kms.Key
    reader_role: aws.iam.Role

    def __init__(self, name: str, args: WeightStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:weights:WeightStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx, tags = args.aws, args.tags

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"SSE-KMS for model weights in {args.bucket_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=merge_tags(tags, Name=f"{args.bucket_name}"),
            opts=child,
        )
        # Fixed names are released before a replacement takes them; the bucket's delete refuses
        # while it holds weights (force_destroy false), so a replacement never loses them.
        fixed = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{args.bucket_name}", target_key_id=self.key.key_id, opts=fixed)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=args.bucket_name,
            force_destroy=False,
            tags=merge_tags(tags, Name=args.bucket_name),
            opts=fixed,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_expiration_days},
                    "expiration": {"expired_object_delete_marker": True},
                },
                {
                    "id": "expire-retired-revisions",
                    "status": "Enabled",
                    "filter": {"tag": {"key": RETIRED_TAG[0], "value": RETIRED_TAG[1]}},
                    "expiration": {"days": args.retired_revision_expiration_days},
                },
                {
                    "id": "abort-incomplete-multipart-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": args.abort_incomplete_upload_days},
                },
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(bucket_policy_document),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )

        self.reader_role = aws.iam.Role(
            f"{name}-reader-role",
            description=f"Read-only weights for {args.namespace}/{args.service_account} (EKS Pod Identity)",
            assume_role_policy=pulumi.Output.from_input(args.cluster_arn).apply(
                lambda arn: pod_identity_trust_policy(ctx.account_id, arn, ctx.dns_suffix)
            ),
            max_session_duration=3600,
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-reader-policy",
            role=self.reader_role.id,
            policy=pulumi.Output.all(self.bucket.arn, self.key.arn).apply(
                lambda v: reader_policy_document(
                    v[0], v[1], ctx.region, args.namespace, args.service_account, ctx.dns_suffix
                )
            ),
            opts=child,
        )
        self.association = aws.eks.PodIdentityAssociation(
            f"{name}-reader",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=args.service_account,
            role_arn=self.reader_role.arn,
            tags=tags,
            # One association per namespace/service account: a replacement deletes the old first.
            opts=fixed,
        )

        self.register_outputs(
            {
                "bucket": self.bucket.bucket,
                "bucket_arn": self.bucket.arn,
                "key_arn": self.key.arn,
                "reader_role_arn": self.reader_role.arn,
                "service_account": f"{args.namespace}/{args.service_account}",
            }
        )
