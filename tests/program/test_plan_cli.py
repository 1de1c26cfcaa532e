"""`python -m infra plan`: output, JSON document, atomic writes, and a run from a fresh copy."""
from __future__ import annotations

import json
import shutil
from decimal import Decimal
import subprocess
import sys

import jsonschema
import pytest

from infra.cli import main
from infra.cli.output import emit_json
from infra.cli.plan import short_type
from tests.money_rule import assert_money_rule
from infra.core.paths import REPO_ROOT as PROJECT_DIR
from infra.program.offline import normalize, region_azs

VERDICT = {"type": "object", "required": ["passed", "mandatory", "advisory", "violations"]}
PLAN_SCHEMA = {
    "type": "object",
    "required": ["stack", "region", "plan", "resources", "projects", "cost", "policy"],
    "additionalProperties": False,
    "properties": {
        "cost": {"type": "object"},
        "tco": {"type": "object", "required": ["usd_per_month", "usd_per_million_tokens", "apis"]},
        "policy": VERDICT,
        "projects": {
            "type": "object",
            "required": ["llm-fleet", "llm-fleet-workloads"],
            "additionalProperties": {
                "type": "object", "required": ["resources", "outputs", "policy", "cost"], "additionalProperties": False,
                "properties": {"resources": {"type": "integer", "minimum": 1}, "outputs": {"type": "object"},
                               "policy": VERDICT, "cost": {"type": "object", "required": ["usd_per_month"]}},
            },
        },
        "stack": {"type": "string"},
        "region": {"type": "string"},
        "plan": {"type": "object", "required": ["instance_type", "nodes_per_az", "warm_spares_per_az", "cost"]},
        "resources": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["urn", "type", "name", "parent", "inputs"],
                "additionalProperties": False,
                "properties": {
                    "urn": {"type": "string", "pattern": "^urn:pulumi:[^:]+::llm-fleet(-workloads)?::"},
                    "type": {"type": "string"},
                    "name": {"type": "string"},
                    "parent": {"type": ["string", "null"]},
                    "inputs": {"type": "object"},
                    "id": {"type": "string"},
                    "propertyDependencies": {"type": "object",
                                             "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                },
            },
        },
    },
}


def _size(stack: str = "prod"):
    from infra.core.resolve import resolve

    return resolve(stack).plan


# The verified prod plan's worst case is above prod's declared budget (README, Seed 004), so
# `plan --stack prod` reports the stack spend cap and exits 3.
PROD_EXIT = 3
PROD_VIOLATIONS = ["gpu-spend-cap-stack"]


def test_json_to_stdout_is_the_documented_shape(prod_run, capsys, monkeypatch):
    import infra.program.offline

    monkeypatch.setattr(infra.program.offline, "plan_stack", lambda stack, project_dir: prod_run)
    assert main(["plan", "--stack", "prod", "--json", "-"]) == PROD_EXIT
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, PLAN_SCHEMA)
    assert [v["policy"] for v in doc["policy"]["violations"]] == PROD_VIOLATIONS
    assert_money_rule(doc)  # plan.cost and cost: money as decimal strings
    assert doc["stack"] == "prod" and doc["region"] == "us-east-1"
    assert doc["plan"] == json.loads(json.dumps(_size().to_dict()))  # the plan as `size` issues it
    types = {r["type"] for r in doc["resources"]}
    assert "aws:eks/cluster:Cluster" in types and "llm-fleet:gpu:GpuNodeGroup" in types
    # inputs as the engine sees them: camelCase keys, integral numbers as ints
    ng = next(r for r in doc["resources"] if r["name"] == "gpu-us-east-1a" and r["type"].startswith("aws:"))
    assert isinstance(ng["inputs"]["scalingConfig"]["maxSize"], int)
    assert "scaling_config" not in ng["inputs"]


