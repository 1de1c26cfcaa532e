"""Where the repository's own files are: the project root (Pulumi.yaml, Pulumi.<stack>.yaml,
stacks/, policies/, docs/). Commands take `--project-dir` to point elsewhere."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STACKS_DIRNAME = "stacks"  # environments' rollout plans: <project>/stacks/<env>.yaml
POLICIES_DIRNAME = "policies"
WORKLOADS_DIRNAME = "workloads"  # the in-cluster Pulumi project: <project>/workloads/Pulumi.yaml
GLOBAL_DIRNAME = "global"  # the environment's Route 53 project: <project>/global/Pulumi.yaml
DOCS_DIR = REPO_ROOT / "docs"
