"""State stores (local flock, S3 via moto server), the health checker, and the automation adapter."""
from __future__ import annotations

import http.server
import json
import threading
import types

import boto3
import yaml
import pytest

from infra.ops.rollout import automation
from infra.core.errors import RolloutLockedError, UserError, WorkspaceError
from infra.ops.rollout.health import GateHealthChecker, parse_prometheus
from infra.ops.rollout.s3state import S3StateStore
from infra.core.rollout.spec import HealthGate
from infra.ops.rollout.state import LocalStateStore
from rollout_support import Harness

# --- state stores ------------------------------------------------------------------------


def test_local_lock_is_exclusive_and_names_its_holder(tmp_path):
    a, b = LocalStateStore(tmp_path, "prod"), LocalStateStore(tmp_path, "prod")
    with a.lock({"user": "alice", "host": "h1", "pid": 1}):
        with pytest.raises(RolloutLockedError, match="locked by user=alice, host=h1, pid=1"):
            with b.lock({"user": "bob"}):
                pass
        with LocalStateStore(tmp_path, "staging").lock({"user": "bob"}):  # other environment: free
            pass
    with b.lock({"user": "bob"}):  # released
        pass


def test_local_journal_roundtrip_and_archive(tmp_path):
    store = LocalStateStore(tmp_path, "prod")
    assert store.read_journal() is None
    store.write_journal({"rollout_id": "r1", "status": "running"})
    assert store.read_journal()["rollout_id"] == "r1"
    store.archive_journal("r1", {"rollout_id": "r1", "status": "completed"})
    assert store.read_journal() is None
    assert json.loads((tmp_path / "prod" / "history" / "r1.json").read_text())["status"] == "completed"


@pytest.fixture
def s3_store(moto_endpoint):
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket="llm-fleet-rollouts")
    yield lambda: S3StateStore("llm-fleet-rollouts", "rollouts", "prod", client=client)
    for obj in client.list_objects_v2(Bucket="llm-fleet-rollouts").get("Contents", []):
        client.delete_object(Bucket="llm-fleet-rollouts", Key=obj["Key"])
    client.delete_bucket(Bucket="llm-fleet-rollouts")


def test_s3_lock_refuses_a_second_holder_and_can_be_broken(s3_store):
    first, second = s3_store(), s3_store()
    with first.lock({"user": "alice", "rollout": "r1"}):
        with pytest.raises(RolloutLockedError, match="locked by rollout=r1, user=alice.*--break-lock"):
            with second.lock({"user": "bob"}):
                pass
    with second.lock({"user": "bob"}):  # released by the first
        pass
    # A rollout killed without cleanup leaves the lock: --break-lock removes it.
    second._put("lock.json", {"user": "dead"}, IfNoneMatch="*")
    with pytest.raises(RolloutLockedError):
        with first.lock({"user": "alice"}):
            pass
    assert "removed the lock of user=dead" in first.break_lock()
    assert "no lock held" in first.break_lock()


def test_s3_store_runs_a_whole_rollout(s3_store, tmp_path):
    h = Harness(tmp_path)
    h.store = s3_store()
    h.workspace.fail[("east", "up")] = WorkspaceError("boom")
    assert h.run().status == "halted"
    assert h.store.read_journal()["status"] == "halted"
    del h.workspace.fail[("east", "up")]
    h.workspace.calls.clear()
    assert h.run(resume=True).status == "completed"
    assert h.workspace.ops("up") == ["east", "east2"]
    assert h.store.read_journal() is None
    assert h.store.read_deployed("west")["cost"] == {"worst": "500.00"}


