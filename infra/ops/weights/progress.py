"""A dependency-free progress bar on stderr, drawn only when stderr is a terminal."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_MIB = 1024 * 1024


class ProgressBar:
    """Thread-safe byte counter; redraws at most 10 times a second."""

    def __init__(self, total_bytes: int, label: str, *, enabled: bool | None = None,
                 stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total_bytes = max(total_bytes, 0)
        self.label = label
        self.width = width
        self.done_bytes = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._closed = False

    def advance(self, n_bytes: int) -> None:
        with self._lock:
            self.done_bytes += n_bytes
            now = time.monotonic()
            if self.enabled and not self._closed and now - self._last_draw >= 0.1:
                self._last_draw = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        fraction = min(fraction, 1.0)
        filled = int(fraction * self.width)
        rate = self.done_bytes / _MIB / max(now - self._start, 1e-6)
        line = (f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{fraction * 100:5.1f}% {self.done_bytes / _MIB:,.0f}/"
                f"{self.total_bytes / _MIB:,.0f} MiB {rate:,.0f} MiB/s")
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line; later calls do nothing."""
        with self._lock:
            if self.enabled and not self._closed:
                self._closed = True
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
