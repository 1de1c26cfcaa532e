"""Small local-filesystem helpers shared by upload and hydrate."""
from __future__ import annotations

import hashlib

from infra.core.files import atomic_write

CHUNK_BYTES = 1024 * 1024  # hashlib releases the GIL on large updates, so threads hash in parallel
FILE_MODE = 0o644  # vLLM pods read the hydrated files under another uid


def sha256_file(path: str, chunk_bytes: int = CHUNK_BYTES) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` so readers never see half of it, readable by the vLLM pods' uid."""
    atomic_write(path, data, mode=FILE_MODE)
