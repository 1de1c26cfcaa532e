"""The rollout's bench gate: its spec, its Job's objects (schema-valid), the Job runner against a
fake API server, the runner's step and journal, and the dry run."""
from __future__ import annotations

import json
from typing import Any, Mapping

import pytest

from infra.cli import main
from infra.cli.bench_gate import StackBench, gateway_target, job_for
from infra.core import deploy
from infra.core.bench.job import (BENCH_NAMESPACE, JOB_LABEL, TOKEN_ENV, TOKEN_SECRET_NAME,
                                  bench_job, manifests, token_secret, token_secret_arn)
from infra.core.errors import UserError
from infra.core.labels import BENCH_TENANT
from infra.core.resolve import resolve
from infra.core.rollout.gates import bench_verdict
from infra.core.rollout.interfaces import BenchOutcome, InVpcResult
from infra.core.rollout.journal import parse_journal
from infra.core.rollout.report import render_text
from infra.core.rollout.spec import BenchCheck, load_rollout_plan, parse_rollout_plan
from infra.ops.bench.job import KubeBenchRunner, collection
from tests.serving.schema_check import validate_k8s
from tests.rollout.rollout_support import REPO, FakeClock, Harness, plan_doc

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:llm-fleet/bench-tenant-jwt-Xy34Zw"
RESULT = {"attainment_pct": 98.5, "requests": {"sent": 200, "ok": 199, "failed": 1}, "errors": {"503": 1},
          "ttft_ms": {"p50": 210.0, "p95": 420.0, "p99": 500.0}, "tpot_ms": {"p50": 20.0, "p95": 28.0, "p99": 30.0},
          "e2e_ms": {"p50": 4100.0, "p95": 4800.0, "p99": 5000.0}, "output_tokens_per_s": 800.0, "wall_s": 60.0,
          "slo_ms": {"ttft": 600, "tpot": 40, "e2e": 6000}}


@pytest.fixture(scope="module")
def prod_job():
    resolved = resolve("prod")
    cfg = resolved.config
    return bench_job(BenchCheck(concurrency=8, requests=100, duration_s=120), stack="prod", environment="prod", cfg=cfg,
                     served_name=resolved.plan.served_name, workload=resolved.spec.workload, url=None,
                     registry="123456789012.dkr.ecr.us-east-1.amazonaws.com", gateway=gateway_target(cfg),
                     run_id="prod-run-1")


# --- spec -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bench, problem", [
    ({"concurrency": 4, "rate_per_s": 2}, "not both"),
    ({"requests": 5000}, "requests"),
    ({"duration_s": 3600}, "duration_s"),
    ({"image": "public.ecr.aws/example/llm-fleet:0.1.0"}, "image"),  # a user-given image is pinned by digest
    ({"token_secret_arn": "llm-fleet/bench"}, "token_secret_arn"),
])
def test_a_bad_bench_check_is_refused_naming_the_key(bench, problem):
    doc = plan_doc(gates__health__bench=bench)
    with pytest.raises(UserError) as exc:
        parse_rollout_plan(doc)
    assert "bench" in str(exc.value) and problem in str(exc.value)


def test_a_health_gate_may_hold_only_the_bench():
    doc = plan_doc(gates__health={"bench": {}})
    plan = parse_rollout_plan(doc)
    assert plan.gates.health.bench.load == {"concurrency": 16} and plan.gates.health.bench.deadline_s > 180


# --- the Job's objects ---------------------------------------------------------------------------------

def test_every_object_is_valid_against_the_kubernetes_schema(prod_job):
    objects = [*manifests(prod_job), token_secret(prod_job, "eyJ.x.y")]
    assert [o["kind"] for o in objects] == ["Namespace", "ServiceAccount", "NetworkPolicy", "Job", "Secret"]
    for obj in objects:
        assert validate_k8s(obj) == [], obj["kind"]
        assert obj["metadata"].get("namespace", BENCH_NAMESPACE) == BENCH_NAMESPACE


def test_the_jwt_is_never_in_the_manifests(prod_job):
    text = json.dumps(manifests(prod_job))
    assert "eyJ" not in text and ARN not in text
    (container,) = manifests(prod_job)[-1]["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET_NAME,
                                                                                    "key": "token"}}}]


