"""The deploy path's orchestration: three passes up, workloads-first destroy, both previews merged,
the in-VPC workloads project (fakes for every edge)."""
from __future__ import annotations

import pytest

from infra.core import deploy
from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import InVpcResult
from infra.ops.deploy.workspace import ByStack, InVpcWorkspace, StackWorkspace, merge_preview_documents

from deploy_support import FakeProject, FakeRunner

GPU = ("urn:gpu-a", "urn:gpu-a-lt", "urn:gpu-b")
DEPLOYED = {deploy.OUT_KUBECONFIG: "{}", deploy.OUT_CLUSTER_NAME: "llm-fleet-prod"}


class FakeLoadBalancers:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def wait_gone(self, stack, cluster_name, *, on_output):
        self.calls.append(("elbv2", "wait-gone", {"stack": stack, "cluster": cluster_name}))


def _stack(deployed=DEPLOYED):
    calls: list = []
    base, work = FakeProject("base", calls, deployed), FakeProject("workloads", calls)
    ws = StackWorkspace(base=base, workloads=work, gpu_urns=lambda stack: GPU,
                        config_text_of=lambda stack: f"config of {stack}", load_balancers=FakeLoadBalancers(calls))
    return ws, base, work, calls


def _ops(calls):
    return [(who, op) for who, op, _ in calls]


def test_up_runs_the_base_without_gpu_groups_then_workloads_then_the_base_in_full():
    ws, base, work, calls = _stack()
    said: list[str] = []
    outcome = ws.up("prod", on_output=said.append)
    assert _ops(calls) == [("base", "up"), ("workloads", "up"), ("base", "up-full")]
    assert calls[0][2]["exclude"] == GPU and calls[2][2]["exclude"] == ()
    assert outcome.result == "succeeded" and outcome.changes == {"create": 6}
    assert [s.split(" ", 1)[1][:3] for s in said] == ["1/3", "2/3", "3/3"]


def test_a_gpu_group_without_capacity_fails_only_the_last_pass():
    """One AZ out of capacity leaves the cluster and the in-cluster layer up (issue 12, problem 12)."""
    ws, base, work, calls = _stack()
    base.fail["up-full"] = WorkspaceError("prod: up failed: InsufficientInstanceCapacity in us-east-1c")
    with pytest.raises(WorkspaceError, match="InsufficientInstanceCapacity.*in-cluster layer are up"):
        ws.up("prod", on_output=lambda s: None)
    assert _ops(calls) == [("base", "up"), ("workloads", "up"), ("base", "up-full")]


@pytest.mark.parametrize("failing, ran", [
    ("base", [("base", "up")]),
    ("workloads", [("base", "up"), ("workloads", "up")]),
])
def test_an_earlier_failure_stops_the_later_passes(failing, ran):
    ws, base, work, calls = _stack()
    {"base": base, "workloads": work}[failing].fail["up"] = WorkspaceError("boom")
    with pytest.raises(WorkspaceError, match="boom"):
        ws.up("prod", on_output=lambda s: None)
    assert _ops(calls) == ran


def test_rollback_config_reaches_every_pass():
    ws, base, work, calls = _stack()
    ws.up("prod", on_output=lambda s: None, config_file="/tmp/old.yaml")
    assert {c[2]["config_file"] for c in calls} == {"/tmp/old.yaml"}


def test_preview_merges_both_projects_once_the_base_has_a_cluster():
    ws, base, work, calls = _stack()
    work.violations = [{"policy": "p", "enforcement": "advisory", "urn": "u", "message": "m"}]
    outcome = ws.preview("prod", policy_packs=["policies"], on_output=lambda s: None)
    assert _ops(calls) == [("base", "preview"), ("workloads", "preview")]
    assert [s["urn"] for s in outcome.document["steps"]] == ["urn:base", "urn:workloads"]
    assert outcome.changes == {"create": 2} and outcome.document["changeSummary"] == {"create": 2}
    assert outcome.policy_violations == tuple(work.violations)


def test_first_preview_has_no_cluster_to_preview_the_workloads_against():
    ws, base, work, calls = _stack(deployed={})
    said: list[str] = []
    outcome = ws.preview("prod", policy_packs=["policies"], on_output=said.append)
    assert _ops(calls) == [("base", "preview")] and outcome.document == base.preview_document
    assert "workloads not previewed" in said[0]


def test_destroy_goes_workloads_load_balancer_base():
    """The gateway's NLB lives in the VPC behind a Service finalizer: it must be gone before the base."""
    ws, base, work, calls = _stack()
    ws.destroy("prod", on_output=lambda s: None)
    assert _ops(calls) == [("workloads", "destroy"), ("elbv2", "wait-gone"), ("base", "destroy")]
    assert calls[1][2] == {"stack": "prod", "cluster": "llm-fleet-prod"}


def test_destroy_of_a_base_without_cluster_skips_the_workloads():
    ws, base, work, calls = _stack(deployed={})
    ws.destroy("prod", on_output=lambda s: None)
    assert _ops(calls) == [("base", "destroy")]


