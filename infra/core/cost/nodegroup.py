"""What a node group costs by: its instance types, sizes and warm pool (the cost model's node
group pricer and the policies' per-group spend cap read it). Pure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from infra.core.catalog import Catalog
from infra.core.graph import NODE_GROUP, Node, as_int, is_unknown, listify, own_az
from infra.core.graph import node as graph_node


@dataclass(frozen=True)
class NodeGroupShape:
    """A node group's types, sizes and warm pool, as its inputs declare them."""

    name: str
    urn: str
    az: str | None
    instance_types: tuple[str, ...]
    capacity_type: str
    min_size: int | None
    desired_size: int | None
    max_size: int | None
    pool_min: int = 0
    pool_max_prepared: int | None = None
    pool_state: str | None = None  # None: no warm pool
    disk_gb: int | None = None
    launch_template: Mapping[str, Any] | None = None

    @property
    def has_pool(self) -> bool:
        return self.pool_state is not None

    def pool_size(self, group_size: int) -> int:
        """Instances in the warm pool when the group runs `group_size` (EC2 Auto Scaling rule)."""
        if not self.has_pool:
            return 0
        cap = self.pool_max_prepared if self.pool_max_prepared is not None and self.pool_max_prepared >= 0 else self.max_size
        return max(self.pool_min, (cap or 0) - group_size, 0)

    def sizes(self) -> tuple[int, int, int]:
        lo = self.min_size or 0
        hi = self.max_size if self.max_size is not None else max(lo, self.desired_size or 0)
        mid = self.desired_size if self.desired_size is not None else lo
        return lo, mid, hi

    def billed_pool(self) -> tuple[int, int, int]:
        """Warm-pool instances billed at the instance price per scenario (RUNNING pools only)."""
        if (self.pool_state or "").upper() != "RUNNING":
            return 0, 0, 0
        return self.pooled()

    def pooled(self) -> tuple[int, int, int]:
        lo, mid, hi = self.sizes()
        return self.pool_size(lo), self.pool_size(mid), self.pool_size(hi)


def node_group_shape(node: Node, template: Node | None = None) -> NodeGroupShape:
    """The shape of an `aws:eks/nodeGroup:NodeGroup`; reads only the inputs it needs, so the
    engine's proxies raise on an unknown only where the shape depends on it. A group that names
    no instance types (a Capacity Block group) runs its launch template's `instanceType`."""
    inputs = node.inputs
    scaling = inputs.get("scalingConfig") if isinstance(inputs.get("scalingConfig"), Mapping) else {}
    pool = inputs.get("warmPoolConfig") if isinstance(inputs.get("warmPoolConfig"), Mapping) else None
    types = tuple(str(t) for t in listify(inputs.get("instanceTypes")) if isinstance(t, str) and not is_unknown(t))
    if not types and template is not None:
        lt_type = template.inputs.get("instanceType")
        types = (lt_type,) if isinstance(lt_type, str) and not is_unknown(lt_type) else ()
    return NodeGroupShape(
        name=node.name,
        urn=node.urn,
        az=own_az(node),
        instance_types=types,
        capacity_type=str(inputs.get("capacityType") or "ON_DEMAND"),
        min_size=as_int(scaling.get("minSize")),
        desired_size=as_int(scaling.get("desiredSize")),
        max_size=as_int(scaling.get("maxSize")),
        pool_min=(as_int(pool.get("minSize")) or 0) if pool is not None else 0,
        pool_max_prepared=as_int(pool.get("maxGroupPreparedCapacity")) if pool is not None else None,
        pool_state=(str(pool.get("poolState") or "STOPPED") if pool is not None else None),
        disk_gb=as_int(inputs.get("diskSize")),
        launch_template=inputs.get("launchTemplate") if isinstance(inputs.get("launchTemplate"), Mapping) else None,
    )


def is_gpu_group(shape: NodeGroupShape, catalog: Catalog) -> bool:
    return any(t in catalog.instances for t in shape.instance_types)


def ebs_gb(template: Node) -> int:
    """GB of EBS a launch template gives each instance (all its block device mappings)."""
    total = 0
    for bdm in listify(template.inputs.get("blockDeviceMappings")):
        if isinstance(bdm, Mapping) and isinstance(bdm.get("ebs"), Mapping):
            total += as_int(bdm["ebs"].get("volumeSize")) or 0
    return total


def plan_node_groups(plan: Mapping[str, Any]) -> tuple[Node, ...]:
    """GPU node groups implied by the plan, for documents without resources.

    As the program builds them: each group runs FleetPlan.nodes_per_az in service (warm spares
    included) and a STOPPED warm pool pre-initialises the burst headroom (prepared up to max).
    """
    counts = plan.get("nodes_per_az") or {}
    spares = as_int(plan.get("warm_spares_per_az")) or 0
    lo, mid, hi = (as_int(counts.get(k)) or 0 for k in ("min", "desired", "max"))
    out = []
    for i in range(as_int(plan.get("azs")) or 1):
        inputs: dict[str, Any] = {
            "instanceTypes": [plan.get("instance_type")],
            "scalingConfig": {"minSize": lo, "desiredSize": mid, "maxSize": hi},
        }
        if hi > lo or spares:
            inputs["warmPoolConfig"] = {"minSize": spares, "poolState": "STOPPED", "maxGroupPreparedCapacity": hi}
        out.append(graph_node("", NODE_GROUP, f"gpu-az{i + 1}", None, inputs))
    return tuple(out)
