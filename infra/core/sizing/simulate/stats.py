"""Latency summaries, SLO pass and attainment over a set of requests.

A request that was rejected (admission limit, a context the engine refuses) or lost (its
replica's AZ went away) has every latency = infinity: it counts as a miss in each p95 and in
the joint attainment. Percentiles are order statistics (numpy's `inverted_cdf`), so an infinite
value is never interpolated with a finite one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

QUANTILES = {"p50": 50, "p95": 95, "p99": 99}
SLO_METRICS = ("ttft", "tpot", "e2e")  # workload fields <metric>_p95_ms
# A p95 target holds when this share of requests is within it: the default attainment target.
SLO_QUANTILE_PCT = QUANTILES["p95"]


def summary_ms(values_s: np.ndarray) -> dict[str, float | None]:
    """{mean, p50, p95, p99} in milliseconds; None where the value is infinite (or no data)."""
    v = np.asarray(values_s, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": None, **{k: None for k in QUANTILES}}
    qs = np.percentile(v, list(QUANTILES.values()), method="inverted_cdf")
    out = {"mean": _ms(float(np.mean(v)))}
    out.update({k: _ms(float(q)) for k, q in zip(QUANTILES, qs)})
    return out


def _ms(value_s: float) -> float | None:
    return None if not math.isfinite(value_s) else round(value_s * 1e3, 3)


def weighted_percentiles_ms(values_s: np.ndarray, weights: np.ndarray) -> dict[str, float | None]:
    """{mean, p50, p95, p99} of values where each counts `weights` times (inter-token gaps)."""
    v, w = np.asarray(values_s, dtype=float), np.asarray(weights, dtype=float)
    keep = w > 0
    v, w = v[keep], w[keep]
    if v.size == 0:
        return {"mean": None, **{k: None for k in QUANTILES}}
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cdf = np.cumsum(w) / w.sum()
    out = {"mean": _ms(float(np.sum(v * w) / w.sum()))}
    for k, q in QUANTILES.items():
        out[k] = _ms(float(v[min(len(v) - 1, int(np.searchsorted(cdf, q / 100.0)))]))
    return out


@dataclass(frozen=True)
class Latencies:
    """Per-request latencies in seconds (inf = missed: rejected or lost; tpot NaN: one-token answers)."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray

    def __len__(self) -> int:
        return len(self.e2e_s)

    def summaries(self) -> dict[str, dict[str, float | None]]:
        return {f"{m}_ms": summary_ms(getattr(self, f"{m}_s")) for m in SLO_METRICS}

    def within(self, targets_ms: dict[str, float | None]) -> np.ndarray:
        """Per request: True when every declared SLO holds for it."""
        ok = np.isfinite(self.e2e_s)
        for m in SLO_METRICS:
            target = targets_ms.get(m)
            if target is None:
                continue
            v = getattr(self, f"{m}_s")
            ok &= np.isnan(v) | (v * 1e3 <= target)
        return ok

    def attainment_pct(self, targets_ms: dict[str, float | None]) -> float:
        """Share of the requests within all SLOs at once, percent."""
        return 100.0 * float(np.mean(self.within(targets_ms))) if len(self) else 100.0

    def p95_ms(self, metric: str) -> float:
        v = getattr(self, f"{metric}_s")
        v = v[~np.isnan(v)]
        if v.size == 0:
            return 0.0
        return float(np.percentile(v, SLO_QUANTILE_PCT, method="inverted_cdf")) * 1e3

    def broken(self, targets_ms: dict[str, float | None]) -> list[tuple[str, float, float]]:
        """(metric, target ms, p95 ms) for every declared p95 that does not hold."""
        out = []
        for m in SLO_METRICS:
            target = targets_ms.get(m)
            if target is not None and not self.p95_ms(m) <= target:
                out.append((m, target, self.p95_ms(m)))
        return out