def test_the_pod_is_restricted_bounded_and_off_the_gpus(prod_job):
    ns, account, _, job = manifests(prod_job)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert account["automountServiceAccountToken"] is False
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == int(120 + 300 + 60)
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"llm-fleet/role": "system"} and "tolerations" not in pod
    (c,) = pod["containers"]
    assert c["securityContext"]["runAsNonRoot"] and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecr-public/example/llm-fleet:0.1.0"


def test_the_pod_runs_bench_as_the_tenant_and_prints_its_result(prod_job):
    command = manifests(prod_job)[-1]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    bench = command.split("python -m infra bench ", 1)[1].split(";", 1)[0]
    for flag in ("--url http://llm-fleet-gateway.envoy-gateway-system.svc.cluster.local:443",
                 "--host-header llm.example.com", "--model llama-3.3-70b-instruct", "--input-tokens 500",
                 "--output-tokens 200", "--concurrency 8", "--requests 100", "--duration-s 120",
                 f"--api-key-env {TOKEN_ENV}", "--ttft-p95-ms 600", "--tpot-p95-ms 40", "--e2e-p95-ms 4000",
                 "--attainment-target-pct 95", "--retry"):
        assert flag in bench
    assert "python -m infra in-vpc emit /tmp/bench/result.json; exit $rc" in command


def test_egress_is_dns_and_the_gateways_envoy_pods_only(prod_job):
    """Envoy Gateway runs a listener below port 1024 on port + 10000 in its pods
    (servicePortToContainerPort, internal/gatewayapi/listener.go, envoyproxy/gateway v1.9.0), and a
    NetworkPolicy names the pod's port: the allow is 10443, not the Service's 443."""
    policy = manifests(prod_job)[2]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    assert spec["podSelector"] == {"matchLabels": {JOB_LABEL: prod_job.name}}
    dns, gateway = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    (peer,) = gateway["to"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}}
    assert peer["podSelector"]["matchLabels"]["gateway.envoyproxy.io/owning-gateway-name"] == "llm-fleet"
    assert gateway["ports"] == [{"protocol": "TCP", "port": 10443}]


