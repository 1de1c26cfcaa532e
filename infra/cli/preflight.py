"""`python -m infra preflight --stack S [--json]`: capacity, quota and storage checks (boto3).

Checks, for the stack's fleet plan sized for its region share (stacks/<env>.yaml):
the instance type is offered in every chosen AZ; the vCPU quota for running P instances
(L-417A185B; L-7212CCBC for spot) covers max nodes per AZ (warm spares included) x AZs x vCPUs;
capacity reservations / Capacity Blocks named in config exist, are active, in the right AZ and
big enough; the weights bucket, its KMS key and the revision's manifest exist in the region;
the Kubernetes version's support window (warns 60 days before it ends); a Capacity Block group
is not upgraded while it runs nodes (EKS wants desired size 0); every image the stack pulls is in
its ECR registry (`python -m infra images --stack S --script` fills it), warning for images
pinned by tag only or still pulled from upstream.

Bucket and KMS alias: from `--outputs FILE` (`pulumi stack output --json`), else `--bucket` /
`--kms-alias`, else the program's convention (llm-fleet-<stack>-weights-<account>-<region>,
alias/<bucket>). `--first-deploy` reports a missing bucket/key/manifest as skipped (the first
`pulumi up` creates them). Exit codes: 0 every check passes (warnings allowed); 4 a check
failed; 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from infra.cli.argtypes import command_parser, endpoint_url
from infra.cli.output import add_json_argument, emit_json, warn
from infra.core.errors import EXIT_OK, EXIT_PREFLIGHT, InputError
from infra.core.files import read_json_file
from infra.core.paths import REPO_ROOT
from infra.core.rollout.interfaces import CheckReport

MARKS = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "preflight", __doc__, help="check capacity, quota, reservations and weights storage before a change (boto3)")
    p.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
    add_json_argument(p, "the checks")
    p.add_argument("--bucket", default=None, help="weights bucket (default: stack outputs, else the naming convention)")
    p.add_argument("--kms-alias", default=None, help="KMS alias of the weights key (default: alias/<bucket>)")
    p.add_argument("--outputs", metavar="FILE", default=None,
                   help="the stack's outputs as JSON (`pulumi stack output --json -s S > FILE`)")
    p.add_argument("--weights-model", default=None,
                   help="model name weights are stored under (default: the catalog's Hugging Face id)")
    p.add_argument("--first-deploy", action="store_true",
                   help="the stack is not deployed yet: a missing bucket, key or manifest is skipped, not failed")
    p.add_argument("--endpoint-url", type=endpoint_url, default=None, help="AWS endpoint override (tests, LocalStack)")
    p.add_argument("--project-dir", default=None, help="directory holding Pulumi.<stack>.yaml (default: repo root)")
    p.set_defaults(func=run)


def _read_outputs(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    doc = read_json_file(path, "--outputs", "JSON file of stack outputs (`pulumi stack output --json`)")
    if not isinstance(doc, dict):
        raise InputError("--outputs", path, "a JSON object (`pulumi stack output --json`)")
    return doc


def render_table(stack: str, region: str, report: CheckReport, out: TextIO) -> None:
    out.write(f"llm-fleet preflight: stack {stack} in {region}\n\n")
    width = max(len(c.name) for c in report.checks) + 2
    out.write(f"  {'CHECK'.ljust(width)}STATUS  DETAIL\n")
    for c in report.checks:
        out.write(f"  {c.name.ljust(width)}{MARKS.get(c.status, c.status).ljust(8)}{c.detail}\n")
    failed = len(report.failed)
    out.write(f"\n{'preflight passed' if not failed else f'preflight FAILED: {failed} check(s)'}\n")


def run(args: argparse.Namespace, clients: Any = None) -> int:
    from infra.ops.preflight.checks import boto3_clients, run_checks
    from infra.ops.preflight.inputs import preflight_inputs

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    outputs = _read_outputs(args.outputs)
    inputs = preflight_inputs(
        args.stack, project_dir, outputs=outputs, bucket=args.bucket, kms_alias=args.kms_alias,
        weights_model=args.weights_model, first_deploy=True if args.first_deploy else False,
    )
    from infra.core.resolve import resolve

    warn(resolve(args.stack, project_dir).warnings)  # memoised: preflight_inputs resolved it
    report = run_checks(inputs, clients or boto3_clients(inputs.region, args.endpoint_url))
    code = EXIT_OK if report.ok else EXIT_PREFLIGHT
    doc = {
        "stack": args.stack, "region": inputs.region, "ok": report.ok, "exit_code": code,
        "instance_type": inputs.instance_type, "required_vcpus": inputs.required_vcpus,
        "sources": dict(inputs.sources), "checks": report.to_list(),
    }
    if not emit_json(args.json, doc):
        render_table(args.stack, inputs.region, report, sys.stdout)
    return code
