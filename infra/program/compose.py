"""The composition `__main__.py` runs: a resolved stack -> components -> stack outputs.

`pulumi up -s prod` runs it against AWS; `python -m infra plan --stack prod` runs the very same
`__main__.py` under mocks (infra/program/offline). Every count comes from the resolved plan.
"""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

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
from infra.program.components.gpu_node_group import placement_for
from infra.program.components.registry import ImageRegistry, ImageRegistryArgs
from infra.program.serving import Serving, ServingArgs, ServingDefaults, kubernetes_provider

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


def fleet(resolved: ResolvedStack) -> dict[str, Any]:
    """Register the whole stack and export its outputs; returns the components by name."""
    cfg, plan, stack = resolved.config, resolved.plan, resolved.stack
    instance = load_catalog().instance(plan.instance_type)
    prefix = f"{PROJECT}-{stack}"
    tags = {**cfg.tags, STACK_TAG: stack}

    # --- the account and the AZs (invokes) ------------------------------------------------
    identity = aws.get_caller_identity()
    partition = aws.get_partition()
    ctx = AwsContext(identity.account_id, cfg.region, partition.partition, partition.dns_suffix)
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
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            cluster_name=prefix,
            aws=ctx,
            kubernetes_version=cfg.cluster.kubernetes_version,
            vpc_id=network.vpc.id,
            subnet_ids=[network.private_subnets[az].id for az in azs],
            endpoint_public_access=cfg.cluster.endpoint_public_access,
            public_access_cidrs=cfg.cluster.public_access_cidrs,
            system_node_instance_type=cfg.cluster.system_node_instance_type,
            system_node_count=cfg.cluster.system_node_count,
            admin_principal_arns=cfg.cluster.admin_principal_arns,
            log_retention_days=cfg.cluster.log_retention_days,
            deletion_protection=cfg.cluster.deletion_protection,
            upgrade_policy=cfg.cluster.upgrade_policy,
            deployer_principal_arn=cfg.cluster.deployer_principal_arn or iam_principal_of(identity.arn),
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
                node_group_name=f"{prefix}-gpu-{az}",
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
    bucket_name = weights_bucket_name(stack, ctx.account_id, cfg.region)
    if len(bucket_name) > S3_BUCKET_NAME_MAX:
        raise UserError(f"stack name {stack!r} is too long: the weights bucket name {bucket_name!r} exceeds "
                        f"{S3_BUCKET_NAME_MAX} characters")
    weights = WeightStore(
        "weights",
        WeightStoreArgs(
            bucket_name=bucket_name,
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

    if cfg.observability.sns_topic_arns():
        AlertPublisher("alerts", AlertPublisherArgs(
            aws=ctx, cluster_name=cluster.eks.name, cluster_arn=cluster.eks.arn,
            namespace=ServingDefaults().monitoring_namespace,
            service_account=ServingDefaults().alertmanager_service_account,
            topic_arns=cfg.observability.sns_topic_arns(), tags=tags,
        ))

    # --- serving on the cluster: GPU plumbing, weights hydration, vLLM, ingress, autoscaling,
    # warm pool, observability (every count from the plan) --------------------------------
    # The provider acts as the deployer: it waits for the deployer's cluster-admin association.
    k8s_provider = kubernetes_provider("k8s", cluster.kubeconfig, depends_on=[
        cluster.system_nodes, *([cluster.deployer_access] if cluster.deployer_access else [])])
    serving = Serving(
        "serving",
        ServingArgs(
            plan=plan,
            config=cfg,
            aws=ctx,
            k8s_provider=k8s_provider,
            cluster_name=cluster.eks.name,
            cluster_arn=cluster.eks.arn,
            weights_bucket_name=bucket_name,
            tags=tags,
            defaults=ServingDefaults(image_registry=registry.host),
        ),
        opts=pulumi.ResourceOptions(depends_on=[weights, *gpu_groups.values(), registry]),
    )

    # --- outputs --------------------------------------------------------------------------
    pulumi.export("cluster_name", cluster.eks.name)
    pulumi.export("cluster_endpoint", cluster.eks.endpoint)
    pulumi.export("kubeconfig", cluster.kubeconfig)  # secret
    # What a Kubernetes provider acting as the deployer must wait for (the workloads layer).
    pulumi.export("cluster_deployer_access", cluster.deployer_access.id if cluster.deployer_access else None)
    pulumi.export("vpc_id", network.vpc.id)
    pulumi.export("availability_zones", azs)
    pulumi.export("weights_bucket", weights.bucket.bucket)
    pulumi.export("weights_reader_role_arn", weights.reader_role.arn)
    pulumi.export("weights_revision", cfg.weights.revision)
    pulumi.export("image_registry", registry.host)
    pulumi.export("pull_through_credential_secrets", {k: v.arn for k, v in registry.secrets.items()})
    pulumi.export("gpu_node_groups", {az: g.node_group.node_group_name for az, g in gpu_groups.items()})
    pulumi.export("fleet_plan", fleet_plan_summary(plan))
    return {"network": network, "cluster": cluster, "gpu_groups": gpu_groups, "weights": weights, "serving": serving}
