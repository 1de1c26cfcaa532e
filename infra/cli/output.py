"""The `--json [FILE]` contract every command follows.

Bare `--json` prints one JSON document on stdout (and nothing else there); `--json FILE` writes
FILE through the project's one file writer and keeps the human output on stdout; `--json -` is
stdout. Positional arguments come before `--json` (`cost PLAN.json --json`), because an optional
value would take the next word.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable

from infra.core.files import STDOUT, atomic_write


def add_json_argument(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument(
        "--json", nargs="?", const=STDOUT, default=None, metavar="FILE",
        help=f"{what} as JSON: on stdout (bare --json or '-'), or written to FILE; positional arguments first",
    )


def warn(warnings: Iterable[str]) -> None:
    """Warnings go to stderr, one line each, so stdout keeps a --json document intact."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def json_text(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=str) + "\n"


def emit_json(target: str | None, doc: Any) -> bool:
    """Write `doc` where `--json` asked; True when it went to stdout (print nothing else there)."""
    if target is None:
        return False
    text = json_text(doc)
    if target == STDOUT:
        sys.stdout.write(text)
        return True
    atomic_write(target, text, field="--json")
    return False
