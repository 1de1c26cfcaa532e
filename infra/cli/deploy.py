"""`python -m infra deploy --stack prod [--destroy --yes] [--json [FILE]]`: both projects, for real.

Runs the stack's AWS base (root Pulumi.yaml) with the Automation API from here, then its
workloads (workloads/Pulumi.yaml): with a private EKS endpoint through the base's in-VPC CodeBuild
deployer (the working tree is uploaded, the build started with boto3 and its log streamed here),
with a public one (restricted to `cluster.public_access_cidrs`) from here too. In three passes:
the base without its GPU node groups, the workloads, the base in full (so serving never waits for
GPU capacity; an AZ out of capacity fails only its own group). `--destroy --yes` goes the other
way: the workloads, the wait until the gateway's load balancer is gone, the base. Both run the
policy pack. The rollout (`python -m infra rollout`) deploys each stack this same way.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from infra.cli.argtypes import command_parser
from infra.core.errors import EXIT_OK, UserError, WorkspaceError
from infra.core.paths import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    from infra.cli.output import add_json_argument

    p = command_parser(subparsers, "deploy", __doc__, help="deploy a stack for real: its AWS base here, its workloads in the VPC (private endpoint) or here")
    p.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
    p.add_argument("--destroy", action="store_true", help="destroy the stack instead: workloads, load balancer, base")
    p.add_argument("--yes", action="store_true", help="confirm --destroy")
    p.add_argument("--project-dir", default=None, help="repository root with Pulumi.yaml (default: this repository)")
    add_json_argument(p, "the outcome")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace, project_dir: Path) -> Any:
    from infra.cli.adapters import checked_pack_config
    from infra.core.config import load_stack_config

    cfg = load_stack_config(args.stack, project_dir)
    checked_pack_config(args.stack, project_dir)  # the pack config the previews read must be current
    if args.destroy and not args.yes:
        raise UserError(f"--destroy deletes stack {args.stack!r} (its cluster, VPC and every workload); add --yes")
    if args.destroy and cfg.cluster.deletion_protection:
        raise UserError(f"llm-fleet:cluster.deletion_protection: true is not allowed for --destroy; set it to false "
                        f"in Pulumi.{args.stack}.yaml and deploy, then destroy (docs/program.md, destroy runbook)")
    if shutil.which("pulumi") is None:
        raise UserError("the pulumi CLI is not installed or not on PATH (the Automation API runs it); install it "
                        "(https://www.pulumi.com/docs/install/) to deploy; `python -m infra plan` works offline")
    return cfg


def run(args: argparse.Namespace) -> int:
    from infra.cli import adapters
    from infra.cli.output import emit_json

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    cfg = _check(args, project_dir)
    where = "in the VPC (CodeBuild)" if cfg.deploys_in_vpc else "here (public endpoint)"
    quiet = args.json == "-"
    out = sys.stderr if quiet else sys.stdout

    def say(line: str) -> None:
        out.write(line.rstrip("\n") + "\n")
        out.flush()

    path = adapters.deploy_path(project_dir)
    stack = args.stack
    if args.destroy:
        say(f"destroying stack {stack}: workloads {where}, then the base")
        path.workspace.destroy(stack, on_output=say)
        doc: dict[str, Any] = {"stack": stack, "action": "destroy", "workloads": where, "result": "succeeded"}
    else:
        say(f"deploying stack {stack}: the base here, the workloads {where}")
        outcome = path.workspace.up(stack, on_output=say)
        doc = {"stack": stack, "action": "up", "workloads": where, "result": outcome.result,
               "changes": dict(outcome.changes)}
    say(f"{doc['action']} of {stack}: {doc['result']}")
    emit_json(args.json, doc)
    if doc["result"] != "succeeded":
        raise WorkspaceError(f"{stack}: {doc['action']} {doc['result']}")
    return EXIT_OK
