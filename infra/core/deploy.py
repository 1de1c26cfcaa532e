"""Facts of the two-project deploy that the program, the operations and the commands share. Pure.

The stack is two Pulumi projects over the same stack names: the AWS base (root `Pulumi.yaml`)
and the in-cluster workloads (`workloads/Pulumi.yaml`), which reads the base's outputs through a
StackReference. With a private EKS endpoint the workloads project, and every gate that needs the
cluster from inside, runs in the in-VPC deployer (a CodeBuild project of the base): a build is
started with `ACTION_ENV` set to one of `ACTIONS`, and what it reports back (a preview document,
Prometheus answers) is printed into its log as `RESULT_PREFIX` lines, which `parse_result`
reassembles from the log.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from infra.core.graph import ResourceGraph
from infra.core.labels import PROJECT, WORKLOADS_PROJECT

# Environment variables of an in-VPC build (set per build; never secrets).
ACTION_ENV = "LLM_FLEET_ACTION"
STACK_ENV = "LLM_FLEET_STACK"
QUERIES_ENV = "LLM_FLEET_QUERIES"  # the prometheus action: a JSON list of PromQL queries
BENCH_ENV = "LLM_FLEET_BENCH"  # the bench action: the Job to run, as JSON (infra.core.bench.job.BenchJob)
PREVIEW = "preview"
UP = "up"
REFRESH = "refresh"
DESTROY = "destroy"
PROMETHEUS = "prometheus"
BENCH = "bench"
ACTIONS = (PREVIEW, UP, REFRESH, DESTROY, PROMETHEUS, BENCH)

# Base stack outputs the workloads project and `deploy` read (the base exports each of them).
OUT_CLUSTER_NAME = "cluster_name"
OUT_KUBECONFIG = "kubeconfig"
OUT_WEIGHTS_BUCKET = "weights_bucket"
OUT_DEPLOYER = "deployer"  # {project, source_bucket, source_prefix, log_group, role_arn}; private endpoint only
OUT_AVAILABILITY_ZONES = "availability_zones"

# Workloads stack outputs the global project reads through its StackReferences (one per region).
OUT_REGION = "region"
OUT_REGIONAL_HOSTNAME = "regional_hostname"
OUT_HEALTH_PATH = "health_path"  # the unauthenticated route Route 53's health checks request
OUT_GATEWAY_DNS_NAME = "gateway_dns_name"  # the gateway NLB's DNS name (an alias record's target)
OUT_GATEWAY_ZONE_ID = "gateway_zone_id"  # the NLB's canonical hosted zone id (per region and LB type)
# Global stack outputs: the weight of each region stack as applied (0: out of DNS), the routing.
OUT_WEIGHTS = "weights"
OUT_ROUTING = "routing"

# The component of one AZ's GPU node group: what a first pass of the base leaves out, so that the
# in-cluster layer waits for the cluster and the system nodes only, never for GPU capacity.
GPU_NODE_GROUP_TYPE = "llm-fleet:gpu:GpuNodeGroup"

SOURCE_PREFIX = "sources/"  # deploy uploads the working tree to s3://<source bucket>/sources/<stack>/<sha>.zip
CACHE_PREFIX = "cache/"

RESULT_PREFIX = "::llm-fleet-result:: "
RESULT_END = "::llm-fleet-result-end:: "
RESULT_CHUNK_CHARS = 8000  # far below CloudWatch Logs' 256 KiB event limit


def stack_prefix(stack: str) -> str:
    """`llm-fleet-<stack>`: the EKS cluster's name and the stem of every fixed resource name."""
    return f"{PROJECT}-{stack}"


def base_stack_reference(organization: str, stack: str) -> str:
    """The workloads' StackReference name of the base stack: `<org>/llm-fleet/<stack>`."""
    return f"{organization}/{PROJECT}/{stack}"


def workloads_stack_reference(organization: str, stack: str) -> str:
    """The global project's StackReference name of a region's workloads stack: `<org>/llm-fleet-workloads/<stack>`."""
    return f"{organization}/{WORKLOADS_PROJECT}/{stack}"


def gpu_node_group_urns(graph: ResourceGraph) -> list[str]:
    """The base's GPU node group components and everything under them: what the first pass of a
    deploy excludes (the offline plan's URNs are the engine's: same stack, project and names)."""
    groups = {n.urn for n in graph.of_type(GPU_NODE_GROUP_TYPE) if n.project == PROJECT}
    inside = set(groups)
    changed = True
    while changed:  # children of what is inside are inside
        new = {n.urn for n in graph.nodes if n.parent in inside} - inside
        changed = bool(new)
        inside |= new
    return sorted(inside)


def result_lines(document: Any) -> list[str]:
    """A JSON document as log lines: chunks, then an end line carrying the sha256 of the whole."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    chunks = [text[i:i + RESULT_CHUNK_CHARS] for i in range(0, len(text), RESULT_CHUNK_CHARS)] or [""]
    return [RESULT_PREFIX + c for c in chunks] + [RESULT_END + hashlib.sha256(text.encode()).hexdigest()]


def parse_result(lines: Iterable[str]) -> Any:
    """The document `result_lines` printed, from a build log (other lines ignored); None when the
    log holds no complete result. The last complete result wins; a garbled one raises ValueError."""
    found: Any = None
    chunks: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith(RESULT_PREFIX):
            chunks.append(line[len(RESULT_PREFIX):])
        elif line.startswith(RESULT_END):
            text = "".join(chunks)
            chunks = []
            if hashlib.sha256(text.encode()).hexdigest() != line[len(RESULT_END):].strip():
                raise ValueError("the build's result is garbled (sha256 mismatch): log lines were lost or split")
            found = json.loads(text)
    return found


__all__ = [
    "ACTIONS", "ACTION_ENV", "DESTROY", "GPU_NODE_GROUP_TYPE", "PREVIEW", "PROJECT", "PROMETHEUS", "QUERIES_ENV",
    "REFRESH", "STACK_ENV", "UP", "WORKLOADS_PROJECT", "base_stack_reference", "gpu_node_group_urns", "parse_result",
    "result_lines", "stack_prefix", "workloads_stack_reference",
]