def test_a_url_outside_the_cluster_is_allowed_to_the_vpc_only(prod_job):
    from dataclasses import replace

    job = replace(prod_job, url="https://llm.us-east-1.example.com")
    egress = manifests(job)[2]["spec"]["egress"][1]
    assert egress == {"to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert "--host-header" not in manifests(job)[-1]["spec"]["template"]["spec"]["containers"][0]["command"][2]


def test_the_job_travels_to_the_vpc_as_json(prod_job):
    from infra.core.bench.job import BenchJob

    assert BenchJob.from_json(prod_job.to_json()) == prod_job


@pytest.mark.parametrize("gate_arn, config_arn, public, ok", [
    (None, ARN, False, True),
    (None, None, True, False),
    (ARN, None, True, True),  # a public endpoint: the gate's own secret, read from here
    (ARN.replace("Xy34Zw", "Other1"), ARN, False, False),  # private: the build may read only the config's
])
def test_the_jwt_secret_comes_from_where_the_bench_runs(gate_arn, config_arn, public, ok):
    cfg = resolve("prod").config
    cfg = cfg.model_copy(update={
        "deployer": cfg.deployer.model_copy(update={"bench_token_secret_arn": config_arn}),
        "cluster": cfg.cluster.model_copy(update={"endpoint_public_access": public})})
    check = BenchCheck(token_secret_arn=gate_arn)
    if ok:
        assert token_secret_arn(check, cfg, "prod") == (gate_arn or config_arn)
    else:
        with pytest.raises(UserError, match="bench_token_secret_arn"):
            token_secret_arn(check, cfg, "prod")


# --- the Job runner against a fake API server ------------------------------------------------------------

class FakeKube:
    """An API server that stores what is POSTed, completes the Job, and serves the pod's log."""

    def __init__(self, log: str = "", condition: str = "Complete", deny: str | None = None) -> None:
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.log, self.condition, self.deny = log, condition, deny

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
        self.calls.append((method, path))
        if self.deny and method == "POST" and path.endswith(self.deny):
            return 403, b'{"reason": "Forbidden"}'
        bare = path.split("?", 1)[0]
        if method == "POST":
            key = f"{bare}/{body['metadata']['name']}"
            if key in self.objects:
                return 409, b'{"reason": "AlreadyExists"}'
            self.objects[key] = dict(body)
            return 201, json.dumps(body).encode()
        if method == "DELETE":
            return (200, b"{}") if self.objects.pop(bare, None) else (404, b"{}")
        if bare.endswith("/log"):
            return 200, self.log.encode()
        if bare.endswith("/pods"):
            return 200, json.dumps({"items": [{"metadata": {"name": "slo-bench-pod"}}]}).encode()
        if bare in self.objects:
            return 200, json.dumps({"status": {"conditions": [
                {"type": self.condition, "status": "True", "reason": "DeadlineExceeded"}]}}).encode()
        return 404, b"{}"


def _log(doc: Any) -> str:
    return "\n".join(["bench starting", *deploy.result_lines(doc), "done"])


def test_the_runner_applies_waits_reads_the_result_and_cleans_up(prod_job):
    kube = FakeKube(log=_log(RESULT))
    outcome = KubeBenchRunner(kube, token=lambda: "eyJ.tenant", clock=FakeClock(), poll_s=1).run(prod_job)
    assert outcome.document == RESULT and outcome.error == ""
    posts = [p for m, p in kube.calls if m == "POST"]
    assert posts == [collection(o) for o in (*manifests(prod_job)[:3], token_secret(prod_job, "x"), manifests(prod_job)[3])]
    # the run's objects are gone; the shared Namespace and ServiceAccount stay
    assert sorted(k.split("/")[-2] for k in kube.objects) == ["namespaces", "serviceaccounts"]
    assert ("DELETE", f"{collection(manifests(prod_job)[3])}/{prod_job.name}?propagationPolicy=Background") in kube.calls


def test_the_secret_carries_the_token_until_the_run_ends(prod_job):
    seen = {}

    class Watching(FakeKube):
        def request(self, method, path, body=None):
            if method == "POST" and body and body["kind"] == "Secret":
                seen.update(body["stringData"])
            return super().request(method, path, body)

    KubeBenchRunner(Watching(log=_log(RESULT)), token=lambda: "eyJ.tenant", clock=FakeClock(), poll_s=1).run(prod_job)
    assert seen == {"token": "eyJ.tenant"}


@pytest.mark.parametrize("kube, token, error", [
    (FakeKube(log="Traceback: boom\n", condition="Failed"), "eyJ", "Job Failed (DeadlineExceeded) without a result"),
    (FakeKube(deny="/jobs"), "eyJ", "HTTP 403"),
    (FakeKube(log=_log(RESULT)), None, "cannot read the bench tenant's JWT"),
])
def test_a_failed_run_is_an_outcome_with_the_reason_never_a_crash(prod_job, kube, token, error):
    def read() -> str:
        if token is None:
            raise PermissionError("AccessDeniedException")
        return token

    outcome = KubeBenchRunner(kube, token=read, clock=FakeClock(), poll_s=1).run(prod_job)
    assert outcome.document is None and error in outcome.error
    assert [k for k in kube.objects if "/networkpolicies/" in k or "/secrets/" in k or "/jobs/" in k] == []


# --- the verdict, the runner's step and the journal ---------------------------------------------------------

@pytest.mark.parametrize("attainment, status", [(98.5, "pass"), (90.0, "fail")])
def test_the_verdict_compares_attainment_with_the_target(attainment, status):
    v = bench_verdict(BenchCheck(), {**RESULT, "attainment_pct": attainment}, 95.0)
    assert v.status == status and v.data["attainment_pct"] == attainment and v.data["ttft_ms"]["p95"] == 420.0
    assert "199/200 requests ok (503: 1)" in v.reason


class FakeBench:
    def __init__(self, outcome: BenchOutcome) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str]] = []

    def run(self, stack: str, region: str, outputs: Mapping[str, Any]) -> BenchOutcome:
        self.calls.append((stack, region))
        return self.outcome


BENCH_PLAN = plan_doc(gates__health__bench={"concurrency": 4, "requests": 50, "min_attainment_pct": 95})


