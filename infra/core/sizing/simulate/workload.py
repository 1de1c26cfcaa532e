"""What the simulated clients send: prompt/answer lengths and arrival times, deterministic by seed.

Lengths are fixed (the declared `input_tokens`/`output_tokens`), drawn from a lognormal with
those means, or taken from a trace. Arrivals are open loop (Poisson at a rate, optionally shaped
by a rate profile such as a ramp, or a trace replay time-warped by the same profile) or closed
loop (a fixed number of clients, each sending its next request when the previous one ends; the
replica driver does that).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from infra.core.sizing.simulate.trace import Trace

# Spread of a lognormal length distribution when only means are known: the Azure conversation
# trace's p95/p50 ratios (prompts 4,083/1,020, answers 451/129) give sigma = ln(ratio) / 1.645.
LOGNORMAL_SIGMA_INPUT = 0.84
LOGNORMAL_SIGMA_OUTPUT = 0.76


@dataclass(frozen=True)
class Lengths:
    """How prompt and answer lengths are drawn."""

    input_tokens: int  # the fixed value, or the mean
    output_tokens: int
    kind: str = "fixed"  # "fixed" | "lognormal" | "trace"
    trace: Trace | None = None
    max_total_tokens: int | None = None  # lognormal draws are capped at the context window

    @classmethod
    def from_trace(cls, trace: Trace) -> "Lengths":
        return cls(int(round(float(np.mean(trace.input_tokens)))), int(round(float(np.mean(trace.output_tokens)))),
                   "trace", trace)

    def digest(self) -> str:
        """What requests drawn from these lengths look like (a trace: its rows)."""
        h = hashlib.sha256(f"{self.kind}:{self.input_tokens}:{self.output_tokens}:{self.max_total_tokens}".encode())
        if self.trace is not None:
            for column in (self.trace.arrival_s, self.trace.input_tokens, self.trace.output_tokens):
                h.update(column.tobytes())
        return h.hexdigest()[:20]

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "fixed":
            return np.full(n, self.input_tokens, dtype=np.int64), np.full(n, self.output_tokens, dtype=np.int64)
        if self.kind == "trace":
            assert self.trace is not None
            idx = rng.integers(0, len(self.trace), n)
            return self.trace.input_tokens[idx], self.trace.output_tokens[idx]
        if self.kind == "lognormal":
            ins = _lognormal(rng, self.input_tokens, LOGNORMAL_SIGMA_INPUT, n)
            outs = _lognormal(rng, self.output_tokens, LOGNORMAL_SIGMA_OUTPUT, n)
            if self.max_total_tokens:
                ins = np.minimum(ins, self.max_total_tokens - 1)
                outs = np.minimum(outs, self.max_total_tokens - ins)
            return ins, outs
        raise ValueError(f"unknown lengths kind {self.kind!r}")


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.maximum(1, np.rint(rng.lognormal(mu, sigma, n))).astype(np.int64)


@dataclass(frozen=True)
class RateProfile:
    """A rate multiplier over time, piecewise linear through (t_s, multiplier) points; flat outside."""

    points: tuple[tuple[float, float], ...] = ((0.0, 1.0),)

    @classmethod
    def burst(cls, start_s: float, ramp_s: float, hold_s: float, factor: float) -> "RateProfile":
        """1x until `start_s`, up to `factor` x over `ramp_s`, held for `hold_s`."""
        return cls(((0.0, 1.0), (start_s, 1.0), (start_s + ramp_s, factor), (start_s + ramp_s + hold_s, factor)))

    def at(self, t: np.ndarray | float) -> np.ndarray:
        xs, ys = zip(*self.points)
        return np.interp(t, xs, ys)

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        """Integral of the multiplier from 0 to t (exact for piecewise-linear)."""
        xs = np.asarray([p[0] for p in self.points], dtype=float)
        ys = np.asarray([p[1] for p in self.points], dtype=float)
        seg = np.concatenate([[0.0], np.cumsum(np.diff(xs) * (ys[:-1] + ys[1:]) / 2)])
        t = np.asarray(t, dtype=float)
        k = np.clip(np.searchsorted(xs, t, side="right") - 1, 0, len(xs) - 1)
        y_t = np.interp(t, xs, ys)
        before = t < xs[0]
        return np.where(before, (t - xs[0]) * ys[0], seg[k] + (t - xs[k]) * (ys[k] + y_t) / 2)

    def warp(self, tau: np.ndarray, until_s: float) -> np.ndarray:
        """Real times t with cumulative(t) = tau (a unit-rate clock run through the profile)."""
        grid = np.linspace(0.0, until_s, max(2, int(until_s * 20) + 1))
        return np.interp(tau, self.cumulative(grid), grid)


def poisson_arrivals(rng: np.random.Generator, rate_per_s: float, until_s: float,
                     profile: RateProfile | None = None) -> np.ndarray:
    """Open-loop Poisson arrivals at `rate_per_s` x the profile's multiplier, in [0, until_s)."""
    profile = profile or RateProfile()
    horizon = float(profile.cumulative(np.asarray([until_s]))[0]) * rate_per_s
    n = int(horizon + 6 * math.sqrt(horizon) + 20)
    tau = np.cumsum(rng.exponential(1.0, n)) / rate_per_s
    tau = tau[tau < horizon / rate_per_s]
    return profile.warp(tau, until_s) if profile.points != ((0.0, 1.0),) else tau


def trace_arrivals(trace: Trace, rate_per_s: float, until_s: float,
                   profile: RateProfile | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trace rescaled to a mean of `rate_per_s`, time-warped by the profile, in [0, until_s)."""
    profile = profile or RateProfile()
    horizon = float(profile.cumulative(np.asarray([until_s]))[0])
    tau, ins, outs = trace.scaled(rate=rate_per_s).arrivals(horizon)
    return profile.warp(tau, until_s), ins, outs


@dataclass(frozen=True)
class OpenLoop:
    """Arrival times and lengths of an open-loop run (sorted by arrival)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


def open_loop(rng: np.random.Generator, lengths: Lengths, rate_per_s: float, until_s: float,
              profile: RateProfile | None = None, *, replay: bool = True) -> OpenLoop:
    """Poisson arrivals with drawn lengths, or (for a trace with `replay`) the trace's own arrivals."""
    if lengths.kind == "trace" and replay:
        assert lengths.trace is not None
        return OpenLoop(*trace_arrivals(lengths.trace, rate_per_s, until_s, profile))
    t = poisson_arrivals(rng, rate_per_s, until_s, profile)
    ins, outs = lengths.draw(rng, len(t))
    return OpenLoop(t, ins, outs)


def fixed_count(rng: np.random.Generator, lengths: Lengths, rate_per_s: float, n: int) -> OpenLoop:
    """`n` Poisson arrivals at `rate_per_s` (a benchmark's `--num-prompts N --request-rate R`)."""
    t = np.cumsum(rng.exponential(1.0 / rate_per_s, n))
    t -= t[0]
    ins, outs = lengths.draw(rng, n)
    return OpenLoop(t, ins, outs)

