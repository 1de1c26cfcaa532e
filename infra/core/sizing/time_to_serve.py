"""Time to serve: from "the queue grows" to "a new replica answers", per path, and its assumptions.

One model for everyone: the serving layer sizes its startup probe and documents the warm pool
with it (infra/program/serving/vllm.py, warm_pool.py, docs/serving.md), and the fleet simulator
(infra/core/sizing/simulate/fleet.py) starts replicas with it. Each path is a list of steps in
seconds; the simulator drops the scale-signal step because it runs the KEDA/HPA loop itself.

    cold         a new instance: launch, boot, RAID0, join, device plugin, S3 hydration,
                 engine image pull, load from NVMe.
    warm_node    a STOPPED warm-pool instance (the default node tier): no EC2 launch or first
                 boot initialisation, but it boots, rebuilds the RAID0 (a stop blanks the
                 instance store), joins, hydrates and pulls the image.
    warm_reused  only with gpu_nodes.warm_pool_state RUNNING: an instance returned on scale-in
                 (reuse_on_scale_in) whose NVMe still holds the weights and the image.
    placeholder  a warm node held by a placeholder pod: preemption, then the load only.
"""
from __future__ import annotations

from dataclasses import dataclass

SIGNAL_STEP = "scale signal (KEDA + HPA)"
LOAD_STEP = "vLLM load from NVMe + engine init"
PATHS = ("cold", "warm_node", "warm_reused", "placeholder")
# The node tier a burst node comes from, by gpu_nodes.warm_pool_state.
NODE_TIER_PATH = {"STOPPED": "warm_node", "RUNNING": "warm_reused"}


@dataclass(frozen=True)
class TimeToServeAssumptions:
    """Seconds (and rates) behind every path; to be replaced by measurements (docs/serving.md)."""

    ec2_launch_s: int = 90  # RunInstances to running, p5.48xlarge, capacity available
    ami_boot_s: int = 120  # firmware, kernel, NVIDIA driver and fabric manager on 8 GPUs
    nodeadm_raid0_s: int = 30  # mdadm RAID0 over the 8 NVMe disks + mkfs + mount
    kubelet_join_s: int = 30  # kubelet registers, VPC CNI ready, node Ready
    device_plugin_s: int = 30  # device-plugin pods pulled, started, nvidia.com/gpu advertised
    s3_hydration_gib_per_s: float = 1.0  # hydrator, 16 streams through the S3 gateway endpoint
    vllm_image_pull_s: int = 90  # ~10 GB engine image on a node that never ran it
    warm_pool_in_service_s: int = 15  # Warmed:Running -> InService
    preemption_s: int = 5  # placeholder evicted (grace 0) and the vLLM pod bound
    scale_signal_s: int = 30  # KEDA poll + HPA sync before a replica is asked for
    # Reading safetensors from the instance-store RAID0 into HBM across the TP ranks.
    nvme_load_gib_per_s: float = 2.0
    # After the weights are in HBM: KV-cache profiling, CUDA graph capture, torch.compile.
    engine_init_s: int = 150


ASSUMPTIONS = TimeToServeAssumptions()


def expected_load_s(weights_gib: float, a: TimeToServeAssumptions = ASSUMPTIONS) -> float:
    """Seconds from container start to ready: weights from NVMe into HBM, then engine init."""
    return weights_gib / a.nvme_load_gib_per_s + a.engine_init_s


def time_to_serve(weights_gib: float, a: TimeToServeAssumptions = ASSUMPTIONS) -> dict[str, dict[str, float]]:
    """Seconds per step of each path, for a replica whose weights weigh `weights_gib`."""
    load = expected_load_s(weights_gib, a)
    hydrate = weights_gib / a.s3_hydration_gib_per_s
    join = {"node joins (kubelet, CNI)": a.kubelet_join_s, "device plugin registers": a.device_plugin_s}
    return {
        "cold": {
            SIGNAL_STEP: a.scale_signal_s,
            "EC2 launch": a.ec2_launch_s,
            "AMI boot (driver, fabric manager)": a.ami_boot_s,
            "nodeadm RAID0 of instance store": a.nodeadm_raid0_s,
            **join,
            "S3 hydration of the weights": hydrate,
            "vLLM image pull": a.vllm_image_pull_s,
            LOAD_STEP: load,
        },
        "warm_node": {
            SIGNAL_STEP: a.scale_signal_s,
            "warm pool -> InService": a.warm_pool_in_service_s,
            "boot from STOPPED (driver, fabric manager)": a.ami_boot_s,
            "nodeadm RAID0 of instance store": a.nodeadm_raid0_s,
            **join,
            "S3 hydration of the weights": hydrate,
            "vLLM image pull": a.vllm_image_pull_s,
            LOAD_STEP: load,
        },
        "warm_reused": {
            SIGNAL_STEP: a.scale_signal_s,
            "warm pool -> InService": a.warm_pool_in_service_s,
            **join,
            LOAD_STEP: load,
        },
        "placeholder": {
            SIGNAL_STEP: a.scale_signal_s,
            "placeholder preempted, pod bound": a.preemption_s,
            LOAD_STEP: load,
        },
    }


def total_s(steps: dict[str, float]) -> int:
    return round(sum(steps.values()))


def after_signal_s(steps: dict[str, float]) -> float:
    """A path without its scale-signal step (the simulator runs the controller loop itself)."""
    return sum(v for k, v in steps.items() if k != SIGNAL_STEP)