def test_a_passing_bench_records_its_figures_in_the_journal(tmp_path):
    h = Harness(tmp_path, BENCH_PLAN)
    h.bench = FakeBench(BenchOutcome("slo-bench-1", RESULT))
    journal = h.run()
    assert journal.status == "completed"
    assert h.bench.calls == [("west", "us-west-2"), ("east", "us-east-1"), ("east2", "us-east-2")]
    rec = journal.stacks["west"].bench
    assert rec["status"] == "pass" and rec["attainment_pct"] == 98.5 and rec["job"] == "slo-bench-1"
    assert rec["requests"]["ok"] == 199 and rec["tpot_ms"]["p95"] == 28.0 and rec["target_pct"] == 95
    stored = parse_journal(journal.to_json(), "journal.json")  # what a resumed run and the report read back
    assert stored.stacks["west"].bench["attainment_pct"] == 98.5
    text = render_text(journal, "stacks/prod.yaml")
    assert ("bench west: pass: attainment 98.50 % (target 95 %), 199/200 requests ok, TTFT p95 420 ms, "
            "TPOT p95 28 ms, e2e p95 4,800 ms") in text


@pytest.mark.parametrize("outcome, reason", [
    (BenchOutcome("j", {**RESULT, "attainment_pct": 80.0}), "attainment 80.00 % is below the target 95 %"),
    (BenchOutcome("j", None, "Job Failed (DeadlineExceeded) without a result"), "DeadlineExceeded"),
])
def test_a_failing_bench_halts_the_wave(tmp_path, outcome, reason):
    h = Harness(tmp_path, BENCH_PLAN)
    h.bench = FakeBench(outcome)
    journal = h.run()
    assert journal.status == "halted" and journal.halted.stack == "west" and journal.halted.step == "bench"
    assert reason in journal.halted.reason
    assert journal.stacks["west"].bench["status"] == "fail"
    assert h.workspace.ops("up") == ["west"]  # the next stacks never went up


def test_a_bench_check_without_a_runner_fails_loudly(tmp_path):
    h = Harness(tmp_path, BENCH_PLAN)
    journal = h.run()
    assert journal.halted.step == "bench" and "no bench runner" in journal.halted.reason


# --- the wiring: here or in the VPC -------------------------------------------------------------------------

class FakeInVpc:
    def __init__(self, document: Any) -> None:
        self.document = document
        self.calls: list[tuple[str, str, dict]] = []

    def run(self, stack, action, *, on_output, env=None, config_text=None) -> InVpcResult:
        self.calls.append((stack, action, dict(env or {})))
        return InVpcResult("build:1", "SUCCEEDED", self.document)


