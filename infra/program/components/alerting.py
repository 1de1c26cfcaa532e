"""AlertPublisher: the role Alertmanager publishes to its SNS receivers with, bound through EKS
Pod Identity to Alertmanager's service account (IAM stays in the base; the in-cluster side is
infra/program/serving/observability.py). It may publish to the configured topics only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws

from infra.program.components.common import AwsContext, merge_tags, policy_json
from infra.program.components.weight_store import pod_identity_trust_policy


def publish_policy(topic_arns: tuple[str, ...]) -> str:
    return policy_json([{"Sid": "PublishAlerts", "Effect": "Allow", "Action": ["sns:Publish"],
                         "Resource": sorted(topic_arns)}])


@dataclass(frozen=True)
class AlertPublisherArgs:
    aws: AwsContext
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    namespace: str
    service_account: str
    topic_arns: tuple[str, ...]  # llm-fleet:observability.alert_receivers of kind sns
    tags: Mapping[str, str] = field(default_factory=dict)


class AlertPublisher(pulumi.ComponentResource):
    role: aws.iam.Role

    def __init__(self, name: str, args: AlertPublisherArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:alerts:AlertPublisher", name, None, opts)
        if not args.topic_arns:
            raise ValueError("an alert publisher needs at least one SNS topic")
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.aws
        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"Alertmanager SNS receivers ({args.namespace}/{args.service_account}, EKS Pod Identity)",
            assume_role_policy=pulumi.Output.from_input(args.cluster_arn).apply(
                lambda arn: pod_identity_trust_policy(ctx.account_id, arn, ctx.dns_suffix)),
            max_session_duration=3600,
            tags=merge_tags(args.tags, Name=f"{name}-alertmanager"),
            opts=child,
        )
        aws.iam.RolePolicy(f"{name}-policy", role=self.role.id, policy=publish_policy(args.topic_arns), opts=child)
        self.association = aws.eks.PodIdentityAssociation(
            f"{name}-alertmanager", cluster_name=args.cluster_name, namespace=args.namespace,
            service_account=args.service_account, role_arn=self.role.arn, tags=args.tags,
            # One association per namespace/service account: a replacement deletes the old first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"role_arn": self.role.arn, "topics": list(args.topic_arns)})
