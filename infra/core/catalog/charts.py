"""Pinned Helm charts and images (charts.yaml), read by pure lookups.

Components ask `chart("keda")` or `image("vllm")`; nobody types a version twice. Pure: no
pulumi import, so the offline tools and tests can read it without a cloud SDK.
"""
from __future__ import annotations

import functools
import re
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
    repository: str  # upstream, host included (docker.io/vllm/vllm-openai)
    tag: str | None
    source: str
    date: str
    tags_by_kubernetes_minor: Mapping[str, str] = field(default_factory=dict)
    tag_from_chart: str | None = None  # the chart whose default (appVersion) tag this is
    digest: str | None = None  # sha256:<64 hex>, where upstream publishes one and it was read
    unpinned: str | None = None  # why there is no digest yet
    values_path: str | None = None  # where a chart takes its registry/repository (a.b.image)
    routed: bool = True  # False: a chart still pulls it from upstream (why_not_routed)
    why_not_routed: str | None = None

    @property
    def host(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def path(self) -> str:
        """The repository below its host (vllm/vllm-openai)."""
        return self.repository.split("/", 1)[1]

    @property
    def ref(self) -> str:
        if self.tag is None:
            raise InputError(f"image {self.key}", self.repository,
                             "a tag (this image is pinned per Kubernetes minor, or takes its chart's tag)")
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
class Upstream:
    """How the stack's ECR registry serves one upstream host."""

    host: str
    ecr_prefix: str
    upstream_url: str | None = None  # None: not a pull-through upstream (mirrored)
    credentials: bool = False  # ECR requires a Secrets Manager secret for this upstream

    @property
    def mirrored(self) -> bool:
        return self.upstream_url is None


@dataclass(frozen=True)
class ChartCatalog:
    charts: Mapping[str, ChartRef]
    images: Mapping[str, ImageRef]
    registries: Mapping[str, Upstream] = field(default_factory=dict)
    registries_source: str = ""

    def upstream(self, host: str, what: str = "image") -> Upstream:
        try:
            return self.registries[host]
        except KeyError:
            raise InputError(what, host, f"a registry ECR can serve (infra/core/catalog/charts.yaml registries): "
                                         f"{', '.join(sorted(self.registries))}") from None

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
        from_chart = row.get("tag_from_chart")
        if sum(x is not None and x != {} for x in (tag, by_minor or None, from_chart)) != 1:
            raise InputError(f"{where}: images.{key}", row, "exactly one of tag, tags_by_kubernetes_minor or tag_from_chart")
        if tag is not None and (str(tag) in ("", "latest")):
            raise InputError(f"{where}: images.{key}.tag", tag, "a pinned tag, not 'latest'")
        if from_chart is not None and str(from_chart) not in charts:
            raise InputError(f"{where}: images.{key}.tag_from_chart", from_chart, f"a chart of this file: {', '.join(charts)}")
        digest, unpinned = row.get("digest"), row.get("unpinned")
        if digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", str(digest)):
            raise InputError(f"{where}: images.{key}.digest", digest, "sha256:<64 lowercase hex>")
        if (digest is None) == (not unpinned):
            raise InputError(f"{where}: images.{key}", row, "a digest, or `unpinned` saying why there is none")
        routed = bool(row.get("routed", True))
        if not routed and not row.get("why_not_routed"):
            raise InputError(f"{where}: images.{key}", row, "why_not_routed for an image not routed through ECR")
        images[key] = ImageRef(key, str(row["repository"]), None if tag is None else str(tag),
                               str(row["source"]), str(row["date"]), by_minor,
                               None if from_chart is None else str(from_chart), digest, unpinned,
                               row.get("values_path"), routed, row.get("why_not_routed"))
    reg = doc.get("registries") or {}
    registries = {}
    for host, r in (reg.get("hosts") or {}).items():
        if not isinstance(r, Mapping) or not r.get("ecr_prefix") or bool(r.get("mirror")) == bool(r.get("upstream_url")):
            raise InputError(f"{where}: registries.hosts.{host}", r, "ecr_prefix and exactly one of upstream_url or mirror")
        registries[str(host)] = Upstream(str(host), str(r["ecr_prefix"]), r.get("upstream_url"), bool(r.get("credentials")))
    return ChartCatalog(charts, images, registries, str(reg.get("source", "")))


@functools.lru_cache(maxsize=4)
def load_chart_catalog(path: str | None = None) -> ChartCatalog:
    p = Path(path) if path else CHARTS_FILE
    return parse_chart_catalog(yaml.safe_load(p.read_text()), p.name)


def chart(key: str) -> ChartRef:
    return load_chart_catalog().chart(key)


def image(key: str) -> ImageRef:
    return load_chart_catalog().image(key)


def ecr_registry(account_id: str, region: str, dns_suffix: str = "amazonaws.com") -> str:
    """The host of an account's private ECR registry in a region."""
    return f"{account_id}.dkr.ecr.{region}.{dns_suffix}"


def ecr_repository(upstream_repository: str, catalog: ChartCatalog | None = None) -> str:
    """The private-registry repository an upstream one is served from: the host's pull-through
    (or mirror) prefix, then the upstream path (docker.io/vllm/vllm-openai -> docker-hub/vllm/vllm-openai)."""
    host, _, path = upstream_repository.partition("/")
    up = (catalog or load_chart_catalog()).upstream(host, "image registry")
    return f"{up.ecr_prefix}/{path}"


def through_ecr(upstream_repository: str, registry: str | None) -> str:
    """The repository to pull: through `registry` (the stack's ECR host) when given, else upstream.
    A repository already in an ECR registry (AWS's own, an account's) is left as it is."""
    if registry is None or ".dkr.ecr." in upstream_repository.split("/", 1)[0]:
        return upstream_repository
    return f"{registry}/{ecr_repository(upstream_repository)}"
