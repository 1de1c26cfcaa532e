"""Errors of the rollout and their exit codes (docs/rollout.md).

The codes are the project's (infra/errors.py); this table says what each means for
`rollout`. A refused lock (EXIT_LOCKED): retry later, or break a stale lock with --break-lock
once you know its holder is gone.
"""
from __future__ import annotations

from infra.errors import EXIT_LOCKED, EXIT_ROLLOUT_HALTED, UserError

EXIT_ROLLOUT_LOCKED = EXIT_LOCKED

ROLLOUT_EXIT_CODES = {
    0: "success: every wave is up, healthy and baked (or --dry-run: every gate would pass)",
    1: "internal error (a bug: please report it with the traceback)",
    2: "bad input: rollout plan, stack config, flag, or a journal that does not match the plan",
    3: "--dry-run: a mandatory policy would be violated",
    4: "preflight failed (the `preflight` command)",
    5: "the rollout halted at a failed step or gate (--dry-run: a gate would stop it); resume with --resume",
    EXIT_LOCKED: "another rollout of this environment holds the lock",
}


class RolloutLockedError(UserError):
    """Another rollout of the same environment is running (or died holding an S3 lock)."""

    exit_code = EXIT_ROLLOUT_LOCKED


class WorkspaceError(UserError):
    """A Pulumi operation failed; the message says which stack, which step and what to do."""

    exit_code = EXIT_ROLLOUT_HALTED

    def __init__(self, message: str, kind: str = "failed") -> None:
        self.kind = kind  # failed | locked | not-found | unavailable | policy
        super().__init__(message)
