"""Versioned hardware and model facts, read by pure lookups.

The YAML files beside this module are the one place each fact lives. `load_catalog()` reads
them once; tests build small synthetic `Catalog`s directly. Prices are the price book's
(`infra.core.catalog.prices`, the one reader of prices.yaml); model architectures and the
Hugging Face config.json reader are `infra.core.catalog.architectures`.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Mapping

import yaml

from infra.core.catalog.architectures import ModelArch, model_from_hf_config
from infra.core.errors import InputError
from infra.core.files import yaml_loader

CATALOG_DIR = Path(__file__).resolve().parent
# Correction factors measured by `bench` (`calibrate --from-bench`): part of what a plan depends on.
MEASURED_CALIBRATION_FILE = CATALOG_DIR / "calibration" / "measured.yaml"

# One definition of a month for every $/month figure (365 days * 24 h / 12).
HOURS_PER_MONTH = Decimal("730")


@dataclass(frozen=True)
class Gpu:
    key: str
    hbm_gb: float
    usable_hbm_mib: int
    hbm_bandwidth_gb_per_s: float
    dense_bf16_tflops: float
    dense_fp8_tflops: float | None
    interconnect: str
    interconnect_gb_per_s: float

    @property
    def usable_hbm_bytes(self) -> int:
        return self.usable_hbm_mib * 2**20

    @property
    def has_fp8(self) -> bool:
        return self.dense_fp8_tflops is not None


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpu_count: int
    vcpu: int
    ram_gib: int
    nvme_disks: int
    nvme_gb_per_disk: int
    network_gbps: float  # baseline bandwidth (single-GPU g sizes burst above it)
    efa_interfaces: int
    family: str


@dataclass(frozen=True)
class Catalog:
    gpus: Mapping[str, Gpu]
    instances: Mapping[str, InstanceType]
    models: Mapping[str, ModelArch]

    def gpu(self, key: str, field_name: str = "gpu") -> Gpu:
        try:
            return self.gpus[key]
        except KeyError:
            raise InputError(field_name, key, f"known GPUs: {', '.join(sorted(self.gpus))}") from None

    def instance(self, name: str, field_name: str = "instance_type") -> InstanceType:
        try:
            return self.instances[name]
        except KeyError:
            raise InputError(
                field_name, name, f"known instance types: {', '.join(sorted(self.instances))}"
            ) from None

    def model(self, ref: str, field_name: str = "model") -> ModelArch:
        """A catalog key, or a path to a Hugging Face config.json."""
        if ref in self.models:
            return self.models[ref]
        if ref.endswith(".json") or "/" in ref or Path(ref).exists():
            return model_from_hf_config(ref, field_name)
        raise InputError(
            field_name,
            ref,
            f"known models: {', '.join(sorted(self.models))}, or a path to a Hugging Face config.json",
        )


def _read_yaml(name: str, directory: Path) -> dict:
    with open(directory / name) as fh:
        return yaml.load(fh, Loader=yaml_loader()) or {}


def _build(cls, key_field: str, key: str, row: dict):
    names = cls.__dataclass_fields__
    return cls(**{key_field: key}, **{k: v for k, v in row.items() if k in names})


def load_catalog(directory: Path | str | None = None) -> Catalog:
    if directory is None:
        return _default_catalog()
    return _load(Path(directory))


@functools.lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    return _load(CATALOG_DIR)


def _load(directory: Path) -> Catalog:
    gpus = {k: _build(Gpu, "key", k, v) for k, v in _read_yaml("gpus.yaml", directory).items()}
    instances = {
        k: _build(InstanceType, "name", k, v)
        for k, v in _read_yaml("instances.yaml", directory).items()
    }
    models = {k: _build(ModelArch, "key", k, v) for k, v in _read_yaml("models.yaml", directory).items()}
    for name, inst in instances.items():
        if inst.gpu not in gpus:
            raise ValueError(f"catalog: instance {name} names unknown GPU {inst.gpu}")
    return Catalog(gpus=gpus, instances=instances, models=models)


def _default_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    if MEASURED_CALIBRATION_FILE.exists():
        h.update(b"measured\0" + MEASURED_CALIBRATION_FILE.read_bytes())
    return h.hexdigest()[:16]


def catalog_digest(catalog: Catalog | None = None) -> str:
    """A digest of the packaged catalog files (hardware, models, engine factors, prices); a
    synthetic catalog gets one by identity (it is never memoised across processes)."""
    return _default_digest() if catalog is None else f"object-{id(catalog):x}"