def test_refresh_and_outputs_and_config_text():
    ws, base, work, calls = _stack()
    ws.refresh("prod", on_output=lambda s: None)
    assert _ops(calls) == [("base", "refresh"), ("workloads", "refresh")]
    assert ws.outputs("prod") == DEPLOYED and ws.config_text("prod") == "config of prod"


def test_a_missing_base_stack_reads_as_not_deployed():
    ws, base, work, calls = _stack()
    base.fail["outputs"] = WorkspaceError("prod: outputs: stack not found", kind="not-found")
    ws.preview("prod", policy_packs=[], on_output=lambda s: None)
    assert _ops(calls) == [("base", "preview")]
    base.fail["outputs"] = WorkspaceError("prod: outputs: another update holds the lock", kind="locked")
    with pytest.raises(WorkspaceError, match="lock"):
        ws.preview("prod", policy_packs=[], on_output=lambda s: None)


# --- the workloads project in the VPC ---------------------------------------------------------------------


def _in_vpc(violations=()):
    runner = FakeRunner()
    local = FakeProject("local", [], {"health_url": "https://x/health"})
    seen: list = []

    def evaluate(stack, document):
        seen.append((stack, document))
        return list(violations)

    return InVpcWorkspace(runner, evaluate_policies=evaluate, outputs_from=local), runner, seen


PREVIEW_DOC = {"steps": [{"op": "create", "urn": "urn:w"}], "changeSummary": {"create": 1, "same": 4}}


def test_in_vpc_preview_reads_the_document_back_and_runs_the_pack_over_it():
    ws, runner, seen = _in_vpc([{"policy": "p", "enforcement": "advisory", "urn": "u", "message": "m"}])
    runner.results[deploy.PREVIEW] = InVpcResult("p:1", "SUCCEEDED", PREVIEW_DOC)
    outcome = ws.preview("prod", policy_packs=["policies"], on_output=lambda s: None)
    assert runner.runs[0][:2] == ("prod", "preview")
    assert seen == [("prod", PREVIEW_DOC)]
    assert outcome.changes == {"create": 1, "same": 4} and outcome.document == PREVIEW_DOC
    assert outcome.policy_violations[0]["policy"] == "p"


def test_in_vpc_preview_failing_on_a_mandatory_violation_is_a_gate_finding():
    ws, runner, _ = _in_vpc([{"policy": "p", "enforcement": "mandatory", "urn": "u", "message": "m"}])
    runner.results[deploy.PREVIEW] = InVpcResult("p:1", "FAILED", PREVIEW_DOC)
    assert ws.preview("prod", policy_packs=[], on_output=lambda s: None).policy_violations[0]["enforcement"] == "mandatory"


@pytest.mark.parametrize("result", [InVpcResult("p:1", "FAILED", PREVIEW_DOC, ("error: x",)),
                                    InVpcResult("p:1", "SUCCEEDED", None, ("no document",))])
def test_in_vpc_preview_without_a_verdict_fails_with_the_log_tail(result):
    ws, runner, _ = _in_vpc()
    runner.results[deploy.PREVIEW] = result
    with pytest.raises(WorkspaceError, match=f"build p:1 {result.status}: {result.log_tail[0]}"):
        ws.preview("prod", policy_packs=[], on_output=lambda s: None)


def test_in_vpc_up_ships_a_rollback_config_and_reads_outputs_locally(tmp_path):
    ws, runner, _ = _in_vpc()
    old = tmp_path / "old.yaml"
    old.write_text("config: {}\n")
    outcome = ws.up("prod", on_output=lambda s: None, config_file=str(old))
    assert runner.runs == [("prod", "up", {}, "config: {}\n")]
    assert outcome.outputs == {"health_url": "https://x/health"}
    with pytest.raises(WorkspaceError, match="no --exclude"):
        ws.up("prod", on_output=lambda s: None, exclude=["urn:x"])
    runner.results[deploy.DESTROY] = InVpcResult("p:9", "TIMED_OUT", None, ("still deleting",))
    with pytest.raises(WorkspaceError, match="workloads destroy in the VPC: build p:9 TIMED_OUT: still deleting"):
        ws.destroy("prod", on_output=lambda s: None)


def test_by_stack_picks_a_workspace_per_stack():
    calls: list = []
    vpc, local = FakeProject("vpc", calls), FakeProject("local", calls)
    ws = ByStack(lambda stack: vpc if stack == "prod" else local)
    ws.up("prod", on_output=lambda s: None)
    ws.refresh("dev", on_output=lambda s: None)
    ws.destroy("prod", on_output=lambda s: None)
    ws.preview("dev", policy_packs=[], on_output=lambda s: None)
    assert _ops(calls) == [("vpc", "up"), ("local", "refresh"), ("vpc", "destroy"), ("local", "preview")]


def test_merge_preview_documents_keeps_the_base_config():
    merged = merge_preview_documents({"config": {"aws:region": "us-east-1"}, "steps": [1]}, {"config": {}, "steps": [2]})
    assert merged["config"] == {"aws:region": "us-east-1"} and merged["steps"] == [1, 2]
    assert merge_preview_documents(None, {"steps": [2]}) is None
