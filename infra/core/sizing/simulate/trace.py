"""Request traces: the Azure LLM inference trace format, or any CSV with its three columns.

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44

TIMESTAMP is an ISO date-time (any number of fractional digits) or a number of seconds;
ContextTokens (prompt) and GeneratedTokens (answer) are positive integers. Other columns are
ignored. A bad row is an InputError naming the file, the line, the column and the value.
Rows need not be sorted; arrivals are taken relative to the first.

`Trace.scaled(rate=R)` or `scaled(factor=X)` rescales time: to a mean of R requests per second,
or X times the trace's own rate. Replays past the trace's end wrap around (the next lap starts
one mean gap after the last request).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from infra.core.errors import InputError

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_FRACTION = re.compile(r"^(.*[T ]\d{1,2}:\d{2}:\d{2})\.(\d+)(.*)$")


def _timestamp_s(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    m = _FRACTION.match(text)
    frac = 0.0
    if m:  # datetime takes at most 6 fractional digits; the Azure trace has 7
        text, frac = m.group(1) + m.group(3), float("0." + m.group(2))
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:  # naive times: read as UTC, so no local DST shift enters the gaps
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp() + frac


@dataclass(frozen=True)
class Trace:
    """Arrivals (seconds from the first request) and lengths, sorted by arrival."""

    source: str
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    @property
    def rate_per_s(self) -> float:
        """Mean arrival rate: requests per second of trace (one gap per request)."""
        return len(self) / self.duration_s if self.duration_s > 0 else math.inf

    def scaled(self, *, rate: float | None = None, factor: float | None = None) -> "Trace":
        if rate is not None and factor is not None:
            raise InputError("--trace-rate/--trace-scale", f"{rate}/{factor}", "at most one of the two")
        if rate is None and factor is None:
            return self
        k = factor if factor is not None else rate / self.rate_per_s
        return replace(self, arrival_s=self.arrival_s / k)

    def arrivals(self, until_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arrival times in [0, until_s) with their lengths, the trace repeated as needed."""
        gap = self.duration_s / max(1, len(self) - 1) if len(self) > 1 else 1.0
        lap = self.duration_s + gap
        laps = max(1, math.ceil(until_s / lap)) if lap > 0 else 1
        t = np.concatenate([self.arrival_s + k * lap for k in range(laps)])
        keep = t < until_s
        return t[keep], np.tile(self.input_tokens, laps)[keep], np.tile(self.output_tokens, laps)[keep]


def read_trace(path: str | Path, field: str = "--trace") -> Trace:
    """Parse a trace file; bad rows raise InputError(file:line column ...)."""
    p = Path(path)
    try:
        fh = open(p, newline="")
    except OSError as exc:
        raise InputError(field, str(path), f"a readable CSV file ({exc.strerror})") from None
    times: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise InputError(field, str(path), f"a CSV whose header has the columns {', '.join(COLUMNS)} "
                                               f"(missing: {', '.join(missing)})")
        for row in reader:
            line = reader.line_num
            for col in COLUMNS:
                value = row.get(col)
                if value is None:
                    raise InputError(f"{p}:{line} column {col}", None, "a value in every column (the row is short)")
            try:
                t = _timestamp_s(row["TIMESTAMP"].strip())
            except ValueError:
                raise InputError(f"{p}:{line} column TIMESTAMP", row["TIMESTAMP"],
                                 "an ISO date-time (2023-11-16 18:15:46.68) or seconds") from None
            if not math.isfinite(t):
                raise InputError(f"{p}:{line} column TIMESTAMP", row["TIMESTAMP"], "a finite time")
            counts = []
            for col in COLUMNS[1:]:
                text = row[col].strip()
                if not text.isdigit() or int(text) <= 0:
                    raise InputError(f"{p}:{line} column {col}", row[col], "a positive integer number of tokens")
                counts.append(int(text))
            times.append(t)
            ins.append(counts[0])
            outs.append(counts[1])
    if not times:
        raise InputError(field, str(path), "a trace with at least one request row")
    order = np.argsort(np.asarray(times), kind="stable")
    t = np.asarray(times)[order]
    return Trace(str(path), t - t[0], np.asarray(ins, dtype=np.int64)[order], np.asarray(outs, dtype=np.int64)[order])
