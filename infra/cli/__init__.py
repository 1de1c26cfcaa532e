"""`python -m infra <command>`: the command-line entry point.

Each command lives with the code it drives and exposes `register(subparsers)`; the parser it
adds sets `func(args) -> int`. User errors (`infra.core.errors.UserError`) print one message on
stderr and exit with their documented code, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from infra.core.errors import EXIT_INTERRUPTED, EXIT_OK, UserError, exit_code_epilog

# One line per command module; each defines register(subparsers). Imported when the parser is
# built, so `import infra.cli` stays light (the hydrator image imports it for `weights`).
COMMAND_MODULES = (
    "infra.cli.size",
    "infra.cli.weights",
    "infra.cli.plan",
    "infra.cli.cost",
    "infra.cli.rollout",
    "infra.cli.deploy",
    "infra.cli.in_vpc",
    "infra.cli.preflight",
    "infra.cli.docs",
)


class Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (its default also exits 2)."""

    def error(self, message: str) -> None:  # pragma: no cover - argparse plumbing
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m infra",
        description="Size, plan, cost and roll out self-hosted LLM serving on AWS.",
        epilog=exit_code_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed command: its code, a user error's documented code, or 130 on Ctrl-C."""
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `... | head` closed the pipe: not an error
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv))
