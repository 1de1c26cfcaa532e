"""Repair a revision in S3: re-upload exactly the objects whose bytes do not match the manifest.

1. Every object is checked as `verify --deep` checks it (downloaded and hashed), noting the ETag
   of the object that was hashed.
2. For each object that failed, the file of the same path under the local directory is hashed
   again and used only if it matches the manifest (size and sha256): repair never changes what
   the manifest promises, it makes S3 hold it again.
3. It is uploaded with `If-Match` on the ETag that was checked (`If-None-Match: *` for a missing
   object), so an object changed since the check is never overwritten; above the part size it
   goes as a multipart upload whose completion carries the condition.
4. S3's checksum of the new object (full-object CRC32) is compared with the local file's.

The bucket keeps what was overwritten: the WeightStore bucket is versioned, so every repaired
object's corrupt bytes stay as a noncurrent version until the lifecycle expires them.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from infra.core.errors import InputError
from infra.core.weights_layout import ManifestFile, object_key
from infra.ops.weights.localfs import FileDigest, digest_file
from infra.ops.weights.s3 import describe_s3_error, head, is_condition_failed, is_not_found
from infra.ops.weights.upload import MIB, check_concurrency, holds_same_bytes, upload_args
from infra.ops.weights.verify import Problem, verify_model


@dataclass(frozen=True)
class RepairResult:
    bucket: str
    manifest_key: str
    manifest_sha256: str
    files: int
    checked_bytes: int
    seconds: float
    problems: list[Problem] = field(default_factory=list)  # what the deep check found
    repaired: list[dict] = field(default_factory=list)  # {path, problem, version_id}
    unrepaired: list[dict] = field(default_factory=list)  # {path, problem, reason}

    @property
    def ok(self) -> bool:
        return not self.unrepaired

    def to_dict(self) -> dict:
        return {"command": "repair", "ok": self.ok, "bucket": self.bucket,
                "manifest_key": self.manifest_key, "manifest_sha256": self.manifest_sha256,
                "files": self.files, "checked_bytes": self.checked_bytes, "seconds": self.seconds,
                "problems": [p.to_dict() for p in self.problems],
                "repaired": self.repaired, "unrepaired": self.unrepaired}


class _Changed(Exception):
    """The object is no longer the one that was checked; it was left alone."""


def _conditional(problem: Problem) -> dict:
    return {"IfMatch": problem.etag} if problem.etag else {"IfNoneMatch": "*"}


def _put(client: Any, bucket: str, key: str, path: str, size_bytes: int, digest: FileDigest,
         condition: dict, part_size_bytes: int) -> str | None:
    """Upload `path` to `key` under `condition`; the new version id. _Changed if it did not hold."""
    from botocore.exceptions import ClientError

    try:
        if size_bytes <= part_size_bytes:
            with open(path, "rb") as fh:
                return client.put_object(Bucket=bucket, Key=key, Body=fh, **upload_args(digest),
                                         **condition).get("VersionId")
        return _put_multipart(client, bucket, key, path, digest, condition, part_size_bytes)
    except ClientError as exc:
        if is_condition_failed(exc) or is_not_found(exc):  # 404: the If-Match object is gone
            raise _Changed() from None
        mapped = describe_s3_error(exc, bucket, key)
        if mapped:
            raise mapped from None
        raise


def _put_multipart(client: Any, bucket: str, key: str, path: str, digest: FileDigest,
                   condition: dict, part_size_bytes: int) -> str | None:
    """A multipart upload with a full-object CRC32, the condition on its completion (S3 checks
    If-Match/If-None-Match when the object would appear, not when the upload starts)."""
    args = upload_args(digest)
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata=args["Metadata"], ChecksumAlgorithm="CRC32",
        ChecksumType="FULL_OBJECT")["UploadId"]
    try:
        parts = []
        with open(path, "rb") as fh:
            number = 1
            while chunk := fh.read(part_size_bytes):
                part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                          Body=chunk, ChecksumAlgorithm="CRC32")
                parts.append({"PartNumber": number, "ETag": part["ETag"],
                              **({"ChecksumCRC32": part["ChecksumCRC32"]} if part.get("ChecksumCRC32") else {})})
                number += 1
        return client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
            ChecksumCRC32=args["ChecksumCRC32"], ChecksumType="FULL_OBJECT", **condition).get("VersionId")
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise


def _repair_one(client: Any, bucket: str, source_dir: str, model: str, revision: str,
                entry: ManifestFile, problem: Problem, part_size_bytes: int) -> tuple[bool, dict]:
    base = {"path": entry.path, "problem": problem.problem}
    if problem.problem == "changed_during_check":
        return False, {**base, "reason": "the object changed while it was checked; re-run repair"}
    local = os.path.join(source_dir, *entry.path.split("/"))  # the manifest's paths are safe
    if not os.path.isfile(local):
        return False, {**base, "reason": f"no file {local} to repair it from"}
    size_bytes = os.path.getsize(local)
    digest = digest_file(local, crc32=True)
    if (size_bytes, digest.sha256) != (entry.size_bytes, entry.sha256):
        return False, {**base, "reason": f"{local} does not match the manifest either (sha256 "
                                         f"{digest.sha256[:12]}, {size_bytes} bytes): repair needs the original file"}
    key = object_key(model, revision, entry.path)
    try:
        version = _put(client, bucket, key, local, size_bytes, digest, _conditional(problem), part_size_bytes)
    except _Changed:
        return False, {**base, "reason": "the object changed in S3 after it was checked (the conditional "
                                         "write did not hold) and was left as it is; re-run repair"}
    if not holds_same_bytes(head(client, bucket, key, checksums=True), size_bytes, digest):
        return False, {**base, "reason": "after the upload S3 does not report the local file's CRC32 for it"}
    return True, {**base, "version_id": version}


def repair_model(client: Any, bucket: str, source_dir: str, model: str, revision: str, *,
                 concurrency: int = 8, part_size_bytes: int = 64 * MIB,
                 on_bytes: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None) -> RepairResult:
    started = time.monotonic()
    check_concurrency(concurrency)
    if part_size_bytes < 5 * MIB:
        raise InputError("--part-size-mib", part_size_bytes // MIB, "at least 5 (S3's minimum multipart part size)")
    if not os.path.isdir(source_dir):
        raise InputError("DIR", source_dir, "an existing directory holding the model's original files")
    checked = verify_model(client, bucket, model, revision, deep=True, concurrency=concurrency,
                           on_bytes=on_bytes, on_total=on_total)
    assert checked.manifest is not None
    entries = {f.path: f for f in checked.manifest.files}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(
            lambda p: _repair_one(client, bucket, source_dir, model, revision, entries[p.path], p,
                                  part_size_bytes),
            checked.problems))
    return RepairResult(
        bucket=bucket, manifest_key=checked.manifest_key, manifest_sha256=checked.manifest_sha256,
        files=checked.files, checked_bytes=checked.checked_bytes,
        seconds=round(time.monotonic() - started, 3), problems=checked.problems,
        repaired=[o for ok, o in outcomes if ok], unrepaired=[o for ok, o in outcomes if not ok])
