"""`python -m infra <command>`: the command-line entry point.

Each command lives with the code it drives and exposes `register(subparsers)`; the parser it
adds sets `func(args) -> int`. User errors (`infra.errors.UserError`) print one message on
stderr and exit with their documented code, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from infra.errors import EXIT_CODES, UserError

# One line per command module; each defines register(subparsers).
COMMAND_MODULES = (
    "infra.sizing.cli",
    "infra.weights.cli",
    "infra.plan_cli",
    "infra.cost.cli",
    "infra.rollout.cli",
    "infra.preflight.cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (its default also exits 2)."""

    def error(self, message: str) -> None:  # pragma: no cover - argparse plumbing
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = _Parser(
        prog="python -m infra",
        description="Size, plan, cost and roll out self-hosted LLM serving on AWS.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `... | head` closed the pipe: not an error
        return 0
