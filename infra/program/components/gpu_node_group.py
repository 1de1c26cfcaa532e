"""GpuNodeGroup: one EKS managed node group of GPU instances in one AZ.

One per AZ: the unit a capacity reservation, a cluster placement group and an AZ loss share.
Sizes (min/desired/max, warm spares) come from the fleet plan; nothing here recomputes them.
A type without EFA (the single-GPU g5/g6/g6e sizes: catalog `efa_interfaces: 0`) gets no EFA
interfaces: its launch template carries the security groups itself, and its nodes no
`vpc.amazonaws.com/efa.present` label.

Placement group. Optional: a cluster placement group packs a group's instances onto one network
spine, which only an engine spanning nodes needs (EFA works without one), and it concentrates
insufficient-capacity errors. It is created when `create_placement_group` (the plan spans nodes,
or config says so), or the launch template names an existing one (`placement_group_name`: the
group a capacity reservation is bound to; EC2 user guide, "Capacity Reservations in cluster
placement groups").

Capacity blocks (EKS user guide, "Create a managed node group with Capacity Blocks for ML"): the
launch template carries the instance type, the `capacity-block` market type and the
reservation, and the node group names no instance types (EKS rejects the request otherwise).
They get no warm pool: AWS documents none for Capacity Block instances (the EC2 Auto Scaling
warm-pool limits and the capacity-blocks guide say nothing of one), and the block's instances
are all there is. The guide's upgrade rule (desired size 0 while the group is updated) is
guarded by preflight's `capacity-block-upgrade` check (infra/ops/preflight/checks.py).

Replacement. Node group names are ForceNew (so are capacity_type, instance_types, ami_type,
subnet_ids and the launch template id). An on-demand group gets a generated suffix
(`node_group_name_prefix`): its replacement comes up beside it first. A group on reserved
capacity keeps its fixed name and is replaced delete-first: the reservation has no room for a
second group, so the old one must release its instances.

Counts. `FleetPlan.nodes_per_az` counts the warm spares in (min = serving + spares, max =
burst + spares) and the Auto Scaling group runs exactly those counts in service. The spares are
in-service GPU nodes held by negative-priority placeholder pods (infra/program/serving/
warm_pool.py): the hydrator has already put the weights on their NVMe, so a vLLM scale-up
preempts a placeholder and pays only a local model load. The instances in service therefore
match the plan, and its cost, at every point.

Warm pool. EKS managed node groups take an Auto Scaling warm pool (`warm_pool_config`) that
pre-initialises the burst headroom: `max_group_prepared_capacity` = plan max, so at baseline the
pool holds `max - min` instances (and never fewer than the spares). They wait STOPPED by default:
a stopped instance costs only its EBS root volume, skips EC2 launch and AMI boot when called in,
but has lost its instance store, so it refills the NVMe weight cache (~70 GB from S3) on start.
RUNNING (gpu_nodes.warm_pool_state) bills them at the full instance price while they sit outside
the cluster; HIBERNATED is impossible above 150 GB of RAM (a p5 has 2 TiB).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.core.config import CapacityType, WarmPoolState
from infra.core.labels import (
    ACCELERATOR_LABEL,
    AZ_LABEL,
    AZ_TAG,
    CAPACITY_TYPE_LABEL,
    GPU_LABEL,
    GPU_NODE_LABELS,
    gpu_taint_eks,
)
from infra.program.components.cluster import encrypted_root_volume, imdsv2_metadata_options
from infra.program.components.common import merge_tags

AMI_TYPE = "AL2023_x86_64_NVIDIA"
MIME_BOUNDARY = "==LLMFLEET=="

EKS_CAPACITY_TYPE = {"on-demand": "ON_DEMAND", "reservation": "ON_DEMAND", "capacity-block": "CAPACITY_BLOCK"}


def node_config_user_data(strategy: str = "RAID0") -> str:
    """nodeadm NodeConfig (MIME multi-part) that builds the instance-store array.

    EKS merges its own NodeConfig (cluster name, endpoint, CA) for managed node groups, so this
    part only carries what we add: the local-storage strategy.
    """
    node_config = (
        "---\n"
        "apiVersion: node.eks.aws/v1alpha1\n"
        "kind: NodeConfig\n"
        "spec:\n"
        "  instance:\n"
        "    localStorage:\n"
        f"      strategy: {strategy}\n"
    )
    return (
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="{MIME_BOUNDARY}"\n'
        "\n"
        f"--{MIME_BOUNDARY}\n"
        "Content-Type: application/node.eks.aws\n"
        "\n"
        f"{node_config}"
        "\n"
        f"--{MIME_BOUNDARY}--\n"
    )


def efa_network_interfaces(count: int, security_group_ids: Sequence[pulumi.Input[str]]) -> list[dict]:
    """One EFA interface per network card: card 0 is EFA with ENA (the primary interface, device
    0); the others are EFA-only at device index 1 (no IP address consumed; AWS's p5 layout)."""
    if count < 1:
        raise ValueError("an EFA node group needs at least one EFA interface")
    interfaces = []
    for card in range(count):
        interfaces.append(
            {
                "network_card_index": card,
                "device_index": 0 if card == 0 else 1,
                "interface_type": "efa" if card == 0 else "efa-only",
                "security_groups": list(security_group_ids),
                "delete_on_termination": "true",
                "associate_public_ip_address": "false",
            }
        )
    return interfaces


@dataclass(frozen=True)
class GpuNodeGroupArgs:
    cluster_name: pulumi.Input[str]
    node_group_name: str
    az: str
    subnet_id: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    security_group_ids: Sequence[pulumi.Input[str]]  # EFA group (EFA types only) + cluster security group
    instance_type: str
    efa_interfaces: int  # 0: the type has no EFA (no EFA interfaces, no placement group)
    gpu: str
    # GPU nodes in this AZ, warm spares included (FleetPlan.nodes_per_az and warm_spares_per_az).
    nodes_min: int
    nodes_desired: int
    nodes_max: int
    warm_spares: int
    # From llm-fleet:gpu_nodes, fleet and cluster (infra/core/config.py holds the defaults).
    warm_pool_state: WarmPoolState
    capacity_type: CapacityType
    capacity_reservation_id: str | None
    capacity_reservation_resource_group_arn: str | None
    create_placement_group: bool
    placement_group_name: str | None  # an existing cluster placement group (not created here)
    root_volume_gib: int
    kubernetes_version: str
    ami_release_version: str | None
    max_unavailable: int
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.warm_spares <= self.nodes_min <= self.nodes_desired <= self.nodes_max:
            raise ValueError(
                f"node counts must satisfy 0 <= warm spares <= min <= desired <= max: {self.warm_spares} spares, "
                f"{self.nodes_min}/{self.nodes_desired}/{self.nodes_max}"
            )
        if self.nodes_max - self.warm_spares < 1:
            raise ValueError("at least one GPU node must serve (not only hold warm spares) at the top of a burst")
        targets = (self.capacity_reservation_id, self.capacity_reservation_resource_group_arn)
        if (self.capacity_type == "on-demand") != (targets == (None, None)) or None not in targets:
            raise ValueError("one reservation target (an id, or a resource group for reservation) goes with "
                             "capacity-block or reservation, and only then")
        if self.capacity_type == "capacity-block" and self.capacity_reservation_id is None:
            raise ValueError("a capacity-block group targets its block by reservation id")
        if self.create_placement_group and self.placement_group_name:
            raise ValueError("create a placement group or name an existing one, not both")

    @property
    def reserved(self) -> bool:
        return self.capacity_type != "on-demand"

    @property
    def warm_pool(self) -> bool:
        """Burst headroom or spares to prepare, on capacity where AWS documents a warm pool."""
        return self.capacity_type != "capacity-block" and (self.nodes_max > self.nodes_min or self.warm_spares > 0)


def placement_for(configured: bool | None, names: Mapping[str, str], az: str, spans_nodes: bool) -> dict:
    """`create_placement_group` / `placement_group_name` of one AZ's group: a named (existing)
    group wins; else `gpu_nodes.cluster_placement_group`; else one only when an engine spans
    nodes (`FleetPlan.tensor_parallel` above the GPUs of one node)."""
    if az in names:
        return {"create_placement_group": False, "placement_group_name": names[az]}
    return {"create_placement_group": spans_nodes if configured is None else configured, "placement_group_name": None}


def in_service_scaling(args: "GpuNodeGroupArgs") -> dict[str, int]:
    """The Auto Scaling group's in-service counts: the plan's (warm spares are in service)."""
    return {"min_size": args.nodes_min, "desired_size": args.nodes_desired, "max_size": args.nodes_max}


class GpuNodeGroup(pulumi.ComponentResource):
    """Launch template + managed node group for one AZ (+ a cluster placement group when asked)."""

    placement_group: aws.ec2.PlacementGroup | None
    launch_template: aws.ec2.LaunchTemplate
    node_group: aws.eks.NodeGroup

    def __init__(self, name: str, args: GpuNodeGroupArgs, opts: pulumi.ResourceOptions | None = None,
                 *, depends_on: Sequence[pulumi.Resource] = ()) -> None:
        """`depends_on`: what the node group needs while it exists (the node role's policy
        attachments, the VPC CNI): created before it, deleted after it."""
        super().__init__("llm-fleet:gpu:GpuNodeGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = merge_tags(args.tags, **{AZ_TAG: args.az})
        efa = args.efa_interfaces > 0

        self.placement_group = None
        placement_group_name: pulumi.Input[str] | None = args.placement_group_name
        if args.create_placement_group:
            self.placement_group = aws.ec2.PlacementGroup(
                f"{name}-pg",
                strategy="cluster",
                tags=merge_tags(tags, Name=f"{args.node_group_name}"),
                opts=child,
            )
            placement_group_name = self.placement_group.name
        network: dict = {"vpc_security_group_ids": list(args.security_group_ids)}
        if efa:
            network = dict(network_interfaces=efa_network_interfaces(args.efa_interfaces, args.security_group_ids))
        if placement_group_name is not None:
            network["placement"] = {"group_name": placement_group_name}

        lt_args: dict = dict(
            description=f"{args.instance_type} GPU nodes in {args.az} ({args.node_group_name})",
            metadata_options=imdsv2_metadata_options(),
            block_device_mappings=[encrypted_root_volume(args.root_volume_gib)],
            **network,
            user_data=base64.b64encode(node_config_user_data().encode()).decode(),
            tag_specifications=[
                {"resource_type": kind, "tags": merge_tags(tags, Name=args.node_group_name)}
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            tags=tags,
        )
        if args.capacity_type == "capacity-block":
            # EKS requires the type in the template for Capacity Blocks (and none on the group).
            lt_args["instance_type"] = args.instance_type
            lt_args["instance_market_options"] = {"market_type": "capacity-block"}
        if args.capacity_reservation_id is not None:
            lt_args["capacity_reservation_specification"] = {
                "capacity_reservation_target": {"capacity_reservation_id": args.capacity_reservation_id}
            }
        elif args.capacity_reservation_resource_group_arn is not None:
            lt_args["capacity_reservation_specification"] = {
                "capacity_reservation_target": {
                    "capacity_reservation_resource_group_arn": args.capacity_reservation_resource_group_arn
                }
            }
        self.launch_template = aws.ec2.LaunchTemplate(f"{name}-lt", **lt_args, opts=child)

        labels = {
            **GPU_NODE_LABELS,
            AZ_LABEL: args.az,
            GPU_LABEL: args.gpu,
            # The autoscaler waits for the device plugin on nodes with this label instead of
            # buying more while GPUs initialise.
            ACCELERATOR_LABEL: args.gpu,
            CAPACITY_TYPE_LABEL: args.capacity_type,
            "nvidia.com/gpu.present": "true",
            **({"vpc.amazonaws.com/efa.present": "true"} if efa else {}),
            **args.labels,
        }
        ng_args: dict = dict(
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=[args.subnet_id],
            ami_type=AMI_TYPE,
            capacity_type=EKS_CAPACITY_TYPE[args.capacity_type],
            scaling_config=in_service_scaling(args),
            launch_template={"id": self.launch_template.id, "version": self.launch_template.latest_version.apply(str)},
            labels=labels,
            taints=[gpu_taint_eks()],
            update_config={"max_unavailable": args.max_unavailable},
            node_repair_config={"enabled": True},
            version=args.kubernetes_version,
            tags=tags,
        )
        if args.reserved:
            ng_args["node_group_name"] = args.node_group_name
        else:
            ng_args["node_group_name_prefix"] = f"{args.node_group_name}-"
        if args.capacity_type != "capacity-block":
            ng_args["instance_types"] = [args.instance_type]
        if args.ami_release_version:
            ng_args["release_version"] = args.ami_release_version
        if args.warm_pool:
            ng_args["warm_pool_config"] = {
                "min_size": args.warm_spares,
                "max_group_prepared_capacity": args.nodes_max,  # pool = burst headroom
                "pool_state": args.warm_pool_state,
                "reuse_on_scale_in": True,
            }
        self.node_group = aws.eks.NodeGroup(
            name,
            **ng_args,
            # KEDA and the autoscaler move desired between min and max; `pulumi up` must not reset it.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(depends_on), ignore_changes=["scalingConfig.desiredSize"],
                delete_before_replace=args.reserved,
            ),
        )

        self.register_outputs(
            {
                "az": args.az,
                "node_group_name": self.node_group.node_group_name,
                "launch_template_id": self.launch_template.id,
                "placement_group": placement_group_name,
            }
        )
