"""`python -m infra deploy` and `in-vpc`, the wiring `deploy` and `rollout` share, the source
archive and the result lines a build prints back."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from infra.cli import adapters, main
from infra.core import deploy
from infra.core.errors import EXIT_ROLLOUT_HALTED, EXIT_USAGE, UserError, WorkspaceError
from infra.core.paths import REPO_ROOT
from infra.ops.deploy.source import source_archive
from infra.ops.deploy.workspace import StackWorkspace

from deploy_support import FakeProject

DEPLOYED = {deploy.OUT_KUBECONFIG: "{}", deploy.OUT_CLUSTER_NAME: "llm-fleet-prod"}


@pytest.fixture
def fake_path(monkeypatch):
    calls: list = []
    base, work = FakeProject("base", calls, DEPLOYED), FakeProject("workloads", calls)

    class LoadBalancers:
        def wait_gone(self, stack, cluster_name, *, on_output):
            calls.append(("elbv2", "wait-gone", {}))

    ws = StackWorkspace(base=base, workloads=work, gpu_urns=lambda s: ["urn:gpu"], config_text_of=lambda s: "",
                        load_balancers=LoadBalancers())
    monkeypatch.setattr(adapters, "deploy_path", lambda project_dir: adapters.DeployPath(project_dir, ws, None,
                                                                                        lambda s: True))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/local/bin/{name}")
    return base, work, calls


def test_deploy_runs_both_projects_and_reports_json(fake_path, capsys):
    base, work, calls = fake_path
    assert main(["deploy", "--stack", "prod", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc == {"stack": "prod", "action": "up", "workloads": "in the VPC (CodeBuild)", "result": "succeeded",
                   "changes": {"create": 6}}
    assert [(who, op) for who, op, _ in calls] == [("base", "up"), ("workloads", "up"), ("base", "up-full")]
    assert "1/3 base without its 1 GPU node group resources" in captured.err


def test_a_failed_step_exits_5_with_its_message(fake_path, capsys):
    base, work, calls = fake_path
    work.fail["up"] = WorkspaceError("prod: workloads up in the VPC: build p:1 FAILED: error: boom")
    assert main(["deploy", "--stack", "prod"]) == EXIT_ROLLOUT_HALTED
    assert "build p:1 FAILED: error: boom" in capsys.readouterr().err


def test_destroy_needs_yes_and_no_deletion_protection(fake_path, capsys, tmp_path):
    assert main(["deploy", "--stack", "prod", "--destroy"]) == EXIT_USAGE
    assert "add --yes" in capsys.readouterr().err
    assert main(["deploy", "--stack", "prod", "--destroy", "--yes"]) == EXIT_USAGE
    assert "deletion_protection: true is not allowed for --destroy" in capsys.readouterr().err
    project = _project_copy(tmp_path, "deletion_protection: false")
    base, work, calls = fake_path
    assert main(["deploy", "--stack", "prod", "--destroy", "--yes", "--project-dir", str(project)]) == 0
    assert [(who, op) for who, op, _ in calls] == [("workloads", "destroy"), ("elbv2", "wait-gone"), ("base", "destroy")]


def test_deploy_refuses_a_stale_pack_config(fake_path, capsys, tmp_path):
    project = _project_copy(tmp_path)
    (project / "policies" / "config.prod.json").write_text("{}\n")
    assert main(["deploy", "--stack", "prod", "--project-dir", str(project)]) == EXIT_USAGE
    assert "out of date" in capsys.readouterr().err


def _project_copy(tmp_path: Path, cluster_line: str | None = None, *, public: bool = False) -> Path:
    project = tmp_path / "repo"
    (project / "policies").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    text = (REPO_ROOT / "Pulumi.prod.yaml").read_text()
    if cluster_line:
        text = text.replace("  llm-fleet:cluster:\n", f"  llm-fleet:cluster:\n    {cluster_line}\n")
    if public:
        text = text.replace("endpoint_public_access: false",
                            "endpoint_public_access: true\n    public_access_cidrs: [203.0.113.0/24]")
    (project / "Pulumi.prod.yaml").write_text(text)
    shutil.copy(REPO_ROOT / "policies" / "config.prod.json", project / "policies" / "config.prod.json")
    return project


def test_the_deploy_path_puts_a_private_stacks_workloads_and_promql_in_the_vpc(tmp_path):
    from infra.ops.deploy.prometheus import InVpcPrometheus
    from infra.ops.deploy.workspace import InVpcWorkspace
    from infra.ops.rollout.automation import AutomationWorkspace
    from infra.ops.rollout.health import UrlPrometheus

    private = adapters.deploy_path(REPO_ROOT)
    assert isinstance(private.workspace.workloads.pick("prod"), InVpcWorkspace)
    assert isinstance(private.prometheus_for("https://p.{region}", "prod")("prod"), InVpcPrometheus)
    public = adapters.deploy_path(_project_copy(tmp_path, public=True))
    local = public.workspace.workloads.pick("prod")
    assert isinstance(local, AutomationWorkspace) and local.work_dir == public.project_dir / "workloads"
    assert local.repo_dir == public.project_dir  # policy packs and pack configs from the repository root
    assert isinstance(public.prometheus_for("https://p.{region}", "prod")("prod"), UrlPrometheus)


def test_gpu_urns_are_the_offline_plans_gpu_components_and_children():
    urns = adapters.gpu_urns("prod", REPO_ROOT)
    groups = [u for u in urns if u.endswith(("::gpu-us-east-1a", "::gpu-us-east-1b", "::gpu-us-east-1c"))]
    assert {u.split("::")[2].rsplit("$", 1)[-1] for u in groups} >= {deploy.GPU_NODE_GROUP_TYPE}
    assert all(u.startswith("urn:pulumi:prod::llm-fleet::") for u in urns)
    assert {"aws:eks/nodeGroup:NodeGroup", "aws:ec2/launchTemplate:LaunchTemplate"} <= {
        u.split("::")[2].rsplit("$", 1)[-1] for u in urns}
    assert not [u for u in urns if "cluster-system" in u]  # the system nodes are in the first pass


def test_rollout_deploys_through_the_same_path(monkeypatch, capsys, tmp_path):
    """The real rollout builds its workspace and PromQL clients from `deploy_path`."""
    def refuse(project_dir):
        raise UserError("deploy path requested")

    monkeypatch.setattr(adapters, "deploy_path", refuse)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/local/bin/{name}")
    assert main(["rollout", "stacks/prod.yaml", "--state-dir", str(tmp_path)]) == EXIT_USAGE
    assert "deploy path requested" in capsys.readouterr().err


# --- what the build prints back, and what it is given ------------------------------------------------


def test_result_lines_round_trip_and_garbling_is_caught():
    doc = {"steps": [{"urn": "x" * 20000}], "changeSummary": {"create": 1}}
    lines = deploy.result_lines(doc)
    assert len(lines) > 3 and all(len(line) < deploy.RESULT_CHUNK_CHARS + 40 for line in lines)
    assert deploy.parse_result(["noise", *lines, "more noise"]) == doc
    assert deploy.parse_result(["no result here"]) is None
    with pytest.raises(ValueError, match="garbled"):
        deploy.parse_result(lines[:1] + lines[2:])


def test_in_vpc_emit_prints_the_document_back(tmp_path, capsys):
    path = tmp_path / "preview.json"
    path.write_text(json.dumps({"steps": []}))
    assert main(["in-vpc", "emit", str(path)]) == 0
    assert deploy.parse_result(capsys.readouterr().out.splitlines()) == {"steps": []}
    path.write_text("")  # a preview that failed before printing
    assert main(["in-vpc", "emit", str(path)]) == 0
    assert deploy.parse_result(capsys.readouterr().out.splitlines()) is None


def test_in_vpc_prometheus_needs_a_list_of_queries(monkeypatch, capsys):
    monkeypatch.setenv(deploy.QUERIES_ENV, "not json")
    assert main(["in-vpc", "prometheus", "--stack", "prod"]) == EXIT_USAGE
    assert deploy.QUERIES_ENV in capsys.readouterr().err


def test_source_archive_is_the_builds_files_deterministically(tmp_path):
    files = ["Pulumi.yaml", "Pulumi.prod.yaml", "__main__.py", "requirements.txt", "workloads/__main__.py",
             "infra/core/x.py", "infra/core/__pycache__/x.cpython-311.pyc", "tests/test_x.py", "docs/a.md",
             "policies/config.prod.json", ".venv/lib/site.py"]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    one = source_archive(tmp_path, files=files)
    again = source_archive(tmp_path, files=reversed(files))
    assert one.data == again.data and one.sha256 == again.sha256
    assert one.files == ("Pulumi.prod.yaml", "Pulumi.yaml", "__main__.py", "infra/core/x.py",
                         "policies/config.prod.json", "requirements.txt", "workloads/__main__.py")
    rolled = source_archive(tmp_path, {"Pulumi.prod.yaml": "older"}, files=files)
    assert zipfile.ZipFile(io.BytesIO(rolled.data)).read("Pulumi.prod.yaml") == b"older" and rolled.sha256 != one.sha256
