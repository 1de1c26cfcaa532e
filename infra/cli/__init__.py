"""`python -m infra <command>`: the command-line entry point.

Each command lives with the code it drives and exposes `register(subparsers)`; the parser it
adds sets `func(args) -> int`. User errors (`infra.core.errors.UserError`) print one message on
stderr and exit with their documented code, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Sequence

from infra.core.errors import EXIT_INTERRUPTED, EXIT_OK, UserError, exit_code_epilog

# One line per command module; each defines register(subparsers). Imported when the parser is
# built, so `import infra.cli` stays light (the hydrator image imports it for `weights`).
COMMAND_MODULES = (
    "infra.cli.size",
    "infra.cli.simulate",
    "infra.cli.bench",
    "infra.cli.weights",
    "infra.cli.plan",
    "infra.cli.cost",
    "infra.cli.tco",
    "infra.cli.rollout",
    "infra.cli.deploy",
    "infra.cli.in_vpc",
    "infra.cli.preflight",
    "infra.cli.images",
    "infra.cli.docs",
    "infra.cli.new_stack",
)


JSON_ORDER_HINT = ("--json takes an optional FILE, so it takes the word after it: put positional arguments "
                   "first (`cost PLAN.json --json`)")


class Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (its default also exits 2), and says why
    when `--json` took the word meant as a positional argument."""

    _argv: Sequence[str] = ()

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # pragma: no cover - argparse plumbing
        if "arguments are required" in message and "--json" in self._argv:
            message += f" ({JSON_ORDER_HINT})"
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m infra",
        description="Size, plan, cost and roll out self-hosted LLM serving on AWS.\n\n"
        "Every command prints a human table, and one JSON document with --json (stdout) or --json FILE;\n"
        "positional arguments go first (`cost PLAN.json --json`). Money in JSON is a decimal string in\n"
        "USD (infra/core/money.py).",
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
