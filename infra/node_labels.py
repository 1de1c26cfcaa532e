"""How GPU and system nodes are labelled and tainted: read by the node groups that set them and
by everything that selects or tolerates them (serving, the hydrator DaemonSet)."""
from __future__ import annotations

ROLE_LABEL = "llm-fleet/role"
AZ_LABEL = "llm-fleet/az"
GPU_NODE_LABELS = {ROLE_LABEL: "gpu"}
SYSTEM_NODE_LABELS = {ROLE_LABEL: "system"}

# The NVIDIA device plugin's resource name, also the key of the GPU nodes' NoSchedule taint.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
