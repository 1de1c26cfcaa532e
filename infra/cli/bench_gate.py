"""The rollout's bench gate, wired: the Job of a stack (core), run where its API server is reachable.

`StackBench` is the runner's `interfaces.BenchRunner`: it builds the stack's Job
(`infra.core.bench.job.bench_job`: the gate, the stack's plan and config, the base's image
registry, the gateway as the serving layer deploys it) and runs it with
`infra.ops.bench.job.KubeBenchRunner`: from here for a public endpoint, in the stack's in-VPC
deployer for a private one (the `bench` action, `python -m infra in-vpc bench`), whose result
comes back through the build log.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from infra.core import deploy
from infra.core.bench.job import BenchJob, GatewayTarget, bench_job, ensure_within_bench_bucket, token_secret_arn
from infra.core.rollout.interfaces import BenchOutcome, InVpcRunner
from infra.core.rollout.spec import BenchCheck, RolloutPlan, fill

OUT_IMAGE_REGISTRY = "image_registry"  # the base's export (infra/program/compose.py)
TOKEN_ARN_KEY = "token_secret_arn"  # beside the Job in the bench action's environment


def gateway_target(cfg) -> GatewayTarget:
    """The gateway's Envoy pods and Service as infra/program/serving/ingress.py deploys them."""
    from infra.core.config import LISTENER_PORT
    from infra.program.serving.defaults import ServingDefaults
    from infra.program.serving.ingress import GATEWAY_NAME, GATEWAY_SERVICE_NAME

    # Envoy Gateway labels its proxy pods with the Gateway they serve (OwningGatewayNameLabel,
    # OwningGatewayNamespaceLabel: internal/gatewayapi/translator.go, v1.9.0).
    labels = {"gateway.envoyproxy.io/owning-gateway-name": GATEWAY_NAME,
              "gateway.envoyproxy.io/owning-gateway-namespace": cfg.weights.hydrator_namespace}
    scheme = "https" if cfg.ingress.tls_secret_name else "http"
    return GatewayTarget(ServingDefaults().gateway_namespace, GATEWAY_SERVICE_NAME, LISTENER_PORT, labels, scheme)


def job_for(plan: RolloutPlan, stack: str, project_dir: Path, outputs: Mapping[str, Any], run_id: str
            ) -> tuple[BenchJob, str]:
    """(the stack's bench Job, the Secrets Manager ARN of its JWT)."""
    from infra.core.resolve import resolve

    check = _check(plan)
    resolved = resolve(stack, project_dir)
    cfg = resolved.config
    ensure_within_bench_bucket(check, cfg, resolved.plan.load)
    url = fill(check.url, stack=stack, region=cfg.region, environment=plan.environment) if check.url else None
    job = bench_job(check, stack=stack, environment=plan.environment, cfg=cfg, url=url,
                    served_name=resolved.plan.served_name, workload=resolved.spec.workload,
                    registry=outputs.get(OUT_IMAGE_REGISTRY), gateway=gateway_target(cfg), run_id=run_id)
    return job, token_secret_arn(check, cfg, stack)


def _check(plan: RolloutPlan) -> BenchCheck:
    assert plan.gates.health is not None and plan.gates.health.bench is not None
    return plan.gates.health.bench


def outcome_of(doc: Any, job: str) -> BenchOutcome:
    """A BenchOutcome from what the in-VPC build printed back."""
    if not isinstance(doc, Mapping):
        return BenchOutcome(job, None, "the in-VPC build printed no bench result")
    return BenchOutcome(str(doc.get("job") or job), doc.get("document"), str(doc.get("error") or ""),
                        tuple(doc.get("log_tail") or ()))


def outcome_doc(outcome: BenchOutcome) -> dict[str, Any]:
    return {"job": outcome.job, "document": outcome.document, "error": outcome.error,
            "log_tail": list(outcome.log_tail)}


def run_here(job: BenchJob, arn: str, stack: str, region: str, on_output: Callable[[str], None]) -> BenchOutcome:
    """The Job through the stack's API server, from where this process runs."""
    import boto3

    from infra.ops.bench.job import ApiServerKube, KubeBenchRunner, secret_string

    session = boto3.Session()
    api = ApiServerKube(session, deploy.stack_prefix(stack), region)
    return KubeBenchRunner(api, token=lambda: secret_string(session, arn), on_output=on_output).run(job)


class StackBench:
    """`interfaces.BenchRunner` for a rollout: each stack's Job, here or in its VPC."""

    def __init__(self, plan: RolloutPlan, project_dir: Path, *, in_vpc: Callable[[str], bool],
                 runner: InVpcRunner | None, run_id: str, on_output: Callable[[str], None] = lambda line: None,
                 run_direct: Callable[..., BenchOutcome] = run_here) -> None:
        self.plan, self.project_dir, self.in_vpc, self.runner = plan, Path(project_dir), in_vpc, runner
        self.run_id, self.on_output, self.run_direct = run_id, on_output, run_direct

    def run(self, stack: str, region: str, outputs: Mapping[str, Any]) -> BenchOutcome:
        from infra.core.errors import UserError, WorkspaceError

        try:
            job, arn = job_for(self.plan, stack, self.project_dir, outputs, self.run_id)
        except UserError as exc:
            return BenchOutcome(_check(self.plan).name, None, str(exc))
        if not self.in_vpc(stack):
            return self.run_direct(job, arn, stack, region, self.on_output)
        if self.runner is None:
            return BenchOutcome(job.name, None, f"{stack}: its endpoint is private and there is no in-VPC runner")
        env = {deploy.BENCH_ENV: json.dumps({"job": json.loads(job.to_json()), TOKEN_ARN_KEY: arn})}
        try:
            result = self.runner.run(stack, deploy.BENCH, on_output=self.on_output, env=env)
        except WorkspaceError as exc:
            return BenchOutcome(job.name, None, f"in-VPC bench failed: {exc}")
        if not result.succeeded and not isinstance(result.document, Mapping):
            tail = " | ".join(result.log_tail[-4:])
            return BenchOutcome(job.name, None, f"in-VPC bench build {result.build_id} {result.status}: {tail}")
        return outcome_of(result.document, job.name)
