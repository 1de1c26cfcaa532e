"""Reading input files and writing output files: one place for both.

Reads fail with an InputError naming the field, the path and what is allowed (exit 2, no
traceback). Writes are atomic: a temporary sibling, fsync, rename, fsync of the directory, so a
reader never sees half a file and a crash leaves the previous one intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from infra.core.errors import InputError

DEFAULT_FILE_MODE = 0o644  # outputs are read by other users (vLLM pods, CI steps)


def yaml_loader() -> Any:
    """libyaml's safe loader when PyYAML has it (config and catalogs load on every CLI start).
    PyYAML is imported here, not at module level: the hydrator image ships without it."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml_file(path: str | Path, field_name: str) -> Any:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(field_name, str(path), "a path to an existing YAML file")
    try:
        return yaml.load(p.read_text(), Loader=yaml_loader())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(field_name, str(path), f"a readable YAML file ({exc.__class__.__name__})") from None


def read_json_file(path: str | Path, field_name: str, what: str) -> Any:
    """`what` says what the file must be, e.g. "a plan JSON or preview JSON file"."""
    p = Path(path)
    if not p.is_file():
        raise InputError(field_name, str(path), f"a path to an existing {what}")
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(field_name, str(path), f"a readable {what} ({exc.__class__.__name__})") from None


def fsync_dir(path: str | Path) -> None:
    """Make a rename in `path` durable (a file's fsync does not cover its directory entry)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically. The file keeps its mode when it exists, else
    gets `mode` (default 0644). On any error the old file is untouched and the temp removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = target.stat().st_mode & 0o777 if target.exists() else DEFAULT_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
