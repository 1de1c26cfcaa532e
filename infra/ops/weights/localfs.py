"""Small local-filesystem helpers shared by upload, repair and hydrate.

Every byte the weights tier writes locally goes through `os.write`/`os.pwrite` (here and in
`infra.core.files`), so a full disk is one errno in one place, and tests can fill a disk with a
write wrapper instead of a mount.
"""
from __future__ import annotations

import base64
import hashlib
import os
import zlib
from dataclasses import dataclass

from infra.core.files import atomic_write, write_all

CHUNK_BYTES = 1024 * 1024  # hashlib releases the GIL on large updates, so threads hash in parallel
FILE_MODE = 0o644  # vLLM pods read the hydrated files under another uid


@dataclass(frozen=True)
class FileDigest:
    sha256: str  # lowercase hex, as in the manifest
    crc32: str | None  # base64 of the big-endian CRC32, as S3 reports ChecksumCRC32; None if not asked

    @staticmethod
    def crc32_text(value: int) -> str:
        return base64.b64encode(value.to_bytes(4, "big")).decode()


def digest_file(path: str, *, crc32: bool = False, chunk_bytes: int = CHUNK_BYTES) -> FileDigest:
    """sha256 (and, if asked, the CRC32 S3 stores as a full-object checksum) in one read."""
    digest = hashlib.sha256()
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
            if crc32:
                crc = zlib.crc32(chunk, crc)
    return FileDigest(digest.hexdigest(), FileDigest.crc32_text(crc) if crc32 else None)


def sha256_file(path: str) -> str:
    return digest_file(path).sha256


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` so readers never see half of it, readable by the vLLM pods' uid."""
    atomic_write(path, data, mode=FILE_MODE)


def write_small(path: str, data: bytes, *, append: bool = False) -> None:
    """Create/truncate (or append to) a small bookkeeping file: the hydrator's logs and range lists."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
