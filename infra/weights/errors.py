"""Errors of the weights tier, each with its documented exit code (docs/weights.md).

The codes are the project's (infra/errors.py); this table says what each means for the
weights commands, for the CLI epilog and docs/weights.md.
"""
from __future__ import annotations

from infra.errors import EXIT_INTEGRITY, EXIT_LOCKED, EXIT_PREFLIGHT, UserError

WEIGHTS_EXIT_CODES = {
    0: "success",
    1: "internal error (a bug: please report it with the traceback)",
    2: "bad input: invalid flag, model name, revision, source directory or missing --bucket",
    EXIT_PREFLIGHT: "not found or not ready: bucket or manifest missing (model incomplete), access denied, "
    "endpoint unreachable, not enough free disk, or `wait` timed out before the marker",
    EXIT_INTEGRITY: "integrity failure: object missing, size or sha256 mismatch, invalid or unsafe manifest",
    EXIT_LOCKED: "destination locked by another hydration (--no-wait, or --lock-timeout-s elapsed)",
}


class NotFoundError(UserError):
    """Something the command needs is not there (yet): bucket, manifest, marker, endpoint."""

    exit_code = EXIT_PREFLIGHT


class IntegrityError(UserError):
    """Bytes or the manifest do not match what was promised."""

    exit_code = EXIT_INTEGRITY


class LockedError(UserError):
    """Another process holds the destination's hydration lock."""

    exit_code = EXIT_LOCKED