def test_human_output_and_json_file(prod_run, capsys, monkeypatch, tmp_path):
    import infra.program.offline

    monkeypatch.setattr(infra.program.offline, "plan_stack", lambda stack, project_dir: prod_run)
    target = tmp_path / "plan.json"
    assert main(["plan", "--json", str(target)]) == PROD_EXIT
    out = capsys.readouterr().out
    assert "instance type     p5.48xlarge" in out
    assert "GPU nodes per AZ  min" in out and "warm spare" in out
    assert "aws:eks:NodeGroup" in out and "us-east-1c" in out
    assert "kubeconfig                [secret]" in out
    assert "Project llm-fleet (the AWS base" in out and "Project llm-fleet-workloads (in-cluster" in out
    assert "policy per project" in out
    assert "vs API" in out and "break-even tokens/day" in out  # the short self-host vs API block
    assert json.loads(target.read_text())["stack"] == "prod"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temp file left behind


def test_json_into_missing_directory_is_a_usage_error(prod_run, capsys, monkeypatch, tmp_path):
    import infra.program.offline

    monkeypatch.setattr(infra.program.offline, "plan_stack", lambda stack, project_dir: prod_run)
    assert main(["plan", "--json", str(tmp_path / "nope" / "plan.json")]) == 2
    assert "--json" in capsys.readouterr().err


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text('{"old": true}')
    with pytest.raises(TypeError):
        emit_json(str(target), {"bad": object.__new__(type("X", (), {"__str__": None}))})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


@pytest.mark.parametrize(
    "token, short",
    [("aws:ec2/vpc:Vpc", "aws:ec2:Vpc"), ("llm-fleet:gpu:GpuNodeGroup", "llm-fleet:gpu:GpuNodeGroup"),
     ("aws:s3/bucketPolicy:BucketPolicy", "aws:s3:BucketPolicy")],
)
def test_short_type(token, short):
    assert short_type(token) == short


def test_normalize_and_region_azs():
    assert normalize({"b": 2.0, "a": [1.5, {"c": 3.0}]}) == {"a": [1.5, {"c": 3}], "b": 2}
    assert list(normalize({"b": 1, "a": 2})) == ["a", "b"]
    assert region_azs("us-east-1")[0] == ("us-east-1a", "use1-az1")
    assert [n for n, _ in region_azs("ap-northeast-1")] == ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"]
    assert region_azs("eu-central-1")[2][1] == "euc1-az3"


