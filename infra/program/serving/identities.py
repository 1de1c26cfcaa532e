"""AWS identities of in-cluster workloads, registered by the base project.

The workloads project runs in the in-VPC deployer, whose role may not create IAM roles or Pod
Identity associations (least privilege: issue 12), so every AWS identity a chart's service
account assumes is made here, in the base, and exists before the chart is installed. Today
that is the Cluster Autoscaler's: a role trusted by EKS Pod Identity for this cluster only
(`aws:SourceAccount`, `aws:SourceArn`), the scoped policy of `autoscaling.autoscaler_policy`,
and the association binding it to the chart's service account.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws

from infra.program.components.common import AwsContext, merge_tags
from infra.program.components.weight_store import pod_identity_trust_policy
from infra.program.serving.autoscaling import autoscaler_policy


@dataclass(frozen=True)
class ClusterAutoscalerIdentityArgs:
    aws: AwsContext
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    namespace: str  # ServingDefaults.autoscaler_namespace: where the chart runs
    service_account: str  # ServingDefaults.autoscaler_service_account: the chart's service account
    tags: Mapping[str, str] = field(default_factory=dict)


class ClusterAutoscalerIdentity(pulumi.ComponentResource):
    role: aws.iam.Role
    association: aws.eks.PodIdentityAssociation

    def __init__(self, name: str, args: ClusterAutoscalerIdentityArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:serving:ClusterAutoscalerIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.aws
        cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.role = aws.iam.Role(
            f"{name}-role",
            description="Cluster Autoscaler (EKS Pod Identity)",
            assume_role_policy=pulumi.Output.from_input(args.cluster_arn).apply(
                lambda arn: pod_identity_trust_policy(ctx.account_id, arn, ctx.dns_suffix)),
            max_session_duration=3600,
            tags=merge_tags(args.tags, Name=f"{name}-cluster-autoscaler"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.id,
            policy=cluster_name.apply(lambda n: autoscaler_policy(ctx, n)), opts=child,
        )
        self.association = aws.eks.PodIdentityAssociation(
            name, cluster_name=cluster_name, namespace=args.namespace,
            service_account=args.service_account, role_arn=self.role.arn,
            tags=dict(args.tags),
            # One association per namespace/service account: a replacement deletes the old first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"role_arn": self.role.arn,
                               "service_account": f"{args.namespace}/{args.service_account}"})
