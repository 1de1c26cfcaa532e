"""Where a rollout keeps its journal, its lock and each stack's last deployed record.

Two stores, one interface (`StateStore`):

* `LocalStateStore(dir, env)`: files under `<dir>/<env>/`. The lock is an `flock` on
  `<dir>/<env>/lock` (the kernel releases it when the process dies, so a crash never leaves a
  stale lock); the holder (user, host, pid, time) is written into the file for the message a
  second rollout prints.
* `infra.ops.rollout.s3state.S3StateStore`: the same layout in S3, for a team (lock by conditional
  create, `If-None-Match: *`). boto3 is imported there only.

Layout: `journal.json` (current rollout), `history/<rollout-id>.json`, `deployed/<stack>.json`
(`{"config": <Pulumi.<stack>.yaml text>, "cost": {scenario: usd}, "rollout_id", "at"}`), `lock`.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

from infra.core import patterns
from infra.core.errors import RolloutLockedError, UserError
from infra.core.files import atomic_write

class StateStore(Protocol):
    def describe(self) -> str: ...

    def read_journal(self) -> dict[str, Any] | None: ...

    def write_journal(self, doc: Mapping[str, Any]) -> None: ...

    def archive_journal(self, rollout_id: str, doc: Mapping[str, Any]) -> None:
        """Move the current journal to history (it is no longer current)."""
        ...

    def set_aside_journal(self, name: str) -> str:
        """Move a current journal that cannot be read to `history/<name>.json`, as it is; returns where."""
        ...

    def read_deployed(self, stack: str) -> dict[str, Any] | None: ...

    def write_deployed(self, stack: str, doc: Mapping[str, Any]) -> None: ...

    def lock(self, holder: Mapping[str, Any]) -> contextlib.AbstractContextManager[None]:
        """Hold the environment's lock for the block; RolloutLockedError when another holds it."""
        ...

    def break_lock(self) -> str:
        """Remove a lock left by a dead rollout; returns what was removed."""
        ...


def holder_text(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "an unknown holder"
    parts = [f"{k}={holder[k]}" for k in ("rollout", "user", "host", "pid", "since") if holder.get(k) not in (None, "")]
    return ", ".join(parts) or "an unknown holder"


def _check_stack(stack: str) -> str:
    if not patterns.matches(patterns.STACK, stack):
        raise UserError(f"stack {stack!r}: not a valid stack name for a state file")
    return stack


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: the {what} is unreadable ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: the {what} is not a JSON object")
    return doc


class LocalStateStore:
    def __init__(self, directory: str | Path, environment: str) -> None:
        self.root = Path(directory) / environment
        self.environment = environment

    def describe(self) -> str:
        return str(self.root)

    @property
    def journal_path(self) -> Path:
        return self.root / "journal.json"

    def read_journal(self) -> dict[str, Any] | None:
        return _read_json(self.journal_path, "rollout journal")

    def _dir(self, *parts: str) -> Path:
        """The store's directory (or a subdirectory), created here: the file writer creates none."""
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_journal(self, doc: Mapping[str, Any]) -> None:
        # Compact (C encoder): the journal is rewritten after every step.
        self._dir()
        atomic_write(self.journal_path, json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")

    def archive_journal(self, rollout_id: str, doc: Mapping[str, Any]) -> None:
        atomic_write(self._dir("history") / f"{rollout_id}.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
        self.journal_path.unlink(missing_ok=True)

    def set_aside_journal(self, name: str) -> str:
        target = self.root / "history" / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.journal_path, target)  # a rename: the bytes stay as they were, for a post-mortem
        return str(target)

    def read_deployed(self, stack: str) -> dict[str, Any] | None:
        return _read_json(self.root / "deployed" / f"{_check_stack(stack)}.json", "deployed record")

    def write_deployed(self, stack: str, doc: Mapping[str, Any]) -> None:
        atomic_write(self._dir("deployed") / f"{_check_stack(stack)}.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def lock(self, holder: Mapping[str, Any]) -> Iterator[None]:
        path = self._dir() / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                try:
                    current = json.loads(path.read_text() or "null")
                except (OSError, json.JSONDecodeError):
                    current = None
                raise RolloutLockedError(
                    f"rollout of environment {self.environment!r} is locked by {holder_text(current)} "
                    f"({path}); wait for it to finish (two rollouts of one environment never run at once)"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(dict(holder), sort_keys=True) + "\n").encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock

    def break_lock(self) -> str:
        # An flock dies with its process: there is never a stale local lock to break.
        return f"{self.root / 'lock'}: local locks are released when their process exits; nothing to break"