def test_s3_restart_moves_an_unreadable_journal_aside(s3_store, tmp_path):
    """Issue 14: `--restart` could not get past a corrupt journal (here: in the S3 store)."""
    h = Harness(tmp_path)
    h.store = s3_store()
    h.store.s3.put_object(Bucket=h.store.bucket, Key=h.store._key("journal.json"), Body=b"[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        h.run()
    assert h.run(restart=True).status == "completed"
    kept = h.store.s3.list_objects_v2(Bucket=h.store.bucket, Prefix=h.store._key("history/unreadable-journal-"))
    [obj] = kept["Contents"]
    assert h.store.s3.get_object(Bucket=h.store.bucket, Key=obj["Key"])["Body"].read() == b"[1, 2]"


# --- health --------------------------------------------------------------------------------

GATE = HealthGate.model_validate({
    "prometheus_url": "http://prom.{region}.test:9090/",
    "queries": [
        {"name": "ttft-p95", "query": 'histogram_quantile(0.95, x{model_name="m", region="{region}"})', "max_value": 0.6},
        {"name": "ready", "query": "up", "min_value": 1, "on_no_data": "pass"},
    ],
    "http": [{"name": "gw", "url": "https://llm.{region}.test/health"}],
})


def _vector(*values):
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": f"p{i}"}, "value": [0, str(v)]} for i, v in enumerate(values)]}}).encode()


def test_parse_prometheus_vector_scalar_and_errors():
    assert parse_prometheus(_vector(0.1, 0.2)) == [("pod=p0", 0.1), ("pod=p1", 0.2)]
    assert parse_prometheus(b'{"status":"success","data":{"resultType":"scalar","result":[0,"3"]}}') == [("", 3.0)]
    with pytest.raises(ValueError, match="bad_data"):
        parse_prometheus(b'{"status":"error","error":"bad_data"}')


def test_health_checker_fills_templates_and_judges_every_check():
    seen = []

    def fetch(url, timeout):
        seen.append(url)
        if "health" in url:
            return 503, b""
        if "histogram_quantile" in url:
            return 200, _vector(0.2, 0.9)
        return 200, _vector()

    report = GateHealthChecker(GATE, "prod", fetch).check("prod-us-west-2", "us-west-2")
    by = {c.name: c for c in report.checks}
    assert by["ttft-p95"].status == "fail" and "pod=p1=0.9 > 0.6" in by["ttft-p95"].detail
    assert by["ready"].status == "pass" and "no data" in by["ready"].detail
    assert by["gw"].status == "fail" and "HTTP 503, expected 200" in by["gw"].detail
    assert seen[0].startswith("http://prom.us-west-2.test:9090/api/v1/query?query=")
    assert "region%3D%22us-west-2%22" in seen[0] and "model_name%3D%22m%22" in seen[0]  # PromQL braces kept
    assert seen[2] == "https://llm.us-west-2.test/health"
    assert not report.ok


def test_an_slo_query_runs_bound_to_the_stacks_served_model_and_target():
    from urllib.parse import parse_qs, urlparse

    from infra.core.config import Workload

    gate = HealthGate.model_validate({"prometheus_url": "http://prom.test", "queries": [{"name": "e2e", "slo": "e2e_p95"}]})
    workload = Workload(concurrent_requests=1, input_tokens=1, output_tokens=1, ttft_p95_ms=600, tpot_p95_ms=40,
                        e2e_p95_ms=4000)
    seen = []

    def fetch(url, timeout):
        seen.append(parse_qs(urlparse(url).query)["query"][0])
        return 200, _vector(3.9, 4.2)

    report = GateHealthChecker(gate, "prod", fetch, slo_targets=lambda stack: (f"{stack}-model", workload)).check("s1", "r")
    assert 'vllm:e2e_request_latency_seconds_bucket{model_name="s1-model"}[5m]' in seen[0]
    assert report.checks[0].status == "fail" and "pod=p1=4.2 > 4" in report.checks[0].detail
    with pytest.raises(ValueError, match="needs the stacks' SLO targets"):
        GateHealthChecker(gate, "prod", fetch).check("s1", "r")


def test_health_checker_unreachable_endpoint_fails_the_check():
    def fetch(url, timeout):
        raise OSError("connection refused")

    report = GateHealthChecker(GATE, "prod", fetch).check("s", "us-east-1")
    assert [c.status for c in report.checks] == ["fail", "fail", "fail"]
    assert "connection refused" in report.checks[0].detail


def test_health_checker_over_http_on_loopback():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = _vector(0.3) if self.path.startswith("/api/v1/query") else b"ok"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        gate = HealthGate.model_validate({
            "prometheus_url": f"http://127.0.0.1:{port}",
            "queries": [{"name": "ttft-p95", "query": "x", "max_value": 0.6}],
            "http": [{"name": "gw", "url": f"http://127.0.0.1:{port}/health"}],
        })
        report = GateHealthChecker(gate, "prod").check("s", "us-east-1")
        assert report.ok, report.summary()
    finally:
        server.shutdown()


# --- the Automation API adapter (no pulumi binary: create_or_select_stack is faked) ----------


class _FakeAutoStack:
    def __init__(self, fail=None, events=()):
        self.fail, self.events, self.calls = fail, events, []

    def preview(self, **kwargs):
        self.calls.append(("preview", kwargs))
        for e in self.events:
            kwargs["on_event"](e)
        if self.fail:
            raise self.fail
        doc = {"steps": [{"op": "create", "urn": "u", "newState": {"type": "aws:ec2/vpc:Vpc", "inputs": {}}}]}
        return types.SimpleNamespace(stdout=json.dumps(doc), change_summary={"create": 1})

    def up(self, **kwargs):
        self.calls.append(("up", kwargs))
        if self.fail:
            raise self.fail
        summary = types.SimpleNamespace(result="succeeded", resource_changes={"update": 2})
        return types.SimpleNamespace(summary=summary, outputs={"weights_bucket": types.SimpleNamespace(value="b")})

    def outputs(self):
        return {"availability_zones": types.SimpleNamespace(value=["us-east-1a"])}

    def destroy(self, **kwargs):
        self.calls.append(("destroy", kwargs))
        if self.fail:
            raise self.fail


def _policy_event(level):
    pe = types.SimpleNamespace(policy_name="gpu-spend-cap", enforcement_level=level, resource_urn="urn:x",
                               message="spend must stay within budget")
    return types.SimpleNamespace(policy_event=pe)


@pytest.fixture
def fake_auto(monkeypatch, tmp_path):
    import pulumi.automation as auto

    made = {}

    def create_or_select_stack(stack_name, work_dir, opts=None):
        made["args"] = (stack_name, work_dir)
        return made["stack"]

    monkeypatch.setattr(auto, "create_or_select_stack", create_or_select_stack)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "config.prod.json").write_text("{}")
    return made, automation.AutomationWorkspace(tmp_path)


