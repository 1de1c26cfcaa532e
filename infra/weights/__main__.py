"""`python -m infra.weights <subcommand> ...`: the weights CLI alone.

Same subcommands, flags, output and exit codes as `python -m infra weights ...`, but it
imports only the weights tier. The hydrator image uses it: it carries boto3 and pydantic,
not pulumi or the other command modules that `python -m infra` loads to build its parser.
"""
from __future__ import annotations

import sys
from typing import Sequence

from infra.cli import _Parser
from infra.errors import UserError
from infra.weights import cli as weights_cli


def build_parser() -> _Parser:
    # prog reads as the full CLI, whose `weights` command this is, in usage and help.
    parser = _Parser(prog="python -m infra", add_help=False)
    subparsers = parser.add_subparsers(dest="command", parser_class=_Parser)
    subparsers.required = True
    weights_cli.register(subparsers)
    return parser


def parse_args(argv: Sequence[str]):
    return build_parser().parse_args(["weights", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
