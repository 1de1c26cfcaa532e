"""`python -m infra rollout PLAN.yaml [--dry-run] [--resume] [--json [FILE]]`: roll an environment out.

PLAN.yaml is an environment's rollout plan (stacks/<env>.yaml): region stacks and their traffic
shares, waves (the canary first), bake times, gates and what to do on failure (docs/rollout.md).

--dry-run works offline: for each wave and stack, the plan sized for the region's share, the
cost delta against the last deployed cost, the policy verdict, and the steps the real run takes.
The real run deploys each stack as `deploy` does (its base with the Automation API here, its
workloads and its PromQL gates in the VPC where the endpoint is private): preflight -> preview
(policy pack) -> policy and cost gates -> up -> health gate, stack by stack, then bakes each wave.
A wave's `traffic` step sets the weights of the environment's global stack (global/Pulumi.yaml)
before its first up and restores the weights it found after its bake (journaled: --resume
restores those). A plan whose global records would send a region more than it is sized for is
refused (exit 2) before anything runs, dry run included. It holds the
environment's lock, journals every step (state.local_dir, or S3 with state.s3) and, halted or
crashed, continues with --resume where it stopped (every hint it prints repeats --state-dir and
--project-dir when they were given). --restart abandons an unfinished rollout; a journal that
cannot be read at all is moved aside to history/ first.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from infra.cli.argtypes import command_parser
from infra.cli.output import add_json_argument, emit_json
from infra.core.errors import EXIT_OK, UserError
from infra.core.paths import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "rollout", __doc__, help="roll an environment's region stacks out in waves with gates (stacks/<env>.yaml)")
    p.add_argument("plan", metavar="PLAN.yaml", help="the environment's rollout plan, e.g. stacks/prod.yaml")
    p.add_argument("--dry-run", action="store_true", help="offline: plan, cost delta and policy per stack; change nothing")
    p.add_argument("--resume", action="store_true", help="continue the unfinished (halted or crashed) rollout")
    p.add_argument("--restart", action="store_true",
                   help="abandon an unfinished rollout (or move an unreadable journal aside) and start a new one")
    add_json_argument(p, "the final report (or the dry run)")
    p.add_argument("--approve-cost", action="append", default=[], metavar="STACK",
                   help="accept a cost increase above the gate's limit for STACK ('all' for every stack); repeatable")
    p.add_argument("--state-dir", default=None, help="local journal/lock directory (default: the plan's state.local_dir)")
    p.add_argument("--break-lock", action="store_true",
                   help="remove an S3 lock left by a dead rollout (check its holder first), then exit")
    p.add_argument("--verbose", action="store_true", help="stream Pulumi's own output under each step")
    p.add_argument("--project-dir", default=None, help="repository root with Pulumi.yaml (default: this repository)")
    p.set_defaults(func=run)


def _store(plan: Any, args: argparse.Namespace, project_dir: Path) -> Any:
    if plan.state.s3 is not None and args.state_dir is None:
        from infra.ops.rollout.s3state import S3StateStore

        s3 = plan.state.s3
        return S3StateStore(s3.bucket, s3.prefix, plan.environment, region=s3.region)
    from infra.ops.rollout.state import LocalStateStore

    directory = Path(args.state_dir) if args.state_dir else Path(plan.state.local_dir)
    if not directory.is_absolute():
        directory = project_dir / directory
    return LocalStateStore(directory, plan.environment)


class _OfflineRecords:
    """Deployed records for the dry run; an unreachable store (S3 offline) reads as 'never deployed'."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.warned = False

    def read_deployed(self, stack: str) -> dict[str, Any] | None:
        try:
            return self.store.read_deployed(stack)
        except Exception as exc:  # noqa: BLE001 - offline: S3 may be unreachable
            if not self.warned:
                print(f"warning: deployed records in {self.store.describe()} unavailable ({exc.__class__.__name__}); "
                      "cost deltas are against $0", file=sys.stderr)
                self.warned = True
            return None


