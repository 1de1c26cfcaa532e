"""The llm-fleet workloads Pulumi program (project `llm-fleet-workloads`): the same resolved stack
-> everything behind the Kubernetes provider (vLLM, Envoy Gateway, KEDA, the warm pool, the
hydrator, observability), on the cluster the base stack of the same name exports.

Pulumi runs it from workloads/ (its `stackConfigDir: ..` reads ../Pulumi.<stack>.yaml, the one
config file of the stack); the repository root goes on the path for `infra`. Keep it thin.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402

from infra.core.resolve import resolve  # noqa: E402
from infra.program.compose import engine_config_entries  # noqa: E402
from infra.program.workloads import workloads  # noqa: E402

workloads(resolve(pulumi.get_stack(), ROOT, entries=engine_config_entries()))
