"""Correction factors measured on a deployed fleet (`bench`, then `calibrate --from-bench`). Pure.

One benchmark run cannot refit the whole step-time model, so it corrects one configuration:
(model, GPU, tensor parallel, precision, engine and engine version). Two factors, each a
multiplier on the time the model predicts:

    prefill_factor  on the prefill terms (compute_eff and attn_eff are divided by it): TTFT
    decode_factor   on the decode terms (bw_eff, kv_bw_eff divided; the per-step overhead and
                    the all-reduce latency multiplied): TPOT

Efficiencies stay within (0, 1] (no correction beats the roofline). The factors live in
infra/core/catalog/calibration/measured.yaml with their provenance (date, endpoint host, plan
digest, request count); `size` and `simulate` apply the row for their configuration and say so in
the plan notes. A row for another engine version does not apply (an upgrade is measured again).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from infra.core import catalog as catalog_module
from infra.core.sizing.perf import EngineParams

FORMAT_VERSION = 1
EFFICIENCY_FLOOR = 0.01
FILE_HEADER = """\
# Correction factors measured on deployed fleets: written by `python -m infra calibrate --from-bench
# RESULT.json` (infra/core/sizing/calibrate.py) from `python -m infra bench --stack` results; read by
# infra/core/sizing/measured.py. One row per (model, GPU, TP, precision, engine, engine version); a new
# measurement of a configuration replaces its row. Do not edit the factors by hand.
"""


@dataclass(frozen=True)
class ConfigKey:
    model: str
    gpu: str
    tensor_parallel: int
    precision: str
    engine: str
    engine_version: str

    def describe(self) -> str:
        return (f"{self.model} {self.precision} on {self.gpu} TP={self.tensor_parallel}, "
                f"{self.engine} {self.engine_version}")


@dataclass(frozen=True)
class Correction:
    key: ConfigKey
    prefill_factor: float
    decode_factor: float
    provenance: Mapping[str, Any] = field(default_factory=dict)  # date, endpoint_host, plan_digest, requests
    measured: Mapping[str, Any] = field(default_factory=dict)  # the bench figures fitted to
    simulated_before: Mapping[str, Any] = field(default_factory=dict)  # the simulator's, uncorrected
    simulated_after: Mapping[str, Any] = field(default_factory=dict)  # with these factors

    def note(self) -> str:
        p = self.provenance
        return (f"measured correction applied for {self.key.describe()}: prefill x{self.prefill_factor:.3f}, "
                f"decode x{self.decode_factor:.3f} (bench of {p.get('date', '?')} at {p.get('endpoint_host', '?')}, "
                f"{p.get('requests', '?')} requests; infra/core/catalog/calibration/measured.yaml)")

    def to_row(self) -> dict[str, Any]:
        k = self.key
        return {"model": k.model, "gpu": k.gpu, "tensor_parallel": k.tensor_parallel, "precision": k.precision,
                "engine": k.engine, "engine_version": k.engine_version,
                "prefill_factor": round(self.prefill_factor, 4), "decode_factor": round(self.decode_factor, 4),
                "provenance": dict(self.provenance), "measured": dict(self.measured),
                "simulated_before": dict(self.simulated_before), "simulated_after": dict(self.simulated_after)}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Correction":
        key = ConfigKey(str(row["model"]), str(row["gpu"]), int(row["tensor_parallel"]), str(row["precision"]),
                        str(row["engine"]), str(row["engine_version"]))
        return cls(key, float(row["prefill_factor"]), float(row["decode_factor"]), row.get("provenance") or {},
                   row.get("measured") or {}, row.get("simulated_before") or {}, row.get("simulated_after") or {})


def engine_version(engine: str) -> str:
    """The version of `engine` the stack deploys: vLLM's pinned image tag (charts.yaml), else
    "unversioned" (no image of that engine is pinned here)."""
    from infra.core.catalog.charts import load_chart_catalog

    images = load_chart_catalog().images
    ref = images.get(engine)
    return ref.tag.removeprefix("v") if ref is not None and ref.tag else "unversioned"


def measured_file() -> Path:
    return catalog_module.MEASURED_CALIBRATION_FILE


_cache: dict[tuple, tuple[Correction, ...]] = {}


def load_corrections(path: Path | None = None) -> tuple[Correction, ...]:
    """Every row of measured.yaml (none when the file is absent); cached by the file's mtime."""
    path = Path(path or measured_file())
    if not path.exists():
        return ()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _cache:
        doc = yaml.safe_load(path.read_text()) or {}
        _cache[key] = tuple(Correction.from_row(r) for r in doc.get("corrections") or ())
    return _cache[key]


def write_corrections(rows: tuple[Correction, ...] | list[Correction], path: Path | None = None) -> Path:
    from infra.core.files import atomic_write

    path = Path(path or measured_file())
    ordered = sorted(rows, key=lambda c: tuple(str(v) for v in vars(c.key).values()))
    doc = {"version": FORMAT_VERSION, "corrections": [c.to_row() for c in ordered]}
    atomic_write(path, FILE_HEADER + yaml.safe_dump(doc, sort_keys=False))
    return path


def correction_for(model: str, gpu: str, tp: int, precision: str, engine: str) -> Correction | None:
    """The measured row for this configuration at the engine version deployed now, if any."""
    rows = load_corrections()
    if not rows:
        return None
    key = ConfigKey(model, gpu, tp, precision, engine, engine_version(engine))
    return next((c for c in rows if c.key == key), None)


def measured_notes(model: str, gpu: str, tp: int, precision: str, engine: str) -> list[str]:
    """Plan notes: the correction applied to this configuration, or the measured rows of the same
    model, GPU and precision at another TP (a plan can move to an unmeasured TP because the
    measured one turned out slower than modelled)."""
    applied = correction_for(model, gpu, tp, precision, engine)
    if applied is not None:
        return [applied.note()]
    rows = load_corrections()
    version = engine_version(engine) if rows else ""
    return [f"{c.key.describe()} was measured (prefill x{c.prefill_factor:.3f}, decode x{c.decode_factor:.3f}); "
            f"this plan's TP={tp} is not: its figures are the published fit's"
            for c in rows if (c.key.model, c.key.gpu, c.key.precision, c.key.engine, c.key.engine_version)
            == (model, gpu, precision, engine, version) and c.key.tensor_parallel != tp]


def corrected(engine: EngineParams, prefill_factor: float, decode_factor: float) -> EngineParams:
    """`engine` with prefill and decode times multiplied by the factors (efficiencies in (0, 1])."""
    def eff(value: float, factor: float) -> float:
        return min(1.0, max(EFFICIENCY_FLOOR, value / factor))

    return replace(engine, compute_eff=eff(engine.compute_eff, prefill_factor), attn_eff=eff(engine.attn_eff, prefill_factor),
                   bw_eff=eff(engine.bw_eff, decode_factor), kv_bw_eff=eff(engine.kv_bw_eff, decode_factor),
                   step_overhead_ms=engine.step_overhead_ms * decode_factor,
                   allreduce_latency_us=engine.allreduce_latency_us * decode_factor)


def engine_for(engine: EngineParams, model: str, gpu: str, tp: int, precision: str) -> tuple[EngineParams, Correction | None]:
    """The engine factors for this configuration: corrected by its measured row when there is one."""
    c = correction_for(model, gpu, tp, precision, engine.name)
    if c is None:
        return engine, None
    return corrected(engine, c.prefill_factor, c.decode_factor), c

