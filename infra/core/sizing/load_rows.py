"""Published measurements under load, and the replica simulator run against each of them.

Reads `infra/core/catalog/calibration/load_measurements.csv` (a copy of the project's shared
table; every row names its source). A row is simulated when its engine, model, GPU, lengths
and load are stated and modelled:

- NVIDIA NIM concurrency sweeps (TensorRT-LLM backend, GenAI-Perf, fixed lengths, closed loop):
  engine `trtllm`, the declared lengths, `concurrency` clients. NIM's maximum batch size is not
  stated; `LoadAssumptions.nim_max_batch` is fitted with the engine (`calibrate --write`).
- vLLM 0.14 `vllm bench serve` on H200 (Llama-3.1-70B FP8, Poisson rates, prefix caching on):
  engine `vllm`, lognormal lengths around the stated means (the source states means only; the
  spread is the Azure conversation trace's, an assumption), the stated number of prompts. The
  multi-turn set reuses long prefixes; the source does not state its prefix-cache hit rate, so
  `LoadAssumptions.multi_turn_prefix_hit` is set from that set's lowest-rate row
  (`MULTI_TURN_ANCHOR`), which is then not counted in the accuracy figures.

Every other row is listed with the reason it is not simulated. Errors are simulated / measured
- 1: negative means the simulator is optimistic (it predicts less latency than was measured).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infra.core.catalog import CATALOG_DIR, Catalog
from infra.core.sizing.perf import EngineParams, ReplicaModel
from infra.core.sizing.simulate.replica import ReplicaRun, run_closed, run_open
from infra.core.sizing.simulate.workload import Lengths, fixed_count

LOAD_CSV_PATH = CATALOG_DIR / "calibration" / "load_measurements.csv"
MULTI_TURN_ANCHOR = "DOKS-MT-r0.5"  # sets the multi-turn set's prefix-cache hit rate; not counted
# NIM sweeps above this many clients are dominated by queueing in front of NIM's engine (its
# batch cap and scheduling policy are not stated): reported, and used to choose the batch cap,
# but not to fit the engine's efficiency factors.
FIT_MAX_CLIENTS = 25


@dataclass(frozen=True)
class LoadAssumptions:
    """Figures the sources do not state, set by the calibration (written to engines.yaml)."""

    nim_max_batch: int = 256
    multi_turn_prefix_hit: float = 0.8
# Closed-loop runs send this many waves of the row's concurrency (GenAI-Perf measures a steady window).
CLOSED_LOOP_WAVES = 6
METRICS = ("ttft_ms_median", "ttft_ms_mean", "ttft_ms_p95", "tpot_ms_median", "tpot_ms_mean", "tpot_ms_p95",
           "itl_ms_mean", "itl_ms_p95", "e2e_ms_mean", "e2e_ms_p95")
# What the accuracy target is about: TTFT and TPOT at the median and the 95th percentile (the
# NIM sweeps state TTFT mean/p95 and the inter-token latency mean/p95 instead).
TARGET_METRICS = ("ttft_ms_median", "ttft_ms_p95", "tpot_ms_median", "tpot_ms_p95", "ttft_ms_mean", "itl_ms_mean",
                  "itl_ms_p95")

_GPUS = [(r"H200", "H200-SXM-141GB"), (r"H100 (80GB HBM3|SXM)", "H100-SXM-80GB")]
_MODELS = [(r"70B", "llama-3.3-70b"), (r"8B", "llama-3.1-8b")]


@dataclass(frozen=True)
class LoadRow:
    id: str
    source: str
    engine: str  # "trtllm" | "vllm"
    model: str
    gpu: str
    tp: int
    precision: str
    kv_dtype: str
    lengths: Lengths
    concurrency: int | None
    rate_per_s: float | None
    prompts: int | None
    prefix_hit_fraction: float
    measured: dict[str, float]
    anchor: bool = False  # used to set an unstated workload figure: not counted in the errors
    max_num_seqs: int | None = None  # the engine's batch cap when the source's differs from the default

    @property
    def fitted(self) -> bool:
        """Used to fit the engine's factors (see FIT_MAX_CLIENTS)."""
        return not self.anchor and (self.concurrency is None or self.concurrency <= FIT_MAX_CLIENTS)


@dataclass(frozen=True)
class NotSimulated:
    id: str
    engine: str
    model: str
    reason: str


