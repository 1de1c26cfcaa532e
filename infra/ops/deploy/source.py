"""The sources an in-VPC build runs: the operator's working tree, exactly, as one zip.

The base runs from the working tree where the operator is, so the workloads must run from the
same files: `source_archive` zips what the build needs of it (the programs, `infra/`, the policy
pack, the stack files and rollout plans, the requirements) as git sees it (tracked and
untracked-but-not-ignored files; a tree without git is walked, skipping caches and virtual
environments). The archive is deterministic (sorted names, fixed timestamps), so its sha256
names it: the same tree uploads to the same key.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from infra.core.paths import POLICIES_DIRNAME, STACKS_DIRNAME, WORKLOADS_DIRNAME

# What a build uses, at the top of the tree: everything else (tests, docs, benchmarks) stays home.
INCLUDED_TOP = ("Pulumi.yaml", "__main__.py", "requirements.txt", "infra", POLICIES_DIRNAME, STACKS_DIRNAME,
                WORKLOADS_DIRNAME)
SKIPPED_PARTS = (".git", ".venv", "venv", "__pycache__", ".rollout", "node_modules")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can store


@dataclass(frozen=True)
class SourceArchive:
    data: bytes
    sha256: str
    files: tuple[str, ...]


def _included(rel: str) -> bool:
    parts = rel.split("/")
    if any(p in SKIPPED_PARTS or p.endswith(".pyc") for p in parts):
        return False
    top = parts[0]
    return top in INCLUDED_TOP or (len(parts) == 1 and top.startswith("Pulumi.") and top.endswith(".yaml"))


def _listed(project_dir: Path) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=project_dir,
                             capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
        return [rel for rel in out if (project_dir / rel).is_file()]
    except (OSError, subprocess.SubprocessError):
        return [p.relative_to(project_dir).as_posix() for p in project_dir.rglob("*") if p.is_file()]


def source_archive(project_dir: Path | str, overrides: Mapping[str, str] | None = None,
                   files: Iterable[str] | None = None) -> SourceArchive:
    """The zip of the build's files under `project_dir`; `overrides` replaces (or adds) files by
    relative path, e.g. an older `Pulumi.<stack>.yaml` for a rollback."""
    project_dir = Path(project_dir)
    overrides = dict(overrides or {})
    names = sorted({rel for rel in (files if files is not None else _listed(project_dir)) if _included(rel)}
                   | set(overrides))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in names:
            info = zipfile.ZipInfo(rel, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = overrides[rel].encode() if rel in overrides else (project_dir / rel).read_bytes()
            zf.writestr(info, data)
    data = buf.getvalue()
    return SourceArchive(data, hashlib.sha256(data).hexdigest(), tuple(names))