def test_fresh_copy_of_the_repository_plans_prod(tmp_path):
    """What a fresh clone has (tracked and unignored files, no caches) runs `plan` end to end."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
    ).stdout.split()
    clone = tmp_path / "clone"
    for rel in listed:
        src = PROJECT_DIR / rel
        if src.is_file() and "__pycache__" not in rel:
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    out = tmp_path / "prod.json"
    proc = subprocess.run(
        [sys.executable, "-m", "infra", "plan", "--stack", "prod", "--json", str(out)],
        cwd=clone, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == PROD_EXIT, proc.stderr
    assert proc.stderr == ""
    assert "llm-fleet plan: stack prod in us-east-1" in proc.stdout
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, PLAN_SCHEMA)
    assert len(doc["resources"]) > 50


LEAN_CHECK = r"""
import importlib, sys
from infra.program.offline.lean_imports import _LeanPackage, use_lean_aws_imports
use_lean_aws_imports()
import pulumi_aws as aws
ec2 = sys.modules["pulumi_aws.ec2"]
assert isinstance(ec2, _LeanPackage) and aws.ec2 is ec2
assert aws.ec2.LaunchTemplate is importlib.import_module("pulumi_aws.ec2.launch_template").LaunchTemplate
assert aws.ec2.get_instance_type_offerings.__module__ == "pulumi_aws.ec2.get_instance_type_offerings"
assert callable(aws.ec2.get_instance_type_offerings)
assert not ec2.__dict__.get("_lean_full_load")
from pulumi_aws.ec2 import LaunchTemplateMetadataOptionsArgs  # lives in _inputs: falls back to the real __init__
assert ec2.__dict__.get("_lean_full_load")
assert aws.ec2.Vpc is importlib.import_module("pulumi_aws.ec2.vpc").Vpc
assert "Instance" in dir(aws.ec2)
print("ok")
"""


def test_lean_aws_imports_resolve_to_the_real_classes():
    proc = subprocess.run([sys.executable, "-c", LEAN_CHECK], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_failed_plan_writes_its_failure_as_json(tmp_path, capsys):
    """Issue 14: a failed plan left no JSON, which the PR preview read as a removed stack. A stack
    without its policies/config.<stack>.json fails as the real preview would, before the program runs."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(PROJECT_DIR / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    target = tmp_path / "prod.json"
    assert main(["plan", "--stack", "prod", "--project-dir", str(tmp_path), "--json", str(target)]) == 2
    doc = json.loads(target.read_text())
    assert doc["stack"] == "prod" and doc["exit_code"] == 2
    assert "policies/config.prod.json is missing" in doc["error"]
    assert "policies/config.prod.json is missing" in capsys.readouterr().err
    assert main(["plan", "--stack", "prod", "--project-dir", str(tmp_path), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2  # bare --json: the failure on stdout


def test_both_projects_in_one_document_with_one_combined_gate(prod_run, capsys, monkeypatch):
    """Every URN names its project; the combined gate covers both; each project carries what its
    own preview would report; the whole-stack numbers equal the single-project figures of before
    (the split moved resources between projects, it added no priced one)."""
    import infra.program.offline
    from infra.core.cost import cost_of_plan

    monkeypatch.setattr(infra.program.offline, "plan_stack", lambda stack, project_dir: prod_run)
    assert main(["plan", "--stack", "prod", "--json", "-"]) == PROD_EXIT
    doc = json.loads(capsys.readouterr().out)
    by_project = {}
    for r in doc["resources"]:
        by_project.setdefault(r["urn"].split("::")[1], []).append(r)
    assert {p: len(rs) for p, rs in by_project.items()} == {p: v["resources"] for p, v in doc["projects"].items()}
    assert not [r for r in by_project["llm-fleet"] if r["type"].startswith("kubernetes:")]
    # The GPU fleet is the base's: its worst case is over prod's budget (README), the workloads pass.
    assert [v["policy"] for v in doc["policy"]["violations"]] == PROD_VIOLATIONS
    assert {p: v["policy"]["passed"] for p, v in doc["projects"].items()} == {"llm-fleet": False,
                                                                            "llm-fleet-workloads": True}
    assert cost_of_plan(doc).to_dict()["scenarios"] == doc["cost"]["scenarios"]
    base, work = (doc["projects"][p]["cost"]["usd_per_month"] for p in ("llm-fleet", "llm-fleet-workloads"))
    # The base holds the GPU fleet; the workloads only what the gateway's NLB costs.
    assert Decimal(base["worst"]) > 100 * Decimal(work["worst"]) > 0


@pytest.mark.parametrize("project, name, code", [("base", "llm-fleet", PROD_EXIT), ("workloads", "llm-fleet-workloads", 0)])
def test_one_project_as_its_own_preview_sees_it(prod_run, capsys, monkeypatch, project, name, code):
    import infra.program.offline
    from infra.core.cost import cost_of_document
    from infra.core.graph import graph_of

    monkeypatch.setattr(infra.program.offline, "plan_stack", lambda stack, project_dir: prod_run)
    assert main(["plan", "--stack", "prod", "--project", project, "--json", "-"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert doc["project"] == name and "plan" not in doc and "projects" not in doc
    assert {r["urn"].split("::")[1] for r in doc["resources"]} == {name}
    # Re-read (what cost-diff does), the document prices to the cost it carries: nothing synthesised.
    again = cost_of_document(graph_of(doc)).to_dict()
    assert again["scenarios"] == doc["cost"]["scenarios"]
    assert main(["plan", "--stack", "prod", "--project", project]) == code
    out = capsys.readouterr().out
    assert f"Project {name} (" in out and out.count("Project llm-fleet") == 1