def test_automation_preview_passes_pack_and_collects_violations(fake_auto, tmp_path):
    made, ws = fake_auto
    made["stack"] = _FakeAutoStack(events=[_policy_event("advisory")])
    outcome = ws.preview("prod", policy_packs=["policies"], on_output=lambda s: None)
    kwargs = made["stack"].calls[0][1]
    assert made["args"] == ("prod", str(tmp_path))
    assert kwargs["policy_packs"] == [str(tmp_path / "policies")]
    assert kwargs["policy_pack_configs"] == [str(tmp_path / "policies" / "config.prod.json")]
    assert kwargs["json"] is True
    assert outcome.changes == {"create": 1} and outcome.document["steps"][0]["op"] == "create"
    assert outcome.policy_violations[0]["enforcement"] == "advisory"


def test_automation_mandatory_violation_failing_preview_is_a_gate_finding(fake_auto):
    from pulumi.automation import errors

    made, ws = fake_auto
    result = types.SimpleNamespace(stdout="", stderr="mandatory policy violation", code=255)
    made["stack"] = _FakeAutoStack(fail=errors.CommandError(result), events=[_policy_event("mandatory")])
    outcome = ws.preview("prod", policy_packs=["policies"], on_output=lambda s: None)
    assert outcome.policy_violations[0]["enforcement"] == "mandatory" and outcome.document is None


