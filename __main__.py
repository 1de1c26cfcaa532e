"""The llm-fleet Pulumi program: config -> sizing -> components -> exports.

`pulumi up -s prod` runs this against AWS; `python -m infra plan --stack prod` runs the very
same file under Pulumi mocks (infra/preview.py). Keep it thin: decisions live in infra/.
"""
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.catalog import load_catalog
from infra.components import (
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
from infra.components.common import fleet_plan_summary
from infra.components.serving import Serving, ServingArgs, kubernetes_provider
from infra.config import stack_config_from_pulumi
from infra.errors import UserError
from infra.rollout.regions import regional_sizing_spec
from infra.sizing import size

# --- config and sizing (pure) -------------------------------------------------------------
cfg = stack_config_from_pulumi()
stack = pulumi.get_stack()
# A region stack serves its traffic share (stacks/<env>.yaml), plus a failed region's if declared.
plan = size(regional_sizing_spec(cfg.sizing_spec(), stack, Path(__file__).resolve().parent))
instance = load_catalog().instance(plan.instance_type)
prefix = f"{pulumi.get_project()}-{stack}"
tags = {**cfg.tags, "llm-fleet:stack": stack}

# --- the account and the AZs (invokes) ----------------------------------------------------
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

# --- components ---------------------------------------------------------------------------
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
        tags=tags,
    ),
)

gpu_groups = {
    az: GpuNodeGroup(
        f"gpu-{az}",
        GpuNodeGroupArgs(
            cluster_name=cluster.eks.name,
            node_group_name=f"{prefix}-gpu-{az}",
            az=az,
            subnet_id=network.private_subnets[az].id,
            node_role_arn=cluster.node_role.arn,
            security_group_ids=[network.efa_security_group.id, cluster.cluster_security_group_id],
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
            root_volume_gib=cfg.gpu_nodes.root_volume_gib,
            kubernetes_version=cfg.cluster.kubernetes_version,
            ami_release_version=cfg.gpu_nodes.ami_release_version,
            max_unavailable=cfg.gpu_nodes.max_unavailable,
            tags=tags,
        ),
    )
    for az in azs
}

bucket_name = f"{prefix}-weights-{ctx.account_id}-{cfg.region}"
if len(bucket_name) > 63:
    raise UserError(f"stack name {stack!r} is too long: the weights bucket name {bucket_name!r} exceeds 63 characters")
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

# --- serving on the cluster: GPU plumbing, weights hydration, vLLM, ingress, autoscaling,
# warm pool, observability (every count from the plan) ------------------------------------
k8s_provider = kubernetes_provider("k8s", cluster.kubeconfig, depends_on=[cluster.system_nodes])
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
    ),
    opts=pulumi.ResourceOptions(depends_on=[weights, *gpu_groups.values()]),
)

# --- outputs ------------------------------------------------------------------------------
pulumi.export("cluster_name", cluster.eks.name)
pulumi.export("cluster_endpoint", cluster.eks.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)  # secret
pulumi.export("vpc_id", network.vpc.id)
pulumi.export("availability_zones", azs)
pulumi.export("weights_bucket", weights.bucket.bucket)
pulumi.export("weights_reader_role_arn", weights.reader_role.arn)
pulumi.export("weights_revision", cfg.weights.revision)
pulumi.export("gpu_node_groups", {az: g.node_group.node_group_name for az, g in gpu_groups.items()})
pulumi.export("fleet_plan", fleet_plan_summary(plan))
