"""The two compositions: the AWS base (`base`, run by the root `__main__.py`) and the shared
start of both programs (`engine_config_entries`, `stack_context`); the in-cluster layer is
`infra.program.workloads` (run by `workloads/__main__.py`).

`pulumi up -s prod` runs the base against AWS; `python -m infra plan --stack prod` runs the very
same `__main__.py` files under mocks (infra/program/offline). Every count comes from the resolved
plan, which both programs get from the one resolver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.core import deploy
from infra.core.catalog import load_catalog
from infra.core.errors import UserError
from infra.core.labels import PROJECT, STACK_TAG
from infra.core.resolve import ResolvedStack
from infra.core.weights_layout import weights_bucket_name
from infra.program.components import (
    AwsContext,
    Cluster,
    ClusterArgs,
    GpuNodeGroup,
    GpuNodeGroupArgs,
    Network,
    NetworkArgs,
    WeightStore,
    WeightStoreArgs,
    select_azs,
)
from infra.program.components.alerting import AlertPublisher, AlertPublisherArgs
from infra.program.components.common import fleet_plan_summary, iam_principal_of
from infra.program.components.deployer import Deployer, DeployerArgs
from infra.program.components.gpu_node_group import placement_for
from infra.program.components.registry import ImageRegistry, ImageRegistryArgs
from infra.program.serving.defaults import ServingDefaults
from infra.program.serving.identities import ClusterAutoscalerIdentity, ClusterAutoscalerIdentityArgs

S3_BUCKET_NAME_MAX = 63


def engine_config_entries() -> dict[str, Any]:
    """Every config key the engine passed the program, as full keys to values (the resolver's
    `entries`): our structured sections come as JSON text and are decoded."""
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.get_config_env()) | set(runtime_config.CONFIG.get())
    ours = pulumi.Config(PROJECT)
    entries: dict[str, Any] = {}
    for key in keys:
        namespace, sep, name = key.partition(":")
        if sep and namespace == PROJECT:
            try:
                entries[key] = ours.get_object(name)
            except pulumi.ConfigTypeError:
                entries[key] = ours.get(name)
        else:
            entries[key] = runtime_config.get_config(key)
    return entries


@dataclass(frozen=True)
class StackContext:
    """What both programs derive from the resolved stack and the account, the same way."""

    resolved: ResolvedStack
    aws: AwsContext
    prefix: str  # llm-fleet-<stack>: the cluster name and every fixed name's stem
    tags: dict[str, str]
    weights_bucket: str
    caller_arn: str  # who runs this program (the operator, or the in-VPC deployer's role)

    @property
    def stack(self) -> str:
        return self.resolved.stack


def checked_bucket_name(name: str, stack: str) -> str:
    if len(name) > S3_BUCKET_NAME_MAX:
        raise UserError(f"stack name {stack!r} is too long: the bucket name {name!r} exceeds "
                        f"{S3_BUCKET_NAME_MAX} characters")
    return name


def stack_context(resolved: ResolvedStack) -> StackContext:
    """The account (invokes), the names and the tags of a stack."""
    cfg, stack = resolved.config, resolved.stack
    identity = aws.get_caller_identity()
    partition = aws.get_partition()
    ctx = AwsContext(identity.account_id, cfg.region, partition.partition, partition.dns_suffix)
    return StackContext(resolved, ctx, deploy.stack_prefix(stack), {**cfg.tags, STACK_TAG: stack},
                        checked_bucket_name(weights_bucket_name(stack, ctx.account_id, cfg.region), stack),
                        identity.arn)


def base(resolved: ResolvedStack) -> dict[str, Any]:
    """Register the AWS base and export what the workloads project and `deploy` read; returns the
    components by name. With a private endpoint it holds the in-VPC deployer and no Kubernetes
    resource; nothing outside a GPU node group depends on one (a first pass of `deploy` leaves
    them out, so that serving never waits for GPU capacity)."""
    sc = stack_context(resolved)
    cfg, plan, stack, ctx, prefix, tags = resolved.config, resolved.plan, resolved.stack, sc.aws, sc.prefix, sc.tags
    instance = load_catalog().instance(plan.instance_type)

    # --- the AZs (an invoke) ---------------------------------------------------------------
    reservations = cfg.gpu_nodes.capacity_reservation_ids
    azs = select_azs(
        cfg.region,
        plan.azs,
        plan.instance_type,
        named=cfg.network.availability_zones or (tuple(sorted(reservations)) if reservations else None),
    )

    # --- components -----------------------------------------------------------------------
    network = Network("network", NetworkArgs(name_prefix=prefix, region=cfg.region, vpc_cidr=cfg.network.vpc_cidr,
                                             azs=tuple(azs), tags=tags))
    private_subnet_ids = [network.private_subnets[az].id for az in azs]
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            cluster_name=prefix,
            aws=ctx,
            kubernetes_version=cfg.cluster.kubernetes_version,
            vpc_id=network.vpc.id,
            subnet_ids=private_subnet_ids,
            endpoint_public_access=cfg.cluster.endpoint_public_access,
            public_access_cidrs=cfg.cluster.public_access_cidrs,
            system_node_instance_type=cfg.cluster.system_node_instance_type,
            system_node_count=cfg.cluster.system_node_count,
            admin_principal_arns=cfg.cluster.admin_principal_arns,
            log_retention_days=cfg.cluster.log_retention_days,
            deletion_protection=cfg.cluster.deletion_protection,
            upgrade_policy=cfg.cluster.upgrade_policy,
            deployer_principal_arn=cfg.cluster.deployer_principal_arn or iam_principal_of(sc.caller_arn),
            tags=tags,
        ),
    )
    registry = ImageRegistry("images", ImageRegistryArgs(aws=ctx, name_prefix=prefix,
                                                          node_role_name=cluster.node_role.name, tags=tags))
    gpu_groups = {
        az: GpuNodeGroup(
            f"gpu-{az}",
            GpuNodeGroupArgs(
                cluster_name=cluster.eks.name,
                node_group_name=gpu_node_group_name(prefix, az),
                az=az,
                subnet_id=network.private_subnets[az].id,
                node_role_arn=cluster.node_role.arn,
                # EFA traffic needs the self-referencing EFA group; a type without EFA only the cluster's.
                security_group_ids=([network.efa_security_group.id] if instance.efa_interfaces else [])
                + [cluster.cluster_security_group_id],
                instance_type=plan.instance_type,
                efa_interfaces=instance.efa_interfaces,
                gpu=plan.gpu,
                nodes_min=plan.nodes_per_az.min,
                nodes_desired=plan.nodes_per_az.desired,
                nodes_max=plan.nodes_per_az.max,
                warm_spares=plan.warm_spares_per_az,
                warm_pool_state=cfg.gpu_nodes.warm_pool_state,
                capacity_type=cfg.fleet.capacity_type,
                capacity_reservation_id=reservations.get(az),
                capacity_reservation_resource_group_arn=cfg.gpu_nodes.capacity_reservation_resource_group_arn,
                **placement_for(cfg.gpu_nodes.cluster_placement_group, cfg.gpu_nodes.placement_group_names, az,
                                spans_nodes=plan.tensor_parallel > plan.gpus_per_node),
                root_volume_gib=cfg.gpu_nodes.root_volume_gib,
                kubernetes_version=cfg.cluster.kubernetes_version,
                ami_release_version=cfg.gpu_nodes.ami_release_version,
                max_unavailable=cfg.gpu_nodes.max_unavailable,
                tags=tags,
            ),
            depends_on=cluster.node_prerequisites,
        )
        for az in azs
    }
    weights = WeightStore(
        "weights",
        WeightStoreArgs(
            bucket_name=sc.weights_bucket,
            aws=ctx,
            cluster_name=cluster.eks.name,
            cluster_arn=cluster.eks.arn,
            namespace=cfg.weights.hydrator_namespace,
            service_account=cfg.weights.hydrator_service_account,
            noncurrent_version_expiration_days=cfg.weights.noncurrent_version_expiration_days,
            retired_revision_expiration_days=cfg.weights.retired_revision_expiration_days,
            tags=tags,
        ),
    )
    serving_defaults = ServingDefaults()
    autoscaler = ClusterAutoscalerIdentity(
        "cluster-autoscaler",
        ClusterAutoscalerIdentityArgs(
            aws=ctx, cluster_name=cluster.eks.name, cluster_arn=cluster.eks.arn,
            namespace=serving_defaults.autoscaler_namespace, service_account=serving_defaults.autoscaler_service_account,
            tags=tags,
        ),
    )
    if cfg.observability.sns_topic_arns():
        AlertPublisher("alerts", AlertPublisherArgs(
            aws=ctx, cluster_name=cluster.eks.name, cluster_arn=cluster.eks.arn,
            namespace=serving_defaults.monitoring_namespace,
            service_account=serving_defaults.alertmanager_service_account,
            topic_arns=cfg.observability.sns_topic_arns(), tags=tags,
        ))
    deployer = None
    if cfg.deploys_in_vpc:
        deployer = Deployer(
            "deployer",
            DeployerArgs(
                project_name=f"{prefix}-deployer",
                bucket_name=checked_bucket_name(f"{prefix}-deployer-{ctx.account_id}-{cfg.region}", stack),
                stack=stack,
                aws=ctx,
                vpc_id=network.vpc.id,
                subnet_ids=private_subnet_ids,
                cluster_name=cluster.eks.name,
                cluster_arn=cluster.eks.arn,
                cluster_security_group_id=cluster.cluster_security_group_id,
                config=cfg.deployer,
                tags=tags,
            ),
        )

    # --- outputs --------------------------------------------------------------------------
    # The kubeconfig is released once the in-cluster layer can use it: system nodes (and so
    # CoreDNS) up and the deployers' access granted (the operator's, and the in-VPC deployer's);
    # never after GPU node groups.
    ready = ([cluster.system_nodes.id, cluster.addons["coredns"].id]
             + ([cluster.deployer_access.id] if cluster.deployer_access else [])
             + ([deployer.access.id] if deployer else []))
    pulumi.export("cluster_name", cluster.eks.name)
    pulumi.export("cluster_arn", cluster.eks.arn)
    pulumi.export("cluster_endpoint", cluster.eks.endpoint)
    pulumi.export("cluster_security_group_id", cluster.cluster_security_group_id)
    pulumi.export("oidc_issuer", cluster.eks.identities.apply(_oidc_issuer))
    pulumi.export(deploy.OUT_KUBECONFIG, pulumi.Output.all(cluster.kubeconfig, *ready).apply(lambda v: v[0]))  # secret
    pulumi.export("vpc_id", network.vpc.id)
    pulumi.export(deploy.OUT_AVAILABILITY_ZONES, azs)
    pulumi.export(deploy.OUT_WEIGHTS_BUCKET, weights.bucket.bucket)
    pulumi.export("weights_reader_role_arn", weights.reader_role.arn)
    pulumi.export("weights_revision", cfg.weights.revision)
    # The operator's cluster-admin association: what a provider acting as the operator waits for.
    pulumi.export("cluster_deployer_access", cluster.deployer_access.id if cluster.deployer_access else None)
    pulumi.export("autoscaler_role_arn", autoscaler.role.arn)
    pulumi.export("autoscaler_pod_identity_association", autoscaler.association.association_id)
    pulumi.export("image_registry", registry.host)
    pulumi.export("pull_through_credential_secrets", {k: v.arn for k, v in registry.secrets.items()})
    # Plain names: an output that waited for a GPU group would hold up the first pass.
    pulumi.export("gpu_node_groups", {az: gpu_node_group_name(prefix, az) for az in azs})
    pulumi.export("fleet_plan", fleet_plan_summary(plan))
    if deployer is not None:
        pulumi.export(deploy.OUT_DEPLOYER, deployer.outputs())
    return {"network": network, "cluster": cluster, "gpu_groups": gpu_groups, "weights": weights,
            "autoscaler": autoscaler, "deployer": deployer, "registry": registry}


def gpu_node_group_name(prefix: str, az: str) -> str:
    return f"{prefix}-gpu-{az}"


def _oidc_issuer(identities: Any) -> str | None:
    for identity in identities or []:
        oidcs = identity.get("oidcs") if isinstance(identity, dict) else getattr(identity, "oidcs", None)
        for oidc in oidcs or []:
            issuer = oidc.get("issuer") if isinstance(oidc, dict) else getattr(oidc, "issuer", None)
            if issuer:
                return issuer
    return None
