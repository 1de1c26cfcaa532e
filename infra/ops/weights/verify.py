"""Check a model revision in S3 against its manifest.

Quick mode (default) HEADs every object: present, right size, and the sha256 recorded at
upload (`x-amz-meta-sha256`) equal to the manifest's. Deep mode (`deep=True`) also downloads
each object and hashes the bytes, which is what catches an object overwritten behind the
manifest's back; it costs a full read of the model.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from infra.core.weights_layout import SHA256_METADATA_KEY, Manifest, ManifestFile, object_key
from infra.ops.weights.localfs import CHUNK_BYTES
from infra.ops.weights.s3 import describe_s3_error, fetch_manifest, head, is_condition_failed, is_not_found
from infra.ops.weights.upload import check_concurrency


@dataclass(frozen=True)
class Problem:
    path: str
    # missing | size_mismatch | sha256_mismatch | sha256_unrecorded | transfer_checksum_mismatch
    # | changed_during_check (the object was overwritten between its HEAD and its GET)
    problem: str
    expected: str | int | None = None
    actual: str | int | None = None
    etag: str | None = None  # the ETag of the object that was checked (None: missing); repair's If-Match

    def to_dict(self) -> dict:
        return {"path": self.path, "problem": self.problem,
                "expected": self.expected, "actual": self.actual}

    def describe(self) -> str:
        if self.problem == "missing":
            return f"{self.path}: object missing"
        return f"{self.path}: {self.problem} (expected {self.expected}, got {self.actual})"


@dataclass(frozen=True)
class VerifyResult:
    bucket: str
    manifest_key: str
    manifest_sha256: str
    deep: bool
    files: int
    total_size_bytes: int
    checked_bytes: int
    seconds: float
    problems: list[Problem] = field(default_factory=list)
    manifest: Manifest | None = field(default=None, repr=False, compare=False)  # what was checked against

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "command": "verify", "ok": self.ok, "bucket": self.bucket,
            "manifest_key": self.manifest_key, "manifest_sha256": self.manifest_sha256,
            "deep": self.deep, "files": self.files, "total_size_bytes": self.total_size_bytes,
            "checked_bytes": self.checked_bytes, "seconds": self.seconds,
            "problems": [p.to_dict() for p in self.problems],
        }


def check_object(client: Any, bucket: str, model: str, revision: str, entry: ManifestFile,
                 deep: bool, on_bytes: Callable[[int], None] | None = None) -> tuple[Problem | None, int]:
    """One object against its manifest entry: (the problem or None, bytes read). Deep mode hashes
    the object whose ETag the HEAD saw (GET with If-Match), so a problem names that ETag."""
    from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

    key = object_key(model, revision, entry.path)
    meta = head(client, bucket, key)
    if meta is None:
        return Problem(entry.path, "missing"), 0
    etag = meta.get("ETag")
    size = meta.get("ContentLength")
    if size != entry.size_bytes:
        return Problem(entry.path, "size_mismatch", entry.size_bytes, size, etag), 0
    recorded = meta.get("Metadata", {}).get(SHA256_METADATA_KEY)
    if recorded is not None and recorded != entry.sha256:
        return Problem(entry.path, "sha256_mismatch", entry.sha256, recorded, etag), 0
    if not deep:
        if recorded is None:
            # Uploaded by another tool: quick mode cannot vouch for it, deep mode can.
            return Problem(entry.path, "sha256_unrecorded", entry.sha256, None, etag), 0
        return None, 0
    digest = hashlib.sha256()
    read = 0
    try:
        body = client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
        for chunk in body.iter_chunks(CHUNK_BYTES):
            digest.update(chunk)
            read += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    except FlexibleChecksumError as exc:
        # The object's stored CRC/SHA (set at upload) disagrees with its bytes.
        return Problem(entry.path, "transfer_checksum_mismatch", None, str(exc), etag), read
    except (ClientError, BotoCoreError) as exc:
        if is_not_found(exc):
            return Problem(entry.path, "missing"), read
        if is_condition_failed(exc):
            return Problem(entry.path, "changed_during_check", etag, None, etag), read
        mapped = describe_s3_error(exc, bucket, key)
        if mapped:
            raise mapped from None
        raise
    if read != entry.size_bytes:
        return Problem(entry.path, "size_mismatch", entry.size_bytes, read, etag), read
    if digest.hexdigest() != entry.sha256:
        return Problem(entry.path, "sha256_mismatch", entry.sha256, digest.hexdigest(), etag), read
    return None, read


def verify_model(client: Any, bucket: str, model: str, revision: str, *, deep: bool = False,
                 concurrency: int = 8,
                 on_bytes: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None) -> VerifyResult:
    """Compare S3 with the manifest. Returns every problem found (does not stop at the first);
    a missing or invalid manifest raises (NotFoundError / IntegrityError)."""
    started = time.monotonic()
    check_concurrency(concurrency)
    manifest, mkey = fetch_manifest(client, bucket, model, revision)
    if on_total:
        on_total(manifest.total_size_bytes if deep else 0)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(
            lambda e: check_object(client, bucket, model, revision, e, deep, on_bytes),
            manifest.files,
        ))
    return VerifyResult(
        bucket=bucket, manifest_key=mkey, manifest_sha256=manifest.content_sha256, deep=deep,
        files=len(manifest.files), total_size_bytes=manifest.total_size_bytes,
        checked_bytes=sum(read for _, read in outcomes),
        seconds=round(time.monotonic() - started, 3),
        problems=[p for p, _ in outcomes if p is not None], manifest=manifest,
    )
