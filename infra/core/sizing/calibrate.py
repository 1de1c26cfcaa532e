"""Fit the engine efficiency factors to published benchmarks, reproducibly.

    python -m infra calibrate [--csv FILE] [--write]

Reads `infra/core/catalog/calibration/public_measurements.csv` (a copy of the project's shared
benchmark table), turns every row with fixed prompt/answer lengths into a prediction problem
(max-load throughput, a static batch, or a batch-1 first-token latency), and fits each
engine's factors by deterministic coordinate descent on log error, with a penalty on
optimistic predictions (an optimistic sizing model under-provisions). `--write` rewrites
`infra/core/catalog/engines.yaml` and `docs/calibration-report.md`.
"""
from __future__ import annotations

import csv
import math
import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from infra.core.catalog import CATALOG_DIR, Catalog, load_catalog
from infra.core.files import atomic_write
from infra.core.paths import DOCS_DIR
from infra.core.sizing import load as load_model
from infra.core.sizing.perf import ENGINES_FILE, EngineParams, ReplicaModel, load_engines

CSV_PATH = CATALOG_DIR / "calibration" / "public_measurements.csv"
REPORT_PATH = DOCS_DIR / "calibration-report.md"

# Factors fitted per engine, with the range each may take (physical bounds).
FIT_BOUNDS: dict[str, tuple[float, float]] = {
    "bw_eff": (0.40, 0.95),
    "kv_bw_eff": (0.05, 0.95),
    "compute_eff": (0.25, 0.90),
    "attn_eff": (0.10, 0.90),
    "allreduce_latency_us": (2.0, 60.0),
    "link_eff": (0.30, 1.00),
    "step_overhead_ms": (0.0, 8.0),
    "overlap_k": (1.0, 8.0),
}
# Which factors each engine's rows can identify. vLLM's public rows are all decode-dominated
# (batch 8, 32-token prompts): compute and attention efficiency are not observable there, so
# vLLM takes TensorRT-LLM's fitted values scaled by VLLM_COMPUTE_PRIOR (an assumption: both run
# the same class of cuBLAS/CUTLASS FP8 GEMMs; vLLM's lower kernel fusion costs some of it).
_ALL = ("bw_eff", "kv_bw_eff", "compute_eff", "attn_eff", "allreduce_latency_us", "link_eff", "step_overhead_ms", "overlap_k")
FITTED = {
    "trtllm": _ALL,
    "trtllm-2023": _ALL,
    "vllm": ("bw_eff", "allreduce_latency_us", "step_overhead_ms"),
}
VLLM_COMPUTE_PRIOR = 0.9
OPTIMISM_LIMIT = 0.20  # predictions more than 20 % above a measurement are penalised hard

_MODEL_KEYS = [
    (r"405B", "llama-3.1-405b"),
    (r"llama\s*\(?2\)?[- ]*70b|llama-2-70b", "llama-2-70b"),
    (r"70B", "llama-3.3-70b"),  # Llama 3, 3.1 and 3.3 70B share one architecture
    (r"8B", "llama-3.1-8b"),
]


@dataclass(frozen=True)
class Measurement:
    row: int  # 1-based data row in the CSV
    source: str
    engine: str  # "vllm" | "trtllm"
    model: str
    gpu: str
    tp: int
    precision: str
    kv_dtype: str
    input_tokens: int
    output_tokens: int
    kind: str  # "max_load" | "static_batch" | "ttft_batch1"
    batch: int | None
    output_tokens_per_s: float | None
    ttft_ms: float | None
    tpot_ms: float | None


@dataclass(frozen=True)
class Excluded:
    row: int
    engine: str
    model: str
    reason: str


def _engine(text: str) -> str | None:
    t = text.lower()
    if "tensorrt" in t:
        # 2023 releases (v0.5, v0.6: static batching, older kernels) are a different engine.
        return "trtllm-2023" if re.search(r"v0\.[0-6]\b", t) else "trtllm"
    if "vllm" in t:
        return "vllm"
    return None


