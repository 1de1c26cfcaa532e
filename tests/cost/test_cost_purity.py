"""infra/cost is pure: no pulumi, no boto3. Only infra.cost.refresh talks to AWS, and the
package does not import it."""
import subprocess
import sys

PURE = ["infra.cost", "infra.cost.model", "infra.cost.diff", "infra.cost.render", "infra.cost.resources",
        "infra.cost.fixtures", "infra.catalog.prices"]


def test_cost_modules_import_no_cloud_sdk():
    code = (
        f"import sys, {', '.join(PURE)}\n"
        "bad = [m for m in ('pulumi', 'boto3', 'botocore', 'infra.cost.refresh') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the pure cost modules imported {out}"
