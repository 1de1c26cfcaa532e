"""Helpers for the program tests: the prod plan with overrides, config variants, cached mocked runs."""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import dataclasses

from infra.core.resolve import resolve
from infra.core.sizing.plan import FleetPlan
from infra.program.offline import ProgramRun, run_program, stack_entries

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
CLUSTER = "aws:eks/cluster:Cluster"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROLE = "aws:iam/role:Role"


def make_plan(**overrides: Any) -> FleetPlan:
    """The real prod plan (the resolver's), with fields replaced."""
    return dataclasses.replace(resolve("prod").plan, **overrides)


def prod_entries() -> dict[str, Any]:
    return copy.deepcopy(_prod_entries())


@lru_cache(maxsize=1)
def _prod_entries() -> dict[str, Any]:
    return stack_entries("prod")


def with_changes(entries: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`section__field=value` sets `llm-fleet:section.field`; `section=value` replaces a section;
    a value of `DELETE` removes the key."""
    out = copy.deepcopy(entries)
    for key, value in changes.items():
        section, _, fld = key.partition("__")
        full = f"llm-fleet:{section}" if section != "aws_region" else "aws:region"
        if not fld:
            if value is DELETE:
                out.pop(full, None)
            else:
                out[full] = value
            continue
        target = out.setdefault(full, {})
        if value is DELETE:
            target.pop(fld, None)
        else:
            target[fld] = value
    return out


DELETE = object()

_RUNS: dict[tuple, ProgramRun] = {}


def run_variant(**changes: Any) -> ProgramRun:
    """The program under mocks with prod's config plus `changes`; cached per change set."""
    key = tuple(sorted((k, repr(v)) for k, v in changes.items()))
    if key not in _RUNS:
        _RUNS[key] = run_program(with_changes(prod_entries(), **changes), stack="prod")
    return _RUNS[key]


def gpu_node_groups(run: ProgramRun) -> list:
    return [r for r in run.of_type(NODE_GROUP) if r.inputs.get("amiType") == "AL2023_x86_64_NVIDIA"]


def gpu_nodes_total(run: ProgramRun, size: str = "minSize") -> int:
    """GPU instances the node groups hold in service (warm spares included)."""
    return sum(ng.inputs["scalingConfig"][size] for ng in gpu_node_groups(run))


def config_defaults(model: Any) -> dict[str, Any]:
    """The defaults a config section declares (what a component gets when the stack sets nothing)."""
    return {name: f.get_default(call_default_factory=True) for name, f in model.model_fields.items()}


def cluster_args_defaults() -> dict[str, Any]:
    """ClusterArgs keyword arguments taken from llm-fleet:cluster's defaults."""
    from infra.core.config import ClusterConfig

    d = config_defaults(ClusterConfig)
    keys = ("endpoint_public_access", "public_access_cidrs", "system_node_instance_type", "system_node_count",
            "admin_principal_arns", "log_retention_days", "deletion_protection", "upgrade_policy")
    return {**{k: d[k] for k in keys}, "deployer_principal_arn": d["deployer_principal_arn"]}


def gpu_args_defaults() -> dict[str, Any]:
    """GpuNodeGroupArgs keyword arguments taken from the config sections' defaults."""
    from infra.core.config import ClusterConfig, FleetOptions, GpuNodesConfig

    g = config_defaults(GpuNodesConfig)
    return dict(warm_pool_state=g["warm_pool_state"], capacity_type=config_defaults(FleetOptions)["capacity_type"],
                capacity_reservation_id=None, capacity_reservation_resource_group_arn=None,
                create_placement_group=bool(g["cluster_placement_group"]), placement_group_name=None,
                root_volume_gib=g["root_volume_gib"],
                kubernetes_version=config_defaults(ClusterConfig)["kubernetes_version"],
                ami_release_version=g["ami_release_version"], max_unavailable=g["max_unavailable"])
