"""The load one replica saw in a benchmark run, and the replica simulation at it. Pure.

`bench --stack` predicts its run with it (infra/core/bench/predict.py) and `calibrate
--from-bench` fits a configuration's correction to it (infra/core/sizing/calibrate.py), so both
simulate the same load the same way: the run's mean lengths, its seed, `simulate` replica mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from infra.core.sizing.perf import ReplicaModel
from infra.core.sizing.simulate.memo import memoised
from infra.core.sizing.simulate.replica import ReplicaRun, run_closed, run_open
from infra.core.sizing.simulate.workload import Lengths, fixed_count

MIN_SIMULATED_REQUESTS = 200  # fewer make the simulator's p95 a handful of requests


@dataclass(frozen=True)
class LoadPoint:
    """What one replica saw in a run: fixed lengths (the run's means) and a closed loop of
    `concurrency` clients or Poisson arrivals at `rate_per_s` (a trace replays as Poisson at
    its rate)."""

    input_tokens: int
    output_tokens: int
    concurrency: int | None
    rate_per_s: float | None
    requests: int
    seed: int = 0

    @classmethod
    def split(cls, input_tokens: float, output_tokens: float, *, replicas: int, requests: int, seed: int,
              concurrency: int | None = None, rate_per_s: float | None = None) -> "LoadPoint":
        """A fleet-wide load spread evenly over `replicas`."""
        n = max(MIN_SIMULATED_REQUESTS, -(-requests // replicas))
        if concurrency is not None:
            return cls(round(input_tokens), round(output_tokens), max(1, round(concurrency / replicas)), None, n, seed)
        return cls(round(input_tokens), round(output_tokens), None, float(rate_per_s or 0.0) / replicas, n, seed)

    def describe(self) -> dict[str, Any]:
        return ({"concurrency": self.concurrency} if self.concurrency is not None
                else {"rate_per_s": round(float(self.rate_per_s or 0.0), 4)})


def simulate_point(rm: ReplicaModel, point: LoadPoint) -> ReplicaRun:
    """The replica simulation (`simulate` replica mode) at `point`, memoised."""
    lengths = Lengths(point.input_tokens, point.output_tokens)

    def run():
        if point.concurrency is not None:
            return run_closed(rm, lengths, point.concurrency, point.requests, seed=point.seed)
        rng = np.random.default_rng(point.seed)
        return run_open(rm, fixed_count(rng, lengths, float(point.rate_per_s), point.requests))

    return memoised(("bench-load-point", rm.identity, point), run)