@dataclass(frozen=True)
class LoadResult:
    row: LoadRow
    simulated: dict[str, float | None]
    run: ReplicaRun | None = field(default=None, compare=False, repr=False)

    def errors(self, metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
        """Simulated / measured - 1 for every metric both sides have."""
        out = {}
        for m in metrics:
            mv, sv = self.row.measured.get(m), self.simulated.get(m)
            if mv and sv is not None and math.isfinite(sv):
                out[m] = sv / mv - 1
        return out


def _num(text: str | None) -> float | None:
    try:
        v = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return v if v is None or math.isfinite(v) else None


def _match(table: list[tuple[str, str]], text: str) -> str | None:
    return next((key for pattern, key in table if re.search(pattern, text, flags=re.IGNORECASE)), None)


def _note(notes: str, name: str) -> float | None:
    m = re.search(rf"{name}=([0-9.]+)", notes)
    return float(m.group(1)) if m else None


def read_load_measurements(path: Path = LOAD_CSV_PATH, assumptions: LoadAssumptions = LoadAssumptions()
                           ) -> tuple[list[LoadRow], list[NotSimulated]]:
    rows: list[LoadRow] = []
    skipped: list[NotSimulated] = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            engine_text, notes = r["engine"], r["notes"]
            engine = "trtllm" if "NIM" in engine_text else "vllm" if "vLLM" in engine_text else None
            model, gpu = _match(_MODELS, r["model"]), _match(_GPUS, r["gpu"])

            def skip(reason: str) -> None:
                skipped.append(NotSimulated(r["id"], engine_text, r["model"], reason))

            if engine is None:
                skip("engine not modelled (only vLLM and TensorRT-LLM are)" if "TensorRT" not in engine_text else
                     "mean prompt/answer lengths not in the MLPerf log")
                continue
            if r["complete"] == "N":
                skip("incomplete: prompt length unit and precision not stated, one wave of N requests (no steady load)")
                continue
            if model is None or gpu is None:
                skip(f"GPU not in the catalog ({r['gpu']})" if model else "model not in the catalog")
                continue
            measured = {m: v for m in METRICS if (v := _num(r.get(m))) is not None}
            if (itl_p95 := _note(notes, "itl_p95_ms")) is not None:
                measured["itl_ms_p95"] = itl_p95
            precision = "fp8" if "fp8" in r["weights_dtype"].lower() else "bf16"
            kv = "fp8" if "fp8" in (r["kv_dtype"] or "").lower() or (not r["kv_dtype"] and precision == "fp8") else "auto"
            i, o = _num(r["input_tokens_mean"]), _num(r["output_tokens_mean"])
            if engine == "vllm":
                total_in, total_out, done = (_note(notes, k) for k in ("total_input_tokens", "total_output_tokens",
                                                                        "completed"))
                if i is None or total_out is None or not done:
                    skip("mean prompt/answer lengths not stated (ShareGPT mix)")
                    continue
                o = total_out / done
                if "multi-step" in notes or "num-scheduler-steps" in notes:
                    skip("multi-step scheduling (tokens streamed in chunks of 10 steps) is not modelled")
                    continue
                multi_turn = "prefix" in r["dataset"].lower() or "multi-turn" in r["dataset"].lower()
                lengths = Lengths(int(round(i)), int(round(o)), "lognormal", max_total_tokens=131072)
                rows.append(LoadRow(
                    r["id"], r["source"], engine, model, gpu, int(r["tp"]), precision, kv, lengths, None,
                    float(r["load_value"]), int(r["num_prompts"]),
                    assumptions.multi_turn_prefix_hit if multi_turn else 0.0, measured, anchor=r["id"] == MULTI_TURN_ANCHOR))
                continue
            if i is None or o is None or "closed loop" not in r["load_type"]:
                skip("load shape not modelled")
                continue
            rows.append(LoadRow(r["id"], r["source"], engine, model, gpu, int(r["tp"]), precision, kv,
                                Lengths(int(round(i)), int(round(o))), int(float(r["load_value"])), None, None, 0.0,
                                measured, max_num_seqs=assumptions.nim_max_batch))
    return rows, skipped


def simulate_row(row: LoadRow, engine: EngineParams, catalog: Catalog, seed: int = 0) -> LoadResult:
    arch, gpu = catalog.model(row.model), catalog.gpu(row.gpu)
    rm = ReplicaModel(arch, gpu, row.tp, row.precision, row.kv_dtype, engine,
                      gpu_memory_utilization=engine.default_gpu_memory_utilization, max_num_seqs=row.max_num_seqs)
    if not rm.fits:
        return LoadResult(row, {})
    if row.concurrency is not None:
        c = row.concurrency
        run = run_closed(rm, row.lengths, c, CLOSED_LOOP_WAVES * c, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        run = run_open(rm, fixed_count(rng, row.lengths, row.rate_per_s, row.prompts or 300),
                       prefix_hit_fraction=row.prefix_hit_fraction)
    s = run.to_dict()
    simulated: dict[str, float | None] = {}
    for metric, key in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("e2e", "e2e_ms")):
        simulated[f"{metric}_ms_mean"] = s[key]["mean"]
        simulated[f"{metric}_ms_median"] = s[key]["p50"]
        simulated[f"{metric}_ms_p95"] = s[key]["p95"]
    simulated["itl_ms_mean"] = s["itl_ms"]["mean"]
    simulated["itl_ms_p95"] = s["itl_ms"]["p95"]
    return LoadResult(row, simulated, run)


def simulate_rows(rows: list[LoadRow], engines: dict[str, EngineParams], catalog: Catalog) -> list[LoadResult]:
    return [simulate_row(r, engines[r.engine], catalog) for r in rows]