def _model(text: str) -> str | None:
    for pattern, key in _MODEL_KEYS:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return key
    return None


def _dtype(text: str, default: str) -> str:
    t = text.lower()
    if "fp8" in t:
        return "fp8"
    if "bf16" in t or "fp16" in t:
        return "bf16"
    return default


def _num(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_measurements(path: Path = CSV_PATH) -> tuple[list[Measurement], list[Excluded]]:
    rows, excluded = [], []
    with open(path, newline="") as fh:
        for n, r in enumerate(csv.DictReader(fh), start=1):
            engine, model = _engine(r["engine"]), _model(r["model"])
            precision = _dtype(r["weight_dtype"], "bf16")
            # "not stated (default)" on NVIDIA's FP8 checkpoints: ModelOpt FP8 exports quantise
            # the KV cache too, so the default KV dtype follows the weights.
            kv = _dtype(r["kv_dtype"], precision)
            kv = "fp8" if kv == "fp8" else "auto"
            i, o = _num(r["input_len"]), _num(r["output_len"])
            load_text = r["concurrency_or_rate"].lower()
            if engine is None or model is None:
                excluded.append(Excluded(n, r["engine"], r["model"], "engine or model not in the catalog"))
                continue
            if i is None or o is None:
                excluded.append(Excluded(n, engine, r["model"], "no fixed prompt/answer lengths (ShareGPT mix)"))
                continue
            batch_match = re.search(r"batch\s+(\d+)", load_text)
            if "max load" in load_text:
                kind, batch = "max_load", None
            elif batch_match and int(o) == 1:
                kind, batch = "ttft_batch1", int(batch_match.group(1))
            elif batch_match:
                kind, batch = "static_batch", int(batch_match.group(1))
            else:
                excluded.append(Excluded(n, engine, r["model"], f"load shape {r['concurrency_or_rate']!r} not modelled"))
                continue
            rows.append(
                Measurement(
                    row=n, source=r["source"], engine=engine, model=model, gpu=r["gpu"], tp=int(r["tp"]),
                    precision=precision, kv_dtype=kv, input_tokens=int(i), output_tokens=int(o), kind=kind,
                    batch=batch, output_tokens_per_s=_num(r["output_tok_per_s"]), ttft_ms=_num(r["ttft_ms"]),
                    tpot_ms=_num(r["tpot_ms"]),
                )
            )
    return rows, excluded


@dataclass(frozen=True)
class RowResult:
    m: Measurement
    metric: str  # "output_tokens_per_s" | "ttft_ms"
    measured: float
    predicted: float

    @property
    def error(self) -> float:
        """Signed relative error: + means the model is optimistic."""
        if self.metric == "output_tokens_per_s":
            return self.predicted / self.measured - 1
        return self.measured / self.predicted - 1  # a latency predicted too low is optimistic


def predict_row(m: Measurement, engine: EngineParams, catalog: Catalog) -> RowResult | None:
    arch, gpu = catalog.model(m.model), catalog.gpu(m.gpu)
    batch_seqs = max(engine.default_max_num_seqs, m.batch or 0)
    batch_tokens = max(engine.default_max_num_batched_tokens, (m.batch or 1) * m.input_tokens)
    rm = ReplicaModel(
        arch, gpu, m.tp, m.precision, m.kv_dtype, engine,
        gpu_memory_utilization=engine.default_gpu_memory_utilization,
        max_num_seqs=batch_seqs, max_num_batched_tokens=batch_tokens,
    )
    if not rm.fits:
        return None
    if m.kind == "ttft_batch1" and m.ttft_ms:
        return RowResult(m, "ttft_ms", m.ttft_ms, load_model.prefill_latency_s(rm, m.input_tokens) * 1e3)
    if m.output_tokens_per_s is None:
        return None
    if m.kind == "max_load":
        r = load_model.steady_state(rm, m.input_tokens, m.output_tokens, max_load=True)
        return RowResult(m, "output_tokens_per_s", m.output_tokens_per_s, r.output_tokens_per_s)
    _, tps = load_model.static_batch(rm, m.batch or 1, m.input_tokens, m.output_tokens)
    return RowResult(m, "output_tokens_per_s", m.output_tokens_per_s, tps)


def evaluate(rows: list[Measurement], engines: dict[str, EngineParams], catalog: Catalog) -> list[RowResult]:
    out = []
    for m in rows:
        r = predict_row(m, engines[m.engine], catalog)
        if r is not None:
            out.append(r)
    return out


def _loss(results: list[RowResult]) -> float:
    if not results:
        return 0.0
    errs = [math.log1p(r.error) for r in results]
    penalty = sum(max(0.0, e - math.log1p(OPTIMISM_LIMIT)) ** 2 for e in errs)
    return statistics.fmean(abs(e) for e in errs) + 20.0 * penalty


def fit_engine(name: str, rows: list[Measurement], start: EngineParams, catalog: Catalog, rounds: int = 6) -> EngineParams:
    """Coordinate descent over the fitted factors, shrinking the step each round."""
    mine = [m for m in rows if m.engine == name]
    best = start
    best_loss = _loss(evaluate(mine, {name: best}, catalog))
    for rnd in range(rounds):
        for field in FITTED[name]:
            lo, hi = FIT_BOUNDS[field]
            span = (hi - lo) / (3 ** (rnd + 1))
            current = getattr(best, field)
            for k in range(-4, 5):
                value = min(hi, max(lo, current + k * span / 4))
                cand = replace(best, **{field: round(value, 4)})
                loss = _loss(evaluate(mine, {name: cand}, catalog))
                if loss < best_loss - 1e-9:
                    best, best_loss = cand, loss
    return best


def _start(e: EngineParams) -> EngineParams:
    """Every fitted factor at the middle of its range: the fit never depends on the last fit."""
    return replace(e, **{k: round((lo + hi) / 2, 4) for k, (lo, hi) in FIT_BOUNDS.items()})


def fit(rows: list[Measurement], catalog: Catalog | None = None) -> dict[str, EngineParams]:
    catalog = catalog or load_catalog()
    engines = {name: _start(e) for name, e in load_engines().items()}
    engines["trtllm"] = fit_engine("trtllm", rows, engines["trtllm"], catalog)
    engines["trtllm-2023"] = fit_engine("trtllm-2023", rows, engines["trtllm-2023"], catalog)
    t = engines["trtllm"]
    engines["vllm"] = replace(
        engines["vllm"],
        compute_eff=round(t.compute_eff * VLLM_COMPUTE_PRIOR, 4),
        kv_bw_eff=t.kv_bw_eff,
        attn_eff=round(t.attn_eff * VLLM_COMPUTE_PRIOR, 4),
        link_eff=t.link_eff,
        overlap_k=t.overlap_k,
    )
    engines["vllm"] = fit_engine("vllm", rows, engines["vllm"], catalog)
    return engines


def summarise(results: list[RowResult]) -> dict[str, float]:
    tps = [r for r in results if r.metric == "output_tokens_per_s"]
    ttft = [r for r in results if r.metric == "ttft_ms"]
    return {
        "rows_throughput": len(tps),
        "median_abs_error_throughput": statistics.median(abs(r.error) for r in tps) if tps else 0.0,
        "max_optimism_throughput": max((r.error for r in tps), default=0.0),
        "rows_ttft": len(ttft),
        "median_abs_error_ttft": statistics.median(abs(r.error) for r in ttft) if ttft else 0.0,
        "max_optimism_ttft": max((r.error for r in ttft), default=0.0),
    }


_ENGINE_HEADER = """\
# Engine efficiency factors for the step-time model (infra/core/sizing/perf.py).
# Written by `python -m infra calibrate --write` from infra/core/catalog/calibration/public_measurements.csv;
# do not edit the fitted values by hand. Non-fitted fields are engine defaults:
#   default_max_num_seqs / default_max_num_batched_tokens: vLLM's defaults on >=70 GiB GPUs (1024 / 8192);
#   TensorRT-LLM's trtllm-bench runs with a large batch (2048) and kv_cache_free_gpu_mem_fraction ~0.95.
#   reserve_full_context: TensorRT-LLM's GUARANTEED_NO_EVICT scheduler reserves KV for the whole answer.
#   request_overhead_ms: HTTP, tokenisation and detokenisation outside engine steps (assumed, not fitted).
"""


def write_engines(engines: dict[str, EngineParams], path: Path = ENGINES_FILE) -> None:
    doc = {"engines": {}}
    for name, e in sorted(engines.items()):
        row = {k: getattr(e, k) for k in EngineParams.__dataclass_fields__ if k != "name"}
        row["fitted"] = list(FITTED[name])
        doc["engines"][name] = row
    atomic_write(path, _ENGINE_HEADER + yaml.safe_dump(doc, sort_keys=False))


def render_report(results: list[RowResult], excluded: list[Excluded], engines: dict[str, EngineParams]) -> str:
    s = summarise(results)
    lines = [
        "# Calibration report",
        "",
        "Generated by `python -m infra calibrate --write` from",
        "`infra/core/catalog/calibration/public_measurements.csv`. Error = predicted / measured - 1 for",
        "throughput, measured / predicted - 1 for latency: positive means the model is optimistic.",
        "",
        f"- Throughput rows: {s['rows_throughput']}, median |error| {s['median_abs_error_throughput']:.1%}, "
        f"most optimistic {s['max_optimism_throughput']:+.1%}",
        f"- First-token latency rows: {s['rows_ttft']}, median |error| {s['median_abs_error_ttft']:.1%}, "
        f"most optimistic {s['max_optimism_ttft']:+.1%}",
        "",
        "## Fitted factors",
        "",
        "| engine | bw_eff | kv_bw_eff | compute_eff | attn_eff | allreduce_latency_us | link_eff | step_overhead_ms | overlap_k | fitted |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in sorted(engines.items()):
        lines.append(
            f"| {name} | {e.bw_eff} | {e.kv_bw_eff} | {e.compute_eff} | {e.attn_eff} | {e.allreduce_latency_us} | {e.link_eff} "
            f"| {e.step_overhead_ms} | {e.overlap_k} | {', '.join(FITTED[name])} |"
        )
    lines += [
        "",
        "## Per row",
        "",
        "| row | engine | model | GPU x TP | weights/KV | in/out | load | metric | measured | predicted | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.m
        load = "max load" if m.kind == "max_load" else f"batch {m.batch}"
        lines.append(
            f"| {m.row} | {m.engine} | {m.model} | {m.gpu} x{m.tp} | {m.precision}/{m.kv_dtype} "
            f"| {m.input_tokens}/{m.output_tokens} | {load} | {r.metric} | {r.measured:,.1f} "
            f"| {r.predicted:,.1f} | {r.error:+.1%} |"
        )
    lines += ["", "## Rows not used", "", "| row | engine | model | reason |", "|---|---|---|---|"]
    for x in excluded:
        lines.append(f"| {x.row} | {x.engine} | {x.model} | {x.reason} |")
    return "\n".join(lines) + "\n"


def report_for(engines: dict[str, EngineParams], catalog: Catalog | None = None) -> str:
    """docs/calibration-report.md for these engine factors (the one writer of that file's text)."""
    rows, excluded = read_measurements()
    return render_report(evaluate(rows, engines, catalog or load_catalog()), excluded, engines)


def write_report(text: str, path: Path = REPORT_PATH) -> None:
    atomic_write(path, text)
