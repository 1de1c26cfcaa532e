"""User-facing errors and the one table of exit codes every command documents and returns.

Every error a user can cause is a `UserError`; the CLI prints its message (no traceback) and
exits with its code. Anything else is a bug and keeps its traceback. `EXIT_CODES` is the only
place a code is given a meaning: the CLI epilogs, the README and docs/ tables are generated
from it (`python -m infra docs --write`), with the wording a command adds in `for_command`.
"""
from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import Mapping

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: unexpected exception, traceback shown
EXIT_USAGE = 2  # bad input, bad config, infeasible sizing
EXIT_POLICY = 3  # a mandatory policy is violated
EXIT_PREFLIGHT = 4  # a preflight check failed, something needed is missing / not ready, or no room to write
EXIT_ROLLOUT_HALTED = 5  # a rollout stopped at a failed gate or step
EXIT_INTEGRITY = 6  # bytes or a manifest do not match what was promised (weights tier)
EXIT_LOCKED = 7  # another run holds the lock (a hydration of one destination, a rollout of one environment)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, what a shell reports for an interrupted command)


@dataclass(frozen=True)
class ExitCode:
    code: int
    meaning: str
    for_command: Mapping[str, str] = field(default_factory=dict)  # command -> what the code means there
    commands: tuple[str, ...] | None = None  # the commands that return it; None: any command

    def describe(self, command: str | None = None) -> str:
        return self.for_command.get(command or "", self.meaning)

    def used_by(self, command: str | None) -> bool:
        return command is None or self.commands is None or command in self.commands


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "success", {
        "rollout": "success: every wave is up, healthy and baked (or --dry-run: every gate would pass)",
    }),
    ExitCode(EXIT_INTERNAL, "internal error (a bug: please report it with the traceback)"),
    ExitCode(EXIT_USAGE, "bad input: a flag, file or config value (the message names the field, the value and what "
                         "is allowed), or SLOs that cannot be met (it names the SLO and the best achievable value)", {
        "weights": "bad input: invalid flag, model name, revision, source directory or missing --bucket, or the "
                   "revision is already claimed for different files (the message names the claim)",
        "rollout": "bad input: rollout plan, stack config, flag, or a journal that does not match the plan",
    }),
    ExitCode(EXIT_POLICY, "a mandatory policy is violated (`plan`, `cost-diff --fail-on-violation`, `rollout --dry-run`)", {
        "rollout": "--dry-run: a mandatory policy would be violated",
    }, commands=("plan", "cost-diff", "rollout")),
    ExitCode(EXIT_PREFLIGHT, "a preflight check failed, or something needed is missing or not ready, or an output "
                             "could not be written (disk full, quota, read-only filesystem: the old file is kept)", {
        "weights": "not found or not ready: bucket or manifest missing (model incomplete), access denied, "
                   "endpoint unreachable, not enough free disk or the disk filled up (partial downloads are "
                   "kept for resume), a read-only filesystem, or `wait` timed out before the marker",
        "rollout": "preflight failed (the `preflight` command)",
        "bench": "no request succeeded: the endpoint refused, dropped or never answered every one (the report "
                 "counts them by outcome)",
    }),
    ExitCode(EXIT_ROLLOUT_HALTED, "a rollout or deploy halted at a failed step or gate (rollout: resume with --resume)", {
        "rollout": "the rollout halted at a failed step or gate (--dry-run: a gate would stop it); resume with --resume",
        "deploy": "a step failed: the base update, the in-VPC build (its status and log tail are shown), the wait for "
                  "the gateway's load balancer, or the GPU node groups (then serving is up where they were created); "
                  "fix and run deploy again",
    }, commands=("rollout", "deploy")),
    ExitCode(EXIT_INTEGRITY, "integrity failure (weights): size or sha256 mismatch, invalid or unsafe manifest", {
        "weights": "integrity failure: object missing, size or sha256 mismatch, invalid or unsafe manifest, a "
                   "hydrated file changed since it was verified (`wait`), or `repair` left objects unrepaired",
    }, commands=("weights",)),
    ExitCode(EXIT_LOCKED, "another run holds the lock (hydration of the same destination, rollout of the same environment)", {
        "weights": "destination locked by another hydration (--no-wait, or --lock-timeout-s elapsed)",
        "rollout": "another rollout of this environment holds the lock",
    }, commands=("weights", "rollout")),
    ExitCode(EXIT_INTERRUPTED, "interrupted (Ctrl-C): nothing half-written; what was done so far is reported"),
)


def exit_code_table(command: str | None = None) -> dict[int, str]:
    """code -> meaning, in the words of `command` where it has its own."""
    return {e.code: e.describe(command) for e in EXIT_CODES if e.used_by(command)}


def exit_code_epilog(command: str | None = None) -> str:
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in exit_code_table(command).items())


# How much of a value an error message shows: enough to recognise it, never a whole document
# (an expanded mapping, a pasted file). Every formatter of a user error goes through `shown`.
SHOWN_CHARS = 120
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value as an error message shows it: its repr, bounded in depth, items and length."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    return clip(_REPR.repr(value), limit)


class UserError(Exception):
    """An error the user can fix; `str()` says what is wrong and what is allowed."""

    exit_code = EXIT_USAGE


class InputError(UserError):
    """A field has a value outside what is allowed.

    The message always names the field, the value, and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field, self.value, self.allowed, self.hint = field, value, allowed, hint
        msg = f"{field}: {shown(value)} is not allowed; {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class InfeasibleError(UserError):
    """The declared SLOs cannot be met by any allowed configuration."""


class PolicyViolationError(UserError):
    exit_code = EXIT_POLICY


class PreflightError(UserError):
    exit_code = EXIT_PREFLIGHT


class NotFoundError(UserError):
    """Something a command needs is not there (yet): bucket, manifest, marker, endpoint."""

    exit_code = EXIT_PREFLIGHT


class IntegrityError(UserError):
    """Bytes or the manifest do not match what was promised."""

    exit_code = EXIT_INTEGRITY


class StorageError(UserError):
    """A file could not be written: the disk is full, a quota is exhausted, or the filesystem is
    read-only. The message names the path; nothing half-written replaced an old file."""

    exit_code = EXIT_PREFLIGHT


class LockedError(UserError):
    """Another process holds a lock: a destination's hydration, an environment's rollout."""

    exit_code = EXIT_LOCKED


class RolloutHaltedError(UserError):
    exit_code = EXIT_ROLLOUT_HALTED


class RolloutLockedError(LockedError):
    """Another rollout of the same environment is running (or died holding an S3 lock)."""


class WorkspaceError(UserError):
    """A Pulumi operation failed; the message says which stack, which step and what to do."""

    exit_code = EXIT_ROLLOUT_HALTED

    def __init__(self, message: str, kind: str = "failed") -> None:
        self.kind = kind  # failed | locked | not-found | unavailable | policy
        super().__init__(message)
