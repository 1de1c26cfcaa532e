"""argparse helpers shared by the commands: `command_parser` (one subcommand, its help from the
module docstring, its exit codes), and `type=` validators: a bad value exits 2 naming the flag,
the value and what is allowed (argparse prefixes the flag)."""
from __future__ import annotations

import argparse
import math
from decimal import Decimal, InvalidOperation

from infra.core.errors import exit_code_epilog, shown


def command_parser(subparsers: argparse._SubParsersAction, name: str, module_doc: str | None, *,
                   help: str) -> argparse.ArgumentParser:
    """A subcommand whose description is its module docstring after the first paragraph and
    whose epilog lists the exit codes in its own words."""
    return subparsers.add_parser(
        name, help=help, description=module_doc.split("\n\n", 1)[1] if module_doc else None,
        epilog=exit_code_epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; a positive integer is allowed") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; a positive integer is allowed")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; a finite number is allowed")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; a positive number is allowed")
    return value


def seconds(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; 0 or more seconds is allowed")
    return value


def fraction(text: str) -> float:
    value = positive_float(text)
    if value > 0.98:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; a fraction in (0, 0.98] is allowed")
    return value


def endpoint_url(text: str) -> str:
    """An AWS endpoint override: an http(s) URL with a host (botocore raises a bare ValueError
    on one it cannot parse, such as an unclosed IPv6 bracket, when the first client is made)."""
    from urllib.parse import urlsplit

    allowed = "an http(s)://host[:port] URL is allowed"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parses the port, raising ValueError on a bad one
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a URL ({exc}); {allowed}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not allowed; {allowed}")
    return text


def monthly_usd(text: str) -> Decimal:
    """A monthly USD amount from 0 to config.MAX_MONTHLY_USD (beyond it cents are not exact)."""
    from infra.core.config import MAX_MONTHLY_USD

    try:
        value = Decimal(text.strip().replace(",", "").removeprefix("$"))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 <= value <= MAX_MONTHLY_USD:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not allowed; a USD amount from 0 to {MAX_MONTHLY_USD:,} is allowed")
    return value
