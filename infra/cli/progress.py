"""A one-line status on stderr for long runs: drawn only on a terminal, and only once a run has
taken about two seconds (short runs print nothing)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class DelayedStatus:
    """`status("...")` or `status.bar(done, total, label)`; use as a context manager (clears the line)."""

    DELAY_S = 2.0
    WIDTH = 30

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()) if enabled is None else enabled
        self.start = time.monotonic()
        self.shown = False
        self._last = 0.0

    def __enter__(self) -> "DelayedStatus":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.start < self.DELAY_S or now - self._last < 0.1:
            return
        self.shown, self._last = True, now
        self.stream.write(f"\r\x1b[K{text}")
        self.stream.flush()

    def bar(self, done: float, total: float, label: str) -> None:
        fraction = min(1.0, done / total) if total > 0 else 1.0
        filled = int(fraction * self.WIDTH)
        self(f"{label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction * 100:5.1f}% "
             f"({time.monotonic() - self.start:,.0f} s)")
