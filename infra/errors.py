"""User-facing errors and the CLI's documented exit codes.

Every error a user can cause is one of these; the CLI prints its message (no traceback) and
exits with its code. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: unexpected exception, traceback shown
EXIT_USAGE = 2  # bad input, bad config, infeasible sizing
EXIT_POLICY = 3  # a mandatory policy is violated
EXIT_PREFLIGHT = 4  # a preflight check failed, or something needed is missing / not ready
EXIT_ROLLOUT_HALTED = 5  # a rollout stopped at a failed gate or step
EXIT_INTEGRITY = 6  # bytes or a manifest do not match what was promised (weights tier)
EXIT_LOCKED = 7  # another run holds the lock (a hydration of one destination, a rollout of one environment)

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: please report it with the traceback)",
    EXIT_USAGE: "bad input: invalid flag, file or config value, or SLOs that cannot be met",
    EXIT_POLICY: "a mandatory policy is violated",
    EXIT_PREFLIGHT: "a preflight check failed, or something needed is missing or not ready",
    EXIT_ROLLOUT_HALTED: "a rollout halted at a failed gate or step (resume with --resume)",
    EXIT_INTEGRITY: "integrity failure: size or sha256 mismatch, invalid or unsafe manifest",
    EXIT_LOCKED: "another run holds the lock (hydration of the same destination, rollout of the same environment)",
}


class UserError(Exception):
    """An error the user can fix; `str()` says what is wrong and what is allowed."""

    exit_code = EXIT_USAGE


class InputError(UserError):
    """A field has a value outside what is allowed.

    The message always names the field, the value, and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field, self.value, self.allowed, self.hint = field, value, allowed, hint
        msg = f"{field}: {value!r} is not allowed; {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class InfeasibleError(UserError):
    """The declared SLOs cannot be met by any allowed configuration."""


class PolicyViolationError(UserError):
    exit_code = EXIT_POLICY


class PreflightError(UserError):
    exit_code = EXIT_PREFLIGHT


class RolloutHaltedError(UserError):
    exit_code = EXIT_ROLLOUT_HALTED
