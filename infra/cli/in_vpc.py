"""`python -m infra in-vpc emit FILE | prometheus --stack S | bench --stack S`: what the in-VPC deployer's build runs.

Not for operators: the buildspec of the base's CodeBuild project (infra/program/components/
deployer.py) calls it inside the VPC. `emit` prints a JSON file (the workloads' `pulumi preview
--json`) back through the build log as `infra.core.deploy.result_lines`; `prometheus` runs the
health gate's PromQL (the JSON list in `LLM_FLEET_QUERIES`) through the EKS API server's service
proxy to the stack's Prometheus, and prints the answers the same way; `bench` runs the rollout's
bench Job (the JSON in `LLM_FLEET_BENCH`) through the API server and prints its outcome.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from infra.cli.argtypes import command_parser
from infra.core.errors import EXIT_OK, InputError
from infra.core.paths import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "in-vpc", __doc__, help="(run by the in-VPC deployer's build) report a preview or Prometheus answers back")
    sub = p.add_subparsers(dest="in_vpc_action", metavar="ACTION", required=True)
    emit = sub.add_parser("emit", help="print a JSON file back through the build log")
    emit.add_argument("file", help="a JSON document (e.g. `pulumi preview --json` output)")
    emit.set_defaults(func=run_emit)
    prom = sub.add_parser("prometheus", help="query the stack's Prometheus through the API server proxy")
    prom.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    prom.add_argument("--project-dir", default=None, help="repository root (default: this repository)")
    prom.set_defaults(func=run_prometheus)
    bench = sub.add_parser("bench", help="run the rollout bench gate's Job through the API server")
    bench.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    bench.add_argument("--project-dir", default=None, help="repository root (default: this repository)")
    bench.set_defaults(func=run_bench)


def _print(document: object) -> None:
    from infra.core.deploy import result_lines

    sys.stdout.write("\n".join(result_lines(document)) + "\n")
    sys.stdout.flush()


def run_emit(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text() if Path(args.file).is_file() else ""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        # The preview failed before printing a document: its own output says why; report nothing.
        print(f"in-vpc emit: {args.file} holds no JSON document ({len(text)} bytes)", file=sys.stderr)
        return EXIT_OK
    _print(document)
    return EXIT_OK


def run_prometheus(args: argparse.Namespace) -> int:
    import boto3

    from infra.core.config import load_stack_config
    from infra.core.deploy import QUERIES_ENV, stack_prefix
    from infra.ops.deploy.prometheus import ApiServerPrometheus
    from infra.program.serving.autoscaling import PROMETHEUS_PORT, PROMETHEUS_SERVICE
    from infra.program.serving.defaults import ServingDefaults

    raw = os.environ.get(QUERIES_ENV, "")
    try:
        queries = json.loads(raw)
    except json.JSONDecodeError:
        queries = None
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise InputError(QUERIES_ENV, raw[:80], "a JSON list of PromQL strings")
    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    cfg = load_stack_config(args.stack, project_dir)
    client = ApiServerPrometheus(boto3.Session(), stack_prefix(args.stack), cfg.region,
                                 namespace=ServingDefaults().monitoring_namespace, service=PROMETHEUS_SERVICE,
                                 port=PROMETHEUS_PORT)
    answers = client.query(args.stack, cfg.region, queries)
    for q, (status, _) in zip(queries, answers):
        print(f"prometheus: HTTP {status}: {q}", file=sys.stderr)
    _print({"answers": [{"status": status, "body": body.decode(errors="replace")} for status, body in answers]})
    return EXIT_OK


def run_bench(args: argparse.Namespace) -> int:
    from infra.cli.bench_gate import TOKEN_ARN_KEY, outcome_doc, run_here
    from infra.core.bench.job import BenchJob
    from infra.core.config import load_stack_config
    from infra.core.deploy import BENCH_ENV

    raw = os.environ.get(BENCH_ENV, "")
    try:
        doc = json.loads(raw)
        job = BenchJob.from_json(json.dumps(doc["job"]))
        arn = str(doc[TOKEN_ARN_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(BENCH_ENV, raw[:80], f"the bench Job as JSON ({exc})") from None
    cfg = load_stack_config(args.stack, Path(args.project_dir) if args.project_dir else REPO_ROOT)
    if arn != cfg.deployer.bench_token_secret_arn:  # the build role may read only that one
        raise InputError(f"{BENCH_ENV} {TOKEN_ARN_KEY}", arn, f"llm-fleet:deployer.bench_token_secret_arn of {args.stack}")
    outcome = run_here(job, arn, args.stack, cfg.region, lambda line: print(line, file=sys.stderr))
    print(f"bench: Job {job.name}: {'result' if outcome.document else 'no result'} {outcome.error}", file=sys.stderr)
    _print(outcome_doc(outcome))
    return EXIT_OK
