"""Pinned Helm charts and images (charts.yaml), read by pure lookups.

Components ask `chart("keda")` or `image("vllm")`; nobody types a version twice. Pure: no
pulumi import, so the offline tools and tests can read it without a cloud SDK.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from infra.core.errors import InputError

CHARTS_FILE = Path(__file__).resolve().parent / "charts.yaml"


@dataclass(frozen=True)
class ChartRef:
    key: str
    repository: str  # https index URL, or the full oci:// reference of the chart
    chart: str
    version: str
    source: str
    date: str

    @property
    def is_oci(self) -> bool:
        return self.repository.startswith("oci://")

    @property
    def release_chart(self) -> str:
        """What `helm install` (and helm.v3.Release's `chart`) takes: an OCI reference is the
        chart itself; an https repository is named separately (`repository_opts`)."""
        return self.repository if self.is_oci else self.chart

    @property
    def repository_url(self) -> str | None:
        return None if self.is_oci else self.repository


@dataclass(frozen=True)
class ImageRef:
    key: str
    repository: str
    tag: str | None
    source: str
    date: str
    tags_by_kubernetes_minor: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        if self.tag is None:
            raise InputError(f"image {self.key}", self.repository, "a tag (this image is pinned per Kubernetes minor)")
        return f"{self.repository}:{self.tag}"

    def tag_for_kubernetes(self, version: str) -> str:
        """The tag pinned for a Kubernetes minor ("1.33" or "1.33.2")."""
        minor = ".".join(str(version).split(".")[:2])
        try:
            return self.tags_by_kubernetes_minor[minor]
        except KeyError:
            raise InputError(
                f"image {self.key} for Kubernetes", version,
                f"a minor with a pinned tag in infra/core/catalog/charts.yaml: {', '.join(sorted(self.tags_by_kubernetes_minor))}",
            ) from None


@dataclass(frozen=True)
class ChartCatalog:
    charts: Mapping[str, ChartRef]
    images: Mapping[str, ImageRef]

    def chart(self, key: str) -> ChartRef:
        try:
            return self.charts[key]
        except KeyError:
            raise InputError("chart", key, f"a chart of infra/core/catalog/charts.yaml: {', '.join(sorted(self.charts))}") from None

    def image(self, key: str) -> ImageRef:
        try:
            return self.images[key]
        except KeyError:
            raise InputError("image", key, f"an image of infra/core/catalog/charts.yaml: {', '.join(sorted(self.images))}") from None


_REQUIRED_CHART_KEYS = ("repository", "chart", "version", "source", "date")


def parse_chart_catalog(doc: Mapping[str, Any], where: str = "charts.yaml") -> ChartCatalog:
    """Validate the document: every row names its repository, version, source and date."""
    if not isinstance(doc, Mapping):
        raise InputError(where, type(doc).__name__, "a mapping with charts: and images:")
    charts: dict[str, ChartRef] = {}
    for key, row in (doc.get("charts") or {}).items():
        missing = [k for k in _REQUIRED_CHART_KEYS if not isinstance(row, Mapping) or not row.get(k)]
        if missing:
            raise InputError(f"{where}: charts.{key}", row, f"the keys {', '.join(_REQUIRED_CHART_KEYS)} (missing {', '.join(missing)})")
        repo = str(row["repository"])
        if not repo.startswith(("https://", "oci://")):
            raise InputError(f"{where}: charts.{key}.repository", repo, "an https:// index or an oci:// reference")
        charts[key] = ChartRef(key, repo, str(row["chart"]), str(row["version"]), str(row["source"]), str(row["date"]))
    images: dict[str, ImageRef] = {}
    for key, row in (doc.get("images") or {}).items():
        if not isinstance(row, Mapping) or not row.get("repository") or not row.get("source") or not row.get("date"):
            raise InputError(f"{where}: images.{key}", row, "repository, source and date")
        tag = row.get("tag")
        by_minor = {str(k): str(v) for k, v in (row.get("tags_by_kubernetes_minor") or {}).items()}
        if (tag is None) == (not by_minor):
            raise InputError(f"{where}: images.{key}", row, "exactly one of tag or tags_by_kubernetes_minor")
        if tag is not None and (str(tag) in ("", "latest")):
            raise InputError(f"{where}: images.{key}.tag", tag, "a pinned tag, not 'latest'")
        images[key] = ImageRef(key, str(row["repository"]), None if tag is None else str(tag),
                               str(row["source"]), str(row["date"]), by_minor)
    return ChartCatalog(charts, images)


@functools.lru_cache(maxsize=4)
def load_chart_catalog(path: str | None = None) -> ChartCatalog:
    p = Path(path) if path else CHARTS_FILE
    return parse_chart_catalog(yaml.safe_load(p.read_text()), p.name)


def chart(key: str) -> ChartRef:
    return load_chart_catalog().chart(key)


def image(key: str) -> ImageRef:
    return load_chart_catalog().image(key)
