"""The llm-fleet global Pulumi program (project `llm-fleet-global`): an environment's global stack
-> one health-checked Route 53 record per region stack under the hostname every region serves.

Its stack name is the environment (`stacks/<env>.yaml`, whose `global:` section configures it); the
regions are resolved as their own programs resolve them, so the records never send a region more
than it is sized for. `python -m infra plan --stack prod --project global` runs this file under
mocks, with each region's outputs from its own offline plan. Keep it thin.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402

from infra.core.global_stack import resolve_global  # noqa: E402
from infra.program.global_endpoint import global_config_entries, global_endpoint  # noqa: E402

global_endpoint(resolve_global(pulumi.get_stack(), ROOT, entries=global_config_entries()))