def test_a_private_stack_benches_from_its_in_vpc_build():
    plan = load_rollout_plan(REPO / "stacks" / "prod.yaml")
    runner = FakeInVpc({"job": "slo-bench-x", "document": RESULT, "error": ""})
    bench = StackBench(plan, REPO, in_vpc=lambda s: True, runner=runner, run_id="r1",
                       run_direct=lambda *a: pytest.fail("a private stack is never benched from here"))
    outcome = bench.run("prod", "us-east-1", {"image_registry": "123456789012.dkr.ecr.us-east-1.amazonaws.com"})
    assert outcome.document == RESULT
    ((stack, action, env),) = runner.calls
    assert (stack, action) == ("prod", deploy.BENCH)
    sent = json.loads(env[deploy.BENCH_ENV])
    assert sent["token_secret_arn"] == resolve("prod").config.deployer.bench_token_secret_arn
    assert sent["job"]["image"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/")
    job, arn = job_for(plan, "prod", REPO, {}, "r1")
    assert sent["job"]["name"] == job.name and arn == sent["token_secret_arn"]


def test_a_public_stack_benches_from_here():
    plan = load_rollout_plan(REPO / "stacks" / "prod.yaml")
    seen = []
    bench = StackBench(plan, REPO, in_vpc=lambda s: False, runner=None, run_id="r1",
                       run_direct=lambda job, arn, stack, region, out: seen.append((job.name, stack)) or
                       BenchOutcome(job.name, RESULT))
    assert bench.run("prod", "us-east-1", {}).document == RESULT and seen[0][1] == "prod"


def test_the_in_vpc_action_refuses_a_secret_the_build_may_not_read(monkeypatch, capsys, prod_job):
    monkeypatch.setenv(deploy.BENCH_ENV, json.dumps({"job": json.loads(prod_job.to_json()),
                                                     "token_secret_arn": ARN.replace("Xy34Zw", "Other1")}))
    assert main(["in-vpc", "bench", "--stack", "prod"]) == 2
    assert "bench_token_secret_arn of prod" in capsys.readouterr().err


def test_the_buildspec_runs_the_bench_action():
    from infra.program.components.deployer import buildspec
    from infra.core.config import DeployerConfig

    import yaml

    (run,) = yaml.safe_load(buildspec(DeployerConfig()))["phases"]["build"]["commands"]
    assert f'{deploy.BENCH}) .venv/bin/python -m infra in-vpc bench --stack "${deploy.STACK_ENV}"' in run


def test_the_dry_run_lists_the_bench_gate(capsys):
    assert main(["rollout", "stacks/prod.yaml", "--dry-run", "--json"]) in (0, 3, 5)
    doc = json.loads(capsys.readouterr().out)
    for wave in doc["waves"]:
        for stack in wave["stacks"]:
            (step,) = [s for s in stack["would_run"] if s.startswith("bench gate:")]
            assert f"as tenant {BENCH_TENANT}" in step and "at most 200 requests and 180 s" in step
            assert "started by the in-VPC build" in step and "below 95 % attainment" in step


def test_the_build_role_may_read_the_bench_secret_only_when_configured():
    from infra.program.components.deployer import build_role_policy
    from infra.program.components.common import AwsContext

    ctx = AwsContext(account_id="123456789012", region="us-east-1", partition="aws", dns_suffix="amazonaws.com")
    kw = dict(ctx=ctx, log_group_arn="arn:lg", bucket_arn="arn:aws:s3:::b", subnet_ids=["subnet-1"],
              cluster_arn="arn:c", token_secret_arn=None)
    sids = lambda doc: {s["Sid"]: s for s in json.loads(doc)["Statement"]}  # noqa: E731
    assert "BenchTenantToken" not in sids(build_role_policy(**kw))
    stmt = sids(build_role_policy(**kw, bench_secret_arn=ARN))["BenchTenantToken"]
    assert stmt["Action"] == ["secretsmanager:GetSecretValue"] and stmt["Resource"] == [ARN]


@pytest.mark.parametrize("check, peak, fits", [
    (BenchCheck(rate_per_s=200, requests=2000, duration_s=600), 2000, True),  # its 2,000 requests at most
    (BenchCheck(rate_per_s=150, requests=2000, duration_s=30), 2000, True),  # 4,500 in its 30 s, capped by requests
    (BenchCheck(concurrency=16, requests=200), 200, True),
])
def test_the_gates_peak_minute_is_its_rate_capped_by_what_it_sends(check, peak, fits):
    from infra.core.bench.job import ensure_within_bench_bucket, peak_requests_per_minute

    resolved = resolve("prod")
    load = resolved.plan.load
    latency_s = load["concurrent_requests"] / load["arrival_rate_per_s"]
    assert peak_requests_per_minute(check, latency_s) == pytest.approx(min(peak, check.requests))
    ensure_within_bench_bucket(check, resolved.config, load)  # prod's bench bucket: 6,000 a minute


def test_a_gate_that_would_hit_the_bench_tenants_own_rate_limit_is_refused():
    """Its 429s would read as misses and fail a healthy fleet: the dry run and the real run refuse it.
    (A gate sends at most 2,000 requests, under the default bucket of 6,000 a minute: a smaller bucket.)"""
    from infra.core.bench.job import ensure_within_bench_bucket

    resolved = resolve("prod")
    cfg = resolved.config
    cfg = cfg.model_copy(update={"ingress": cfg.ingress.model_copy(update={"bench_rate_limit_requests_per_minute": 600})})
    ensure_within_bench_bucket(BenchCheck(rate_per_s=10, requests=2000, duration_s=300), cfg, resolved.plan.load)
    with pytest.raises(UserError) as err:
        ensure_within_bench_bucket(BenchCheck(rate_per_s=15, requests=2000, duration_s=300), cfg, resolved.plan.load)
    assert "bench_rate_limit_requests_per_minute 600" in str(err.value) and "900 requests a minute" in str(err.value)
    # closed loop: Little's law at the plan's latency (prod: ~2.4 s, so 32 clients send ~810 a minute)
    with pytest.raises(UserError):
        ensure_within_bench_bucket(BenchCheck(concurrency=32, requests=2000, duration_s=300), cfg, resolved.plan.load)
    ensure_within_bench_bucket(BenchCheck(concurrency=16, requests=2000, duration_s=300), cfg, resolved.plan.load)
