"""Reading input files and writing output files: one place for both.

Reads fail with an InputError naming the field, the path and what is allowed (exit 2, no
traceback). Writes are atomic: a temporary sibling, fsync, rename, fsync of the directory, so a
reader never sees half a file and a crash leaves the previous one intact.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from infra.core.errors import InputError, clip

DEFAULT_FILE_MODE = 0o644  # outputs are read by other users (vLLM pods, CI steps)


# A document may use anchors and aliases (`<<: *defaults` is handy in a stack file), but what they
# expand to is bounded: the largest file the project reads expands to under 3,000 nodes, and a
# 313-byte "billion laughs" document expands to ~10^9. Each alias counts once per use.
MAX_YAML_NODES = 100_000


@functools.lru_cache(maxsize=None)
def yaml_loader() -> Any:
    """A safe loader (libyaml's when PyYAML has it: config and catalogs load on every CLI start)
    that refuses a document expanding to more than MAX_YAML_NODES nodes through its aliases, or
    holding a recursive alias, before any value is built. PyYAML is imported here, not at module
    level: the hydrator image ships without it."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class BoundedSafeLoader(base):  # type: ignore[misc, valid-type]
        def get_single_data(self) -> Any:
            node = self.get_single_node()
            if node is None:
                return None
            _check_expansion(node, yaml)
            return self.construct_document(node)

    return BoundedSafeLoader


def _check_expansion(root: Any, yaml: Any) -> None:
    """Count the nodes `root` expands to (shared alias targets counted at every use), iteratively
    and memoised per node, stopping as soon as the count passes MAX_YAML_NODES."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            sizes[key] = 1
            continue
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise yaml.YAMLError(
                    f"the document expands to more than {MAX_YAML_NODES:,} values through its aliases "
                    f"(*name references, near line {node.start_mark.line + 1}); write the values out or "
                    "use fewer aliases")
            continue
        if key in on_path:
            raise yaml.YAMLError(f"a recursive alias (an anchor used inside itself, near line "
                                 f"{node.start_mark.line + 1}) cannot be configuration")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def read_yaml_file(path: str | Path, field_name: str) -> Any:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(field_name, str(path), "a path to an existing YAML file")
    try:
        return yaml.load(p.read_text(), Loader=yaml_loader())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        why = clip(" ".join(str(exc).split()), 300)
        raise InputError(field_name, str(path), f"a readable YAML file ({exc.__class__.__name__}: {why})") from None


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
