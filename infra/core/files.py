"""Reading input files and writing output files: one place for both.

Reads fail with an InputError naming the field, the path and what is allowed (exit 2, no
traceback). Every file a command writes goes through `atomic_write`:

- `-` is stdout. A path that names one of this process's open descriptors (`/dev/stdout`,
  `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`, or a symlink to one) is written to that
  descriptor, never reopened or replaced.
- A regular file, or a new name in an existing directory, is replaced atomically: a temporary
  sibling, fsync, rename, fsync of the directory. A reader never sees half a file, a crash
  leaves the previous one, and the file keeps its mode (a new file gets `mode`, default 0644).
- A symlink is written through: its final target is replaced atomically and the link stays. A
  symlink whose target does not exist is refused.
- A character device (`/dev/null`) or a FIFO is written through (opened for writing, as a
  shell's `>` would), never replaced by a regular file.
- A directory, a block device or a socket as the target is refused, and so is a missing parent
  directory: the writer creates no directories (exit 2).
- A full disk, an exhausted quota or a read-only filesystem is a `StorageError` (exit 4) naming
  the path. In every failure the old file is intact and the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from infra.core import patterns
from infra.core.errors import InputError, StorageError, clip

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


STDOUT = "-"
# errno -> what it means for a write; these are the storage's state, not the caller's input.
_NO_ROOM = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only filesystem",
}


def storage_error(exc: OSError, path: str | Path, consequence: str = "", field: str = "") -> StorageError | None:
    """A StorageError (exit 4) for a full disk, quota or read-only filesystem; None otherwise.
    The message is "[field: ]cannot write PATH: REASON (ERRNO)[; consequence]"."""
    reason = _NO_ROOM.get(exc.errno or 0)
    if reason is None:
        return None
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return StorageError((f"{field}: " if field else "") + f"cannot write {path}: {reason} ({code})"
                        + (f"; {consequence}" if consequence else ""))


# errno -> the target path is the problem (the caller can fix it): exit 2.
_BAD_TARGET = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
               errno.ELOOP, errno.ENXIO, errno.ETXTBSY}


def _write_error(exc: OSError, path: str | Path, field: str) -> BaseException:
    """The user error for a failed write, or `exc` itself when it is neither the storage's state
    nor the target's fault (EIO and the like: a real fault, reported with its traceback)."""
    mapped = storage_error(exc, path, "the previous file, if any, is unchanged", field)
    if mapped is None and exc.errno in _BAD_TARGET:
        mapped = InputError(field, str(path), "a file path this process can write", exc.strerror or str(exc))
    return mapped or exc


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may be short, e.g. as a disk fills)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _descriptor_of(path: str) -> int | None:
    """The descriptor number when `path`, following symlinks, names one of this process's open
    descriptors (/dev/stdout -> /proc/self/fd/1); reopening those would truncate or replace."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own symlink limit
        found = re.fullmatch(patterns.OWN_DESCRIPTOR_PATH, current)
        if found:
            return int(found.group("fd"))
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _write_descriptor(fd: int, data: bytes, shown: str, field: str) -> None:
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    try:
        if stream is not None:  # through Python's stream, so the output stays in order
            buffer = getattr(stream, "buffer", None)
            stream.flush()
            if buffer is None:
                stream.write(data.decode())
            else:
                buffer.write(data)
            stream.flush()
        else:
            write_all(fd, data)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _write_error(exc, shown, field) from None


def _write_through(path: str, data: bytes, field: str) -> None:
    """Write into a character device or FIFO that already exists (blocks until a FIFO has a reader)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _write_error(exc, path, field) from None
    try:
        write_all(fd, data)
    except OSError as exc:
        raise _write_error(exc, path, field) from None
    finally:
        os.close(fd)


def _replace(shown: str, target: str, data: bytes, mode: int | None, field: str) -> None:
    """Replace the regular file `target` (or create it) atomically; `shown` names it in errors."""
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        raise InputError(field, shown, "a path in an existing directory",
                         f"{parent} does not exist; no directory is created")
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise _write_error(exc, shown, field) from None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old else DEFAULT_FILE_MODE
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)[:64]}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise _write_error(exc, shown, field) from None
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
            os.fchmod(fd, mode)
            if old and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):  # keep the owner where we may
                    os.fchown(fd, old.st_uid, old.st_gid)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(exc, shown, field) from None
        raise
    fsync_dir(parent)  # the new file is in place; an error here is a real fault, not input


def atomic_write(path: str | Path, data: str | bytes, *, mode: int | None = None,
                 field: str = "output file") -> None:
    """Write `data` to `path` by the rules in this module's docstring (the one writer of every
    output file). `field` names the flag or file in error messages, e.g. "--output"."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    shown = str(path)
    if shown == STDOUT:
        return _write_descriptor(1, raw, "stdout", field)
    if not shown:
        raise InputError(field, shown, "a file path or '-' for stdout")
    fd = _descriptor_of(shown)
    if fd is not None:
        return _write_descriptor(fd, raw, shown, field)
    try:
        st = os.stat(shown)  # follows symlinks
    except FileNotFoundError:
        if os.path.islink(shown):
            raise InputError(field, shown, "a symlink to an existing file (this one dangles)") from None
        st = None
    except OSError as exc:
        raise _write_error(exc, shown, field) from None
    if st is None or stat.S_ISREG(st.st_mode):
        return _replace(shown, os.path.realpath(shown) if os.path.islink(shown) else shown, raw, mode, field)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return _write_through(shown, raw, field)
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a block device or socket"
    raise InputError(field, shown, "a regular file, a character device, a FIFO or '-' for stdout",
                     f"it is {kind}")
