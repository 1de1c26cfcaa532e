"""Every container image a stack runs, and where its private ECR registry serves it from. Pure.

The catalog's images (infra/core/catalog/charts.yaml) with their tags resolved for the stack
(the autoscaler's by Kubernetes minor) plus the hydrator image of the stack config. Each is
served through the stack's ECR registry: a pull-through cache rule for hosts ECR supports, a
mirrored private repository for the others (nvcr.io), or as it is when it already lives in an
ECR registry. Preflight checks each exists there; `python -m infra images` lists them and writes
the mirror step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from infra.core.catalog.charts import ChartCatalog, ecr_repository, load_chart_catalog
from infra.core.config import StackConfig

_REF = re.compile(r"^(?P<repo>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class StackImage:
    key: str
    upstream: str  # repository with its host
    tag: str | None  # None: the chart's default (`tag_from_chart`), resolved by the mirror step
    digest: str | None
    unpinned: str | None  # why no digest is recorded
    ecr_repository: str | None  # in the stack's registry; None: already in another ECR registry
    mirrored: bool  # copied by the mirror step (the host is no pull-through upstream)
    routed: bool  # False: the chart still pulls it from upstream (see `note`)
    tag_from_chart: str | None = None
    note: str = ""

    @property
    def upstream_ref(self) -> str:
        return self.upstream + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of `registry/repo[:tag][@sha256:...]`."""
    m = _REF.match(ref)
    if not m or "/" not in m.group("repo"):
        raise ValueError(f"{ref!r} is not an image reference like registry/repository:tag")
    return m.group("repo"), m.group("tag"), m.group("digest")


def is_ecr_host(host: str) -> bool:
    return ".dkr.ecr." in host


def through_ecr_ref(ref: str, registry: str | None) -> str:
    """A full reference, pulled through `registry` (None: unchanged)."""
    from infra.core.catalog.charts import through_ecr

    repo, tag, digest = split_image(ref)
    return through_ecr(repo, registry) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def stack_images(cfg: StackConfig, catalog: ChartCatalog | None = None) -> list[StackImage]:
    """The images of `cfg`'s stack, catalog order, the hydrator last."""
    cat = catalog or load_chart_catalog()
    out = []
    for ref in cat.images.values():
        tag = ref.tag_for_kubernetes(cfg.cluster.kubernetes_version) if ref.tags_by_kubernetes_minor else ref.tag
        up = cat.upstream(ref.host, f"image {ref.key}")
        out.append(StackImage(
            ref.key, ref.repository, tag, ref.digest, ref.unpinned, ecr_repository(ref.repository, cat), up.mirrored,
            ref.routed, ref.tag_from_chart, ref.why_not_routed or "",
        ))
    repo, tag, digest = split_image(cfg.weights.hydrator_image)
    host = repo.split("/", 1)[0]
    own = is_ecr_host(host)
    mirrored = not own and cat.upstream(host, "llm-fleet:weights.hydrator_image").mirrored
    out.append(StackImage(
        "hydrator", repo, tag, digest, None if digest else "llm-fleet:weights.hydrator_image names no digest",
        repo.split("/", 1)[1] if own else ecr_repository(repo, cat), mirrored, True,
        note="llm-fleet:weights.hydrator_image" + (" (already in an ECR registry)" if own else ""),
    ))
    return out


def mirror_script(cfg: StackConfig, stack: str, catalog: ChartCatalog | None = None) -> str:
    """The mirror step as a bash script: copy the mirrored images into their private
    repositories, then pull every other image once through the pull-through cache (which caches
    it), printing each digest to record in charts.yaml. Charts' default tags are read from the
    charts themselves (`helm template`), so the step covers every image they run."""
    cat = catalog or load_chart_catalog()
    images = stack_images(cfg, cat)
    prefixes = " ".join(f"[{host}]={up.ecr_prefix}" for host, up in sorted(cat.registries.items()))
    lines = [
        "#!/usr/bin/env bash",
        f"# Mirror step of stack {stack} ({cfg.region}): `python -m infra images --stack {stack} --script`.",
        "# Needs the AWS CLI v2, crane (go-containerregistry), helm 3 and credentials that may push to",
        "# the stack's ECR registry. Run it after the base's first `pulumi up` (rules and repositories",
        "# exist) and after the Docker Hub / GHCR credential secrets hold their values.",
        "set -euo pipefail",
        f"REGION={cfg.region}",
        'ACCOUNT="${ACCOUNT:-$(aws sts get-caller-identity --query Account --output text)}"',
        'REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"',
        'aws ecr get-login-password --region "$REGION" | crane auth login "$REGISTRY" -u AWS --password-stdin',
        f"declare -A PREFIX=({prefixes})",
        "through_ecr() {  # upstream reference -> the stack's registry",
        '  local host="${1%%/*}" rest="${1#*/}"',
        '  case "$host" in *.*|*:*) ;; *) host=docker.io; rest="$1" ;; esac',
        '  [[ "$host" == docker.io && "$rest" != */* ]] && rest="library/$rest"',
        '  echo "$REGISTRY/${PREFIX[$host]}/$rest"',
        "}",
        "warm() {  # pull once through the cache; print what to pin",
        '  echo "$1 $(crane digest "$(through_ecr "$1")")"',
        "}",
        "mirror() {  # copy from a host ECR cannot pull through (digests are preserved)",
        '  crane copy "$1" "$(through_ecr "$1")" && echo "$1 $(crane digest "$1")"',
        "}",
        "chart_images() {  # every image a chart renders with its defaults",
        '  helm template probe "$@" | grep -oE \'image: *"?[^" ]+\' | sed -E \'s/image: *"?//\' | sort -u',
        "}",
        "chart_tag() { helm show chart \"$@\" | awk '/^appVersion:/ {gsub(/\"/, \"\", $2); print $2}'; }",
        "",
    ]
    charts_done: set[str] = set()
    for img in images:
        if img.ecr_repository is None or (img.key == "hydrator" and is_ecr_host(img.upstream.split("/", 1)[0])):
            continue
        verb = "mirror" if img.mirrored else "warm"
        if img.tag is not None:
            lines.append(f'{verb} "{img.upstream}:{img.tag}"' if not img.digest else f'{verb} "{img.upstream_ref}"')
            continue
        ref = cat.chart(img.tag_from_chart or "")
        where = f"{ref.release_chart} --version {ref.version}" + (f" --repo {ref.repository_url}" if ref.repository_url else "")
        if img.mirrored:  # the image's tag is its chart's appVersion
            lines.append(f'{verb} "{img.upstream}:$(chart_tag {where})"')
        elif ref.key not in charts_done:
            charts_done.add(ref.key)
            lines.append(f"for ref in $(chart_images {where}); do warm \"$ref\"; done")
    return "\n".join(lines) + "\n"
