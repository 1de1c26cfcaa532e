"""EKS Kubernetes versions and their support windows (eks_versions.yaml), read by pure lookups.

`support_on(version, day)` says where a version stands on a day; `default_version(day)` is the
newest version in standard support; `version_problem(...)` is the config rule: a version past
standard support is refused unless extended support is chosen explicitly, and never past
extended support. The day always comes from the caller (infra/core/clock.py in production).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from infra.core.errors import InputError

EKS_VERSIONS_FILE = Path(__file__).resolve().parent / "eks_versions.yaml"

Support = Literal["standard", "extended", "ended", "unrecorded"]
UpgradePolicy = Literal["STANDARD", "EXTENDED"]


@dataclass(frozen=True)
class EksVersion:
    version: str
    end_of_standard_support: date | None  # None: listed by EKS, dates not recorded here
    end_of_extended_support: date | None
    released: date | None = None

    @property
    def recorded(self) -> bool:
        return self.end_of_standard_support is not None and self.end_of_extended_support is not None

    def support_on(self, day: date) -> Support:
        if not self.recorded:
            return "unrecorded"
        assert self.end_of_standard_support is not None and self.end_of_extended_support is not None
        if day < self.end_of_standard_support:
            return "standard"
        return "extended" if day < self.end_of_extended_support else "ended"


@dataclass(frozen=True)
class EksCalendar:
    versions: Mapping[str, EksVersion]
    source: str
    date: str
    extended_support_months: int

    def get(self, version: str) -> EksVersion | None:
        return self.versions.get(minor(version))

    def support_on(self, version: str, day: date) -> Support | None:
        """None: EKS does not list the version at all."""
        row = self.get(version)
        return None if row is None else row.support_on(day)

    def in_standard_support(self, day: date) -> list[EksVersion]:
        rows = [v for v in self.versions.values() if v.support_on(day) == "standard"]
        return sorted(rows, key=lambda v: _key(v.version))

    def default_version(self, day: date) -> str:
        """The newest version in standard support on `day`."""
        rows = self.in_standard_support(day)
        if not rows:
            raise InputError(
                "infra/core/catalog/eks_versions.yaml", self.date,
                f"a calendar with a version in standard support on {day.isoformat()}: record the newer EKS versions",
            )
        return rows[-1].version


def minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _date(value: Any, where: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(where, value, "a date like 2026-12-02") from None


def parse_eks_calendar(doc: Mapping[str, Any], where: str = "eks_versions.yaml") -> EksCalendar:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("versions"), Mapping):
        raise InputError(where, type(doc).__name__, "a mapping with source, date and versions:")
    for key in ("source", "date", "extended_support_months"):
        if not doc.get(key):
            raise InputError(f"{where}: {key}", doc.get(key), "a value (every calendar names its source and date)")
    versions = {}
    for key, row in doc["versions"].items():
        name = str(key)
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: versions.{name}", row, "a mapping of dates")
        v = EksVersion(
            name,
            _date(row.get("end_of_standard_support"), f"{where}: versions.{name}.end_of_standard_support"),
            _date(row.get("end_of_extended_support"), f"{where}: versions.{name}.end_of_extended_support"),
            _date(row.get("released"), f"{where}: versions.{name}.released"),
        )
        if (v.end_of_standard_support is None) != (v.end_of_extended_support is None):
            raise InputError(f"{where}: versions.{name}", row, "both support end dates, or neither")
        versions[name] = v
    return EksCalendar(versions, str(doc["source"]), str(doc["date"]), int(doc["extended_support_months"]))


@functools.lru_cache(maxsize=2)
def load_eks_calendar(path: str | None = None) -> EksCalendar:
    p = Path(path) if path else EKS_VERSIONS_FILE
    return parse_eks_calendar(yaml.safe_load(p.read_text()), p.name)


def version_problem(version: str, upgrade_policy: UpgradePolicy, day: date,
                    calendar: EksCalendar | None = None, extended_price: str = "the extended price") -> str | None:
    """Why `version` with `upgrade_policy` cannot be deployed on `day`, or None.

    EKS user guide (kubernetes-versions, "cluster upgrade policy"): the support policy can only be
    set while a version is in standard support, a cluster past standard support runs (and is
    billed) in extended support, and one past extended support is upgraded automatically.
    """
    cal = calendar or load_eks_calendar()
    row = cal.get(version)
    newest = cal.in_standard_support(day)
    hint = (f"use {newest[-1].version} (the newest in standard support, until "
            f"{newest[-1].end_of_standard_support})" if newest else "record newer versions in eks_versions.yaml")
    if row is None:
        return f"EKS does not list Kubernetes {version} (known: {', '.join(cal.versions)}); {hint}"
    support = row.support_on(day)
    if support == "unrecorded":
        return (f"Kubernetes {version} has no support dates in infra/core/catalog/eks_versions.yaml (nor a "
                f"cluster-autoscaler tag checked against it); record them first, or {hint}")
    if support == "ended":
        return f"EKS extended support for {version} ended on {row.end_of_extended_support}; {hint}"
    if support == "extended" and upgrade_policy != "EXTENDED":
        return (f"EKS standard support for {version} ended on {row.end_of_standard_support}; {hint}, or set "
                f"cluster.upgrade_policy: EXTENDED to run it in extended support ({extended_price}) until "
                f"{row.end_of_extended_support}")
    return None


def extended_support_on(version: str, day: date, calendar: EksCalendar | None = None) -> bool:
    """Whether a cluster on `version` is billed at the extended-support price on `day`."""
    return (calendar or load_eks_calendar()).support_on(version, day) in ("extended", "ended")
