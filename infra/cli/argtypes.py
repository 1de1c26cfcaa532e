"""argparse `type=` validators shared by the commands: a bad value exits 2 naming the flag,
the value and what is allowed (argparse prefixes the flag)."""
from __future__ import annotations

import argparse
import math


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
