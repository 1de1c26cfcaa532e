"""The llm-fleet policy pack: `pulumi preview --policy-pack policies [--policy-pack-config
policies/config.<stack>.json]`.

Building `PolicyPack` starts the analyzer server and never returns, so this file does nothing
else; the rules live in importable modules (`from policies import POLICIES`).
"""
import pathlib
import sys

# Pulumi runs this file from policies/; the rules import the repository's `infra` package
# (price catalog, cost model), so the repository root goes on the path first.
_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.rules import POLICIES  # noqa: E402

PolicyPack(
    name="llm-fleet",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
