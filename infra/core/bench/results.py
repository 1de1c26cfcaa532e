"""What one benchmark run measured, per request and summarised. Pure.

A request either succeeds (`outcome == "ok"`: a complete stream with a finish reason) or fails
with one outcome: an HTTP status (`http-429`, `http-503`, ...), `disconnect` (the stream broke
off), `malformed` (a chunk that is not JSON), `incomplete` (the stream ended without a finish
reason), `timeout`, `connect` (no connection) or `stream-error` (an error event in the stream).
Failures are never latency: the latency figures are over successful requests only, and the
attainment counts every failure as a miss of every SLO (the simulator's convention,
infra/core/sizing/simulate/stats.py, whose statistics these are).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from infra.core.sizing.simulate.stats import SLO_METRICS, Latencies, summary_ms

OK = "ok"
HTTP_PREFIX = "http-"
FAILURES = ("disconnect", "malformed", "incomplete", "timeout", "connect", "stream-error")
FIGURES = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")


@dataclass
class RequestRecord:
    """One request as the client saw it; times in seconds from when it was (last) sent."""

    index: int
    input_tokens: int
    output_tokens_requested: int
    sent_at_s: float  # since the run started
    outcome: str = "incomplete"
    http_status: int | None = None
    ttft_s: float | None = None
    chunk_s: list[float] = field(default_factory=list)  # arrival of every streamed chunk with a choice
    e2e_s: float | None = None
    output_tokens: int = 0  # the server's usage count, else the chunks
    finish_reason: str | None = None
    attempts: int = 1
    retry_after_s: float | None = None  # the last failed attempt's Retry-After header
    retry_wait_s: float = 0.0  # waited honouring Retry-After (--retry), before the last attempt
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def gaps_s(self) -> list[float]:
        """Inter-token gaps: between consecutive streamed chunks."""
        return [b - a for a, b in zip(self.chunk_s, self.chunk_s[1:])]

    @property
    def tpot_s(self) -> float | None:
        """(e2e - TTFT) / (tokens - 1), as vLLM's benchmark defines TPOT; None for one token."""
        if not self.ok or self.output_tokens < 2 or self.e2e_s is None or self.ttft_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def to_dict(self, gaps: bool = True) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "chunk_s"}
        for key in ("ttft_s", "e2e_s", "retry_after_s"):
            out[key] = None if out[key] is None else round(out[key], 6)
        out["retry_wait_s"] = round(self.retry_wait_s, 6)
        out["sent_at_s"] = round(self.sent_at_s, 6)
        if gaps:
            out["gaps_s"] = [round(g, 6) for g in self.gaps_s]
        return out


def error_key(outcome: str) -> str:
    """How a failure is counted in `errors`: the HTTP status alone ("503"), else the outcome."""
    return outcome[len(HTTP_PREFIX):] if outcome.startswith(HTTP_PREFIX) else outcome


def latencies(records: list[RequestRecord]) -> Latencies:
    """Per-request latencies with every failure a miss (inf), for attainment."""
    inf = float("inf")
    ttft = np.array([r.ttft_s if r.ok else inf for r in records], dtype=float)
    e2e = np.array([r.e2e_s if r.ok else inf for r in records], dtype=float)
    tpot = np.array([(r.tpot_s if r.tpot_s is not None else np.nan) if r.ok else inf for r in records], dtype=float)
    return Latencies(ttft, tpot, e2e)


def summarise(records: list[RequestRecord], *, wall_s: float,
              targets_ms: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """The run's figures: latency {mean, p50, p95, p99} over the successes, throughput over the
    run's wall time, errors by outcome, retries, and attainment against `targets_ms`
    (keys ttft, tpot, e2e) with failures as misses."""
    ok = [r for r in records if r.ok]
    gaps = [g for r in ok for g in r.gaps_s]
    errors: dict[str, int] = {}
    for r in records:
        if not r.ok:
            errors[error_key(r.outcome)] = errors.get(error_key(r.outcome), 0) + 1
    tokens = sum(r.output_tokens for r in ok)
    doc: dict[str, Any] = {
        "requests": {"sent": len(records), "ok": len(ok), "failed": len(records) - len(ok)},
        "ttft_ms": summary_ms(np.array([r.ttft_s for r in ok], dtype=float)),
        "tpot_ms": summary_ms(np.array([r.tpot_s for r in ok if r.tpot_s is not None], dtype=float)),
        "itl_ms": summary_ms(np.array(gaps, dtype=float)),
        "e2e_ms": summary_ms(np.array([r.e2e_s for r in ok], dtype=float)),
        "output_tokens_per_s": round(tokens / wall_s, 3) if wall_s > 0 else 0.0,
        "requests_per_s": round(len(ok) / wall_s, 4) if wall_s > 0 else 0.0,
        "errors": dict(sorted(errors.items())),
        "retries": {
            "retried_requests": sum(1 for r in records if r.attempts > 1),
            "waited_s": round(sum(r.retry_wait_s for r in records), 3),
        },
        "short_outputs": sum(1 for r in ok if r.output_tokens < r.output_tokens_requested),
        "wall_s": round(wall_s, 3),
    }
    if targets_ms is not None:
        declared = {m: targets_ms.get(m) for m in SLO_METRICS}
        doc["slo_ms"] = declared
        doc["attainment_pct"] = round(latencies(records).attainment_pct(declared), 3) if records else None
    return doc


# --- against a prediction -------------------------------------------------------------------------

RATIO_FIGURES = (("ttft_ms", "p50"), ("ttft_ms", "p95"), ("tpot_ms", "p50"), ("tpot_ms", "p95"),
                 ("e2e_ms", "p50"), ("e2e_ms", "p95"), ("output_tokens_per_s", None))


def figure(doc: Mapping[str, Any], name: str, quantile: str | None) -> float | None:
    value = doc.get(name)
    if quantile is not None:
        value = value.get(quantile) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def ratios(measured: Mapping[str, Any], predicted: Mapping[str, Any]) -> dict[str, float | None]:
    """measured / predicted for every figure both state ("ttft_ms.p50": 1.08, ...)."""
    out: dict[str, float | None] = {}
    for name, q in RATIO_FIGURES:
        m, p = figure(measured, name, q), figure(predicted, name, q)
        out[f"{name}.{q}" if q else name] = round(m / p, 4) if m is not None and p else None
    return out


def attainment_target_pct(slo_attainment_pct: Mapping[str, float] | None) -> float:
    """The attainment a steady benchmark must reach: the workload's `sustained` target, else
    the share a p95 implies (95 %)."""
    from infra.core.sizing.simulate.stats import SLO_QUANTILE_PCT

    return float((slo_attainment_pct or {}).get("sustained", SLO_QUANTILE_PCT))
