"""Full and read-only filesystems without mounts: wrappers around the os calls that write.

`full_disk(monkeypatch, root, after_bytes)` lets `os.write`/`os.pwrite` put `after_bytes` bytes in
total into files under `root`, then behaves as a filling disk does: one short write, then
`OSError(ENOSPC)` (or the errno given, e.g. EDQUOT). `read_only(monkeypatch, root)` makes every
open-for-writing, create, rename, mkdir or unlink under `root` fail with EROFS. Files outside
`root` (pytest's capture, moto's server) are untouched. Python's `open()` (and so pathlib's
`write_text`) is wrapped too for files under `root`, so a plain write meets the same disk.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import threading
from dataclasses import dataclass, field


def _under(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _fd_under(fd: int, root: str) -> bool:
    try:
        return _under(os.readlink(f"/proc/self/fd/{fd}"), root)
    except OSError:
        return False


@dataclass
class DiskBudget:
    remaining_bytes: int
    err: int = errno.ENOSPC
    written_bytes: int = 0
    refused_writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, wanted: int) -> int:
        """Bytes the next write may put; raises once the budget is spent."""
        with self.lock:
            if self.remaining_bytes <= 0 and wanted:
                self.refused_writes += 1
                raise OSError(self.err, os.strerror(self.err))
            granted = min(wanted, self.remaining_bytes)
            self.remaining_bytes -= granted
            self.written_bytes += granted
            return granted


class _RawFile(io.RawIOBase):
    """A raw file whose writes go through os.write (so the wrappers see buffered writes too)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return os.write(self.fd, data)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


_WRITE_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


def _wrap_open(monkeypatch, root: str) -> None:
    """open()/io.open() of a file under `root` for writing goes through os.open and os.write."""
    real_open = builtins.open

    def open_(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, *args, **kwargs):
        kind = next((k for k in _WRITE_FLAGS if k in mode), None)
        if kind is None or "+" in mode or isinstance(file, int) or not _under(os.fspath(file), root):
            return real_open(file, mode, buffering, encoding, errors, newline, *args, **kwargs)
        buffered = io.BufferedWriter(_RawFile(os.open(os.fspath(file), _WRITE_FLAGS[kind], 0o666)))
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors, newline=newline)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


def full_disk(monkeypatch, root, after_bytes: int, err: int = errno.ENOSPC) -> DiskBudget:
    root = os.path.realpath(root)
    budget = DiskBudget(after_bytes, err)
    real_write, real_pwrite = os.write, os.pwrite

    def write(fd, data):
        if not _fd_under(fd, root):
            return real_write(fd, data)
        granted = budget.take(len(data))
        return real_write(fd, memoryview(data)[:granted]) if granted else 0

    def pwrite(fd, data, offset):
        if not _fd_under(fd, root):
            return real_pwrite(fd, data, offset)
        granted = budget.take(len(data))
        return real_pwrite(fd, memoryview(data)[:granted], offset) if granted else 0

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pwrite", pwrite)
    _wrap_open(monkeypatch, root)
    return budget


def read_only(monkeypatch, root) -> None:
    root = os.path.realpath(root)
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def refuse(*paths) -> None:
        if any(_under(os.fspath(p), root) for p in paths):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(paths[0]))

    def wrap(real, n_paths: int):
        def call(*args, **kwargs):
            refuse(*args[:n_paths])
            return real(*args, **kwargs)
        return call

    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & writing:
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    _wrap_open(monkeypatch, root)
    for name, n_paths in (("replace", 2), ("rename", 2), ("unlink", 1), ("mkdir", 1), ("rmdir", 1)):
        monkeypatch.setattr(os, name, wrap(getattr(os, name), n_paths))
