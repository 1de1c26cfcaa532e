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
    "sizing": (("infra.sizing", "infra.sizing.search", "infra.sizing.calibrate", "infra.sizing.cli",
                "infra.catalog", "infra.config", "infra.files", "infra.node_labels"), CLOUD),
    # Only infra.cost.refresh talks to AWS, and the package does not import it.
    "cost": (("infra.cost", "infra.cost.model", "infra.cost.diff", "infra.cost.render", "infra.cost.resources",
              "infra.cost.fixtures", "infra.catalog.prices"), (*CLOUD, "infra.cost.refresh")),
    "rollout planning": (("infra.rollout.spec", "infra.rollout.regions", "infra.rollout.gates",
                          "infra.rollout.journal", "infra.rollout.runner", "infra.rollout.dryrun",
                          "infra.rollout.report", "infra.rollout.environment", "infra.rollout.interfaces",
                          "infra.rollout.state", "infra.rollout.adapters", "infra.preflight.inputs",
                          "infra.rollout.cli", "infra.preflight.cli"), (*CLOUD, "pulumi_policy")),
    # The manifests and layout are pure; the weights CLI loads boto3 only when a command runs.
    "weights manifests": (("infra.weights.k8s", "infra.weights.layout", "infra.weights.cli"), CLOUD),
    # The hydrator image ships neither pulumi nor PyYAML (infra/weights/requirements-hydrator.txt).
    "hydrator image": (("infra.weights.__main__", "infra.weights.hydrate", "infra.weights.upload"), ("pulumi", "yaml")),
}


@pytest.mark.parametrize("group", GROUPS)
def test_pure_modules_import_no_forbidden_module(group):
    modules, forbidden = GROUPS[group]
    code = f"import sys, {', '.join(modules)}\nprint(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"{group}: importing {modules} loaded {out.stdout.strip()}"
