"""Helpers for the program tests: fabricated fleet plans, config variants, cached mocked runs."""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from infra.program.offline import ProgramRun, run_program, stack_entries
from infra.core.sizing.plan import (
    Alternative,
    FleetPlan,
    NodeCounts,
    PlanCost,
    Predicted,
    VllmSettings,
)

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
CLUSTER = "aws:eks/cluster:Cluster"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROLE = "aws:iam/role:Role"


def make_plan(**overrides: Any) -> FleetPlan:
    """A FleetPlan shaped like the prod one (p5.48xlarge, TP=8, 3 AZs), with overrides."""
    predicted = Predicted(
        concurrency_per_replica=50, ttft_p95_ms=65.0, ttft_mean_ms=46.0, tpot_p95_ms=15.9,
        tpot_mean_ms=13.9, e2e_p95_ms=3221.0, output_tokens_per_s_per_replica=3581.0,
    )
    fields: dict[str, Any] = dict(
        model="llama-3.3-70b",
        served_name="llama-3.3-70b-instruct",
        region="us-east-1",
        engine="vllm",
        instance_type="p5.48xlarge",
        gpu="H100-SXM-80GB",
        gpus_per_node=8,
        tensor_parallel=8,
        precision="fp8",
        azs=3,
        survive_az_loss=True,
        replicas_sustained=3,
        replicas_per_az=2,
        replicas_per_node=1,
        replicas_max=12,
        nodes_per_az=NodeCounts(min=3, desired=3, max=5),
        warm_spares_per_az=1,
        keda_queue_threshold=9,
        admission_limit_per_replica=141,
        kv_cache_tokens_per_replica=3_183_968,
        max_concurrency_per_replica=128,
        weights_gib_per_gpu=8.46,
        kv_cache_gib_per_gpu=60.73,
        load={"concurrent_requests": 200, "burst_concurrent_requests": 800.0, "output_tokens_per_s": 5000.0,
              "input_tokens": 500, "output_tokens": 200},
        vllm=VllmSettings(
            tensor_parallel_size=8, max_num_seqs=128, max_num_batched_tokens=8192, max_model_len=8192,
            gpu_memory_utilization=0.9, kv_cache_dtype="fp8", quantization="fp8",
        ),
        predicted=predicted,
        predicted_all_azs=predicted,
        cost=PlanCost(
            usd_per_gpu_hour=6.88, usd_per_node_hour=55.04, price_source="test", usd_per_hour_baseline=495.36,
            usd_per_hour_max=825.6, usd_per_million_output_tokens=27.52,
        ),
        alternatives=(Alternative("p5.4xlarge", 1, "fp8", 64, 8192, False, None, None, "does not fit"),),
    )
    fields.update(overrides)
    return FleetPlan(**fields)


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
