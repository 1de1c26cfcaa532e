"""What a benchmark run sends: how many requests, when, and how long each is. Pure, seeded.

Closed loop (`--concurrency C`): C clients, each sending its next request when its previous one
ends. Open loop (`--rate R`): Poisson arrivals at R per second (the simulator's `fixed_count`,
so `bench` and `simulate` draw the same arrivals for the same seed). A trace (`--trace FILE`):
its arrivals and lengths (the simulator's trace reader), rescaled by `--trace-rate`.

Every run is bounded: at most `requests` requests and `duration_s` seconds of sending
(MAX_REQUESTS and MAX_DURATION_S cap what a flag may ask).

Prompts are lists of token ids (exact lengths without a tokenizer), drawn at random from the
vocabulary so that no two prompts share a prefix (a prefix-cache hit would flatter TTFT).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infra.core.sizing.simulate.trace import Trace
from infra.core.sizing.simulate.workload import Lengths, fixed_count

MAX_REQUESTS = 100_000
MAX_DURATION_S = 3600.0
DEFAULT_REQUESTS = 100
# Token ids are drawn from [FIRST_ID, vocabulary): low ids are special tokens in most vocabularies.
FIRST_TOKEN_ID = 1000
DEFAULT_VOCAB = 32_000  # every catalog model's vocabulary is at least this large


@dataclass(frozen=True)
class Schedule:
    """The requests of one run, in order: lengths, and arrival times for an open loop."""

    kind: str  # "closed" | "poisson" | "trace"
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None  # None: closed loop
    concurrency: int | None
    rate_per_s: float | None
    duration_s: float
    seed: int

    def __len__(self) -> int:
        return len(self.input_tokens)

    def describe(self) -> dict:
        return {"kind": self.kind, "concurrency": self.concurrency, "rate_per_s": self.rate_per_s,
                "requests_max": len(self), "duration_s_max": self.duration_s, "seed": self.seed,
                "input_tokens_mean": round(float(np.mean(self.input_tokens)), 1) if len(self) else None,
                "output_tokens_mean": round(float(np.mean(self.output_tokens)), 1) if len(self) else None}


def schedule(*, requests: int, duration_s: float, seed: int = 0, concurrency: int | None = None,
             rate_per_s: float | None = None, lengths: Lengths | None = None, trace: Trace | None = None) -> Schedule:
    """The run's requests: exactly one of `concurrency`, `rate_per_s` or `trace` sets the arrivals
    (a trace also its lengths); `lengths` the fixed lengths otherwise."""
    if sum(x is not None for x in (concurrency, rate_per_s, trace)) != 1:
        raise ValueError("exactly one of concurrency, rate_per_s, trace")
    rng = np.random.default_rng(seed)
    n = min(requests, MAX_REQUESTS)
    duration_s = min(duration_s, MAX_DURATION_S)
    if trace is not None:
        t, ins, outs = trace.arrivals(duration_s)
        return Schedule("trace", ins[:n], outs[:n], t[:n], None, trace.rate_per_s, duration_s, seed)
    assert lengths is not None
    if concurrency is not None:
        ins, outs = lengths.draw(rng, n)
        return Schedule("closed", ins, outs, None, concurrency, None, duration_s, seed)
    load = fixed_count(rng, lengths, float(rate_per_s), n)
    return Schedule("poisson", load.input_tokens, load.output_tokens, load.arrival_s, None, rate_per_s, duration_s, seed)


def prompt_ids(rng: np.random.Generator, tokens: int, vocab: int = DEFAULT_VOCAB) -> list[int]:
    """`tokens` random token ids below `vocab` (and above the special tokens)."""
    return rng.integers(FIRST_TOKEN_ID, max(vocab, FIRST_TOKEN_ID + 1), tokens).tolist()
