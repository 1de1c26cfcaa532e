"""The pure core imports no cloud SDK (DESIGN: pure core, effectful shell).

One interpreter per group (a subprocess costs ~1 s here); a module that pulls in a forbidden
one fails its group, and the message names what was loaded.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ("pulumi", "boto3", "botocore")

GROUPS = {
    "sizing": (("infra.core.sizing", "infra.core.sizing.search", "infra.core.sizing.calibrate", "infra.cli.size",
                "infra.core.catalog", "infra.core.config", "infra.core.files", "infra.core.labels"), CLOUD),
    # The cost package does not even import the price refresh.
    "cost": (("infra.core.cost", "infra.core.cost.model", "infra.core.cost.pricers", "infra.core.cost.context",
              "infra.core.cost.report", "infra.core.cost.nodegroup", "infra.core.cost.diff", "infra.core.cost.render",
              "infra.core.graph", "tests.cost.fixtures", "infra.core.catalog.prices"), (*CLOUD, "infra.core.catalog.refresh")),
    # The refresh is pure over an injected client; the boto3 one is made in infra.ops.aws, when asked.
    "price refresh": (("infra.core.catalog.refresh", "infra.ops.aws", "infra.cli.cost"), CLOUD),
    "rollout planning": (("infra.core.rollout.spec", "infra.core.rollout.regions", "infra.core.rollout.gates",
                          "infra.core.rollout.journal", "infra.ops.rollout.runner", "infra.core.rollout.dryrun",
                          "infra.core.rollout.report", "infra.core.rollout.environment", "infra.core.rollout.interfaces",
                          "infra.ops.rollout.state", "infra.cli.adapters", "infra.ops.preflight.inputs",
                          "infra.cli.rollout", "infra.cli.preflight"), (*CLOUD, "pulumi_policy")),
    # The manifests and layout are pure; the weights CLI loads boto3 only when a command runs.
    "weights manifests": (("infra.program.serving.hydrator", "infra.core.weights_layout", "infra.cli.weights"), CLOUD),
    # The hydrator image ships neither pulumi nor PyYAML (infra/ops/weights/requirements-hydrator.txt).
    "hydrator image": (("infra.cli.weights", "infra.ops.weights.hydrate", "infra.ops.weights.upload"), ("pulumi", "yaml")),
}


@pytest.mark.parametrize("group", GROUPS)
def test_pure_modules_import_no_forbidden_module(group):
    modules, forbidden = GROUPS[group]
    code = f"import sys, {', '.join(modules)}\nprint(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"{group}: importing {modules} loaded {out.stdout.strip()}"