def run(args: argparse.Namespace) -> int:
    from infra.core.global_stack import check_global
    from infra.core.rollout.environment import check_environment
    from infra.core.rollout.spec import load_rollout_plan, plan_digest

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    plan_path = str(args.plan)
    plan = load_rollout_plan(plan_path)
    check_environment(plan, project_dir, source=plan_path)
    check_global(plan, project_dir, source=plan_path)  # what the global records route, against what each region is sized for
    if args.resume and args.restart:
        raise UserError("--resume and --restart are not allowed together; pick one")
    store = _store(plan, args, project_dir)

    if args.break_lock:
        print(store.break_lock())
        return EXIT_OK

    if args.dry_run:
        from infra.cli.adapters import ProjectEvaluator
        from infra.core.rollout.dryrun import dry_run, render_text

        report = dry_run(plan, plan_path, ProjectEvaluator(project_dir, plan_path), _OfflineRecords(store),
                         args.approve_cost)
        if not emit_json(args.json, report.to_dict()):
            sys.stdout.write(render_text(report))
        return report.exit_code

    if shutil.which("pulumi") is None:
        raise UserError(
            "the pulumi CLI is not installed or not on PATH (the Automation API runs it); install it to roll out, "
            "or use --dry-run, which works offline"
        )
    from infra.ops.preflight.checks import AwsPreflight
    from infra.core.rollout import report as rollout_report
    from infra.cli.adapters import CostModelAdapter, deploy_path, global_workspace, slo_targets
    from infra.ops.rollout.health import GateHealthChecker
    from infra.ops.rollout.runner import Runner, RunOptions

    # Each stack the way `deploy` does it: the base here, the workloads (and the PromQL gates)
    # in the VPC where the endpoint is private.
    path = deploy_path(project_dir)
    health = plan.gates.health
    runner = Runner(
        plan=plan,
        plan_path=plan_path,
        plan_digest=plan_digest(plan_path),
        workspace=path.workspace,
        preflight=AwsPreflight(project_dir),
        health=GateHealthChecker(health, plan.environment, slo_targets=lambda stack: slo_targets(stack, project_dir),
                                 prometheus_for=path.prometheus_for(health.prometheus_url or "", plan.environment))
        if health else None,
        cost_model=CostModelAdapter(),
        store=store,
        out=sys.stderr,
        options=RunOptions(
            resume=args.resume, restart=args.restart, approve_cost=frozenset(args.approve_cost),
            approver=os.environ.get("USER", ""), verbose=args.verbose, repeat_flags=journal_flags(args),
        ),
        global_workspace=global_workspace(project_dir) if plan.global_ is not None else None,
        **bench_gate(plan, project_dir, path),
    )
    journal = runner.run()
    if not emit_json(args.json, rollout_report.to_dict(journal)):
        sys.stdout.write("\n" + rollout_report.render_text(journal, plan_path, journal_flags(args)))
    return rollout_report.exit_code(journal)


def bench_gate(plan: Any, project_dir: Path, path: Any) -> dict[str, Any]:
    """The runner's bench runner and attainment targets, when the health gate has a bench check."""
    if plan.gates.health is None or plan.gates.health.bench is None:
        return {}
    import time

    from infra.cli.bench_gate import StackBench
    from infra.core.bench.results import attainment_target_pct
    from infra.core.resolve import resolve

    return {
        "bench": StackBench(plan, project_dir, in_vpc=path.in_vpc, runner=path.runner,
                            run_id=f"{plan.environment}-{time.time():.0f}-{os.getpid()}"),
        "bench_target_pct": lambda stack: attainment_target_pct(resolve(stack, project_dir).spec.workload.slo_attainment_pct),
    }


def journal_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The flags given that locate the journal and the stacks: a resume must repeat them."""
    out: tuple[str, ...] = ()
    if args.state_dir:
        out += ("--state-dir", str(args.state_dir))
    if args.project_dir:
        out += ("--project-dir", str(args.project_dir))
    return out
