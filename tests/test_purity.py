"""The pure core imports neither pulumi nor boto3 (DESIGN: pure core, effectful shell)."""
import subprocess
import sys

import pytest

PURE = ["infra.sizing", "infra.sizing.search", "infra.sizing.calibrate", "infra.sizing.cli", "infra.catalog", "infra.config"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_cloud_sdk(module):
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in ('pulumi', 'boto3', 'botocore') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"{module} imported {out}"
