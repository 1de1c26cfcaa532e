"""Helpers shared by the weights tests (imported by conftest and the test modules)."""
from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

MIB = 1024 * 1024
MODEL, REV = "acme/fake-llm", "r1"

# A fake model: shards bigger than the test part size (fetched as ranged parts, uploaded as
# multipart), smaller files fetched in one GET, a nested file and an empty file. ~16 MiB: big
# enough for several ranges and multipart parts, small enough that the ~50 tests that each
# move it through the in-process S3 server stay within a minute on 2 shared cores.
FAKE_MODEL_FILES = {
    "config.json": 2_345,
    "tokenizer.json": 1 * MIB + 17,
    "model-00001-of-00003.safetensors": 6 * MIB + 4_099,  # 4 ranges
    "model-00002-of-00003.safetensors": 6 * MIB,  # 3 ranges
    "model-00003-of-00003.safetensors": 2 * MIB - 1,  # one GET, just under the part size
    "original/params.bin": 1 * MIB + 5,
    "generation_config.json": 0,
}
TEST_PART_SIZE_BYTES = 2 * MIB  # small so that a test model exercises ranged downloads
UPLOAD_PART_SIZE_BYTES = 5 * MIB  # S3's minimum: the two big shards go up as multipart uploads


def write_fake_model(root, files: dict[str, int] = FAKE_MODEL_FILES, seed: int = 7) -> dict[str, bytes]:
    """Write random files under `root`; returns path -> content."""
    rng = random.Random(seed)
    contents = {}
    for rel, size in files.items():
        data = rng.randbytes(size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[rel] = data
    return contents


@dataclass
class RequestLog:
    """Records every S3 request a client sends (operation, key, Range header)."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_after_gets: int | None = None  # raise Interrupted instead of sending GET n+1

    def gets(self) -> list[tuple[str, str | None]]:
        return [(key, rng) for op, key, rng in self.requests if op == "GetObject"]

    def count(self, op: str) -> int:
        return sum(1 for o, _, _ in self.requests if o == op)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


class Interrupted(Exception):
    """Stands in for a crash or a killed pod in the middle of a hydration."""


def range_bytes(header: str | None, full_size: int) -> int:
    if header is None:
        return full_size
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", header)
    assert m, header
    return min(int(m.group(2)), full_size - 1) - int(m.group(1)) + 1


def corrupt_object(s3, bucket, rel: str, data: bytes, keep_metadata: bool = True) -> bytes:
    """Overwrite an object with same-size different bytes (bit rot, a bad re-upload); with
    `keep_metadata` its x-amz-meta-sha256 still claims the original digest."""
    from infra.core.weights_layout import object_key

    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    key = object_key(MODEL, REV, rel)
    meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"] if keep_metadata else {}
    s3.delete_object(Bucket=bucket, Key=key)  # a fresh object: no stale stored checksums
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(bad), Metadata=meta)
    return bytes(bad)