@pytest.mark.parametrize("exc_name, kind, text", [
    ("ConcurrentUpdateError", "locked", "pulumi cancel -s prod"),
    ("StackNotFoundError", "not-found", "stack not found"),
    ("CommandError", "failed", "up failed"),
])
def test_automation_errors_become_clear_workspace_errors(fake_auto, exc_name, kind, text):
    from pulumi.automation import errors

    made, ws = fake_auto
    result = types.SimpleNamespace(stdout="", stderr="error: [409] Conflict", code=255)
    made["stack"] = _FakeAutoStack(fail=getattr(errors, exc_name)(result))
    with pytest.raises(WorkspaceError) as info:
        ws.up("prod", on_output=lambda s: None)
    assert info.value.kind == kind and text in str(info.value)


def test_automation_up_outputs_and_missing_cli(fake_auto, monkeypatch, tmp_path):
    made, ws = fake_auto
    made["stack"] = _FakeAutoStack()
    up = ws.up("prod", on_output=lambda s: None, config_file="/tmp/x.yaml")
    assert up.result == "succeeded" and up.changes == {"update": 2} and up.outputs == {"weights_bucket": "b"}
    assert made["stack"].calls[0][1]["config_file"] == "/tmp/x.yaml"
    assert ws.outputs("prod") == {"availability_zones": ["us-east-1a"]}

    import pulumi.automation as auto

    def missing(**kwargs):
        raise FileNotFoundError("pulumi")

    monkeypatch.setattr(auto, "create_or_select_stack", missing)
    fresh = automation.AutomationWorkspace(tmp_path)
    with pytest.raises(WorkspaceError, match="pulumi CLI is not installed") as info:
        fresh.outputs("prod")
    assert info.value.kind == "unavailable"


def test_automation_passes_the_checked_pack_config_of_the_stack(monkeypatch):
    import pulumi.automation as auto

    from infra.cli.adapters import checked_pack_config
    from rollout_support import REPO

    stack = _FakeAutoStack()
    captured = {}

    def preview(**kwargs):
        path = kwargs["policy_pack_configs"][0]
        captured["path"], captured["doc"] = path, json.loads(open(path).read())
        return _FakeAutoStack.preview(stack, **kwargs)

    stack.preview = preview
    monkeypatch.setattr(auto, "create_or_select_stack", lambda stack_name, work_dir, opts=None: stack)
    ws = automation.AutomationWorkspace(REPO, pack_config_for=lambda s: checked_pack_config(s, REPO))
    ws.preview("prod-us-west-2", policy_packs=["policies"], on_output=lambda s: None)
    assert captured["path"] == str(REPO / "policies" / "config.prod-us-west-2.json")
    assert captured["doc"]["gpu-spend-cap"]["region"] == "us-west-2"
    budget = yaml.safe_load((REPO / "Pulumi.prod-us-west-2.yaml").read_text())["config"]["llm-fleet:budget"]["monthly_usd"]
    assert captured["doc"]["gpu-spend-cap"]["monthly_budget_usd"] == budget


def test_automation_up_excludes_continues_and_runs_the_pack(fake_auto, tmp_path):
    """`deploy`'s passes: `pulumi up --exclude URN... --exclude-dependents`, `--continue-on-error`,
    and the policy pack on every up; policy packs resolve against the repository root."""
    made, _ = fake_auto
    ws = automation.AutomationWorkspace(tmp_path / "workloads", repo_dir=tmp_path, up_policy_packs=["policies"])
    made["stack"] = _FakeAutoStack()
    ws.up("prod", on_output=lambda s: None, exclude=["urn:a", "urn:b"])
    ws.up("prod", on_output=lambda s: None, continue_on_error=True)
    first, second = (call[1] for call in made["stack"].calls)
    assert first["exclude"] == ["urn:a", "urn:b"] and first["exclude_dependents"] is True
    assert "continue_on_error" not in first and second["continue_on_error"] is True and "exclude" not in second
    assert first["policy_packs"] == [str(tmp_path / "policies")]
    assert first["policy_pack_configs"] == [str(tmp_path / "policies" / "config.prod.json")]
    assert made["args"] == ("prod", str(tmp_path / "workloads"))
    ws.destroy("prod", on_output=lambda s: None)
    assert made["stack"].calls[-1][0] == "destroy"
