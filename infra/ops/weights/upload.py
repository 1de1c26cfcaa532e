"""Upload a local model directory to S3: claim the revision, parallel multipart transfers, manifest last.

A revision is immutable, and that holds under concurrency because the revision is claimed before
any of its objects is written:

1. The upload creates the revision's claim object (`.llm-fleet-claim.json`: who, when, the digest
   of the file list) with `If-None-Match: *`. Of two uploads of one revision exactly one creates
   it. The other reads it: for the same files it carries on (a resumed or repeated upload sends the
   same bytes); for different files it stops before writing anything and names the claim. With
   `replace=True` it takes the claim over (`If-Match` on the claim's ETag) and deletes the old
   manifest first, so nodes never see old and new files mixed.
2. A file is skipped only when its object already holds the same bytes by S3's own account: the
   same size and the same full-object CRC32, which S3 validates when the bytes arrive. The
   `x-amz-meta-sha256` metadata alone never skips a file: it can outlive the bytes it describes.
3. Before the manifest, the claim is read again (a `--replace` may have taken it over); the
   manifest is written with `If-None-Match: *`.
"""
from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable

from infra.core.errors import InputError, UserError
from infra.core.errors import IntegrityError
from infra.core.weights_layout import (
    RESERVED_PREFIX, SHA256_METADATA_KEY, Claim, Manifest, ManifestFile, claim_key, manifest_key,
    model_prefix, object_key, parse_claim, unsafe_path_reason,
)
from infra.ops.weights.localfs import FileDigest, digest_file
from infra.ops.weights.s3 import (
    check_bucket, describe_s3_error, fetch_manifest, head, is_condition_failed, is_not_found, s3_request,
)

MIB = 1024 * 1024
MAX_CONCURRENCY = 256
SKIPPED_TOP_DIRS = (".git", ".cache")


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, POSIX
    abs_path: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    prefix: str
    manifest_key: str
    manifest_sha256: str
    manifest_written: bool
    claim_key: str
    claim: str  # created | same-files (claimed earlier for these files) | taken-over (--replace)
    claimed_by: str
    files: int
    uploaded_files: int
    skipped_files: int
    uploaded_bytes: int
    skipped_bytes: int
    total_size_bytes: int
    seconds: float

    def to_dict(self) -> dict:
        return {"command": "upload", "ok": True, **asdict(self)}


def check_concurrency(concurrency: int) -> int:
    if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InputError("--concurrency", concurrency, f"an integer from 1 to {MAX_CONCURRENCY}")
    return concurrency


def scan_directory(source_dir: str) -> list[LocalFile]:
    """Regular files under `source_dir` (symlinked files followed, as in a Hugging Face
    snapshot), sorted by path; the hydrator's own bookkeeping files are left out."""
    if not os.path.isdir(source_dir):
        raise InputError("DIR", source_dir, "an existing directory holding the model files")
    root = os.path.abspath(source_dir)
    found: list[LocalFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            # A hydrated destination can be re-uploaded: skip its marker, lock and state. A git
            # clone's .git (LFS objects duplicate the weights) and huggingface-cli's .cache are
            # bookkeeping, not model files.
            dirnames[:] = [d for d in dirnames
                           if not d.startswith(RESERVED_PREFIX) and d not in SKIPPED_TOP_DIRS]
            filenames = [f for f in filenames if not f.startswith(RESERVED_PREFIX)]
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                raise InputError("DIR", os.path.join(dirpath, d),
                                 "regular directories only (a directory symlink could loop)")
        dirnames.sort()
        for name in sorted(filenames):
            abs_path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
            reason = unsafe_path_reason(rel)
            if reason:
                raise InputError("DIR", abs_path, f"file names a manifest can carry ({reason})")
            try:
                st = os.stat(abs_path)  # follows a file symlink
            except FileNotFoundError:
                raise InputError("DIR", abs_path, "no dangling symlinks") from None
            if not os.path.isfile(abs_path):
                continue  # sockets, fifos: not model files
            found.append(LocalFile(rel, abs_path, st.st_size, st.st_mtime_ns))
    if not found:
        raise InputError("DIR", source_dir, "a directory with at least one file")
    return sorted(found, key=lambda f: f.path)


def hash_files(files: list[LocalFile], concurrency: int) -> dict[str, FileDigest]:
    """sha256 and CRC32 of every file, in parallel (one read each)."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        digests = pool.map(lambda f: digest_file(f.abs_path, crc32=True), files)
        return {f.path: d for f, d in zip(files, digests)}


def upload_args(digest: FileDigest) -> dict:
    """Object arguments of every weights upload: the sha256 as metadata, and a full-object CRC32
    that S3 checks against the bytes it receives and keeps (what the skip rule trusts)."""
    return {"Metadata": {SHA256_METADATA_KEY: digest.sha256},
            "ChecksumAlgorithm": "CRC32", "ChecksumCRC32": digest.crc32}


def holds_same_bytes(meta: dict | None, size_bytes: int, digest: FileDigest) -> bool:
    """Does an object (HeadObject with ChecksumMode) hold exactly these bytes, by S3's checksum?"""
    return (meta is not None and meta.get("ContentLength") == size_bytes
            and meta.get("Metadata", {}).get(SHA256_METADATA_KEY) == digest.sha256
            and meta.get("ChecksumCRC32") == digest.crc32
            and meta.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def put_conditional(client: Any, bucket: str, key: str, body: bytes, **condition: str) -> str | None:
    """PutObject with `IfNoneMatch="*"` or `IfMatch=etag`: the new ETag, or None when the
    condition did not hold (someone else wrote first, or the object matched is gone)."""
    from botocore.exceptions import ClientError

    try:
        return client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                                 **condition)["ETag"]
    except ClientError as exc:
        if is_condition_failed(exc) or ("IfMatch" in condition and is_not_found(exc)):
            return None
        mapped = describe_s3_error(exc, bucket, key)
        if mapped:
            raise mapped from None
        raise


def read_claim(client: Any, bucket: str, model: str, revision: str) -> tuple[bytes, str] | None:
    """The claim object's bytes and ETag, or None when the revision is unclaimed."""
    key = claim_key(model, revision)
    response = s3_request(bucket, key, lambda: client.get_object(Bucket=bucket, Key=key), missing_ok=True)
    return None if response is None else (response["Body"].read(), response["ETag"])


def _conflict(bucket: str, held: Claim, ours: Claim, published: bool) -> UserError:
    where = f"s3://{bucket}/{claim_key(ours.model, ours.revision)}"
    state = ("already published" if published else
             "not published yet (that upload is running, or it died before its manifest)")
    return UserError(
        f"--revision: {ours.model}@{ours.revision} is claimed by {held.describe()} ({where}), "
        f"{state}. This upload has different files (files sha256 {ours.files_sha256[:12]}) and "
        "wrote nothing. Revisions are immutable: upload under a new --revision, or pass --replace "
        "to take this one over deliberately"
    )


def claim_revision(client: Any, bucket: str, ours: Claim, *, replace: bool,
                   published: bool = False) -> tuple[str, Claim]:
    """Claim the revision for `ours` before any of its objects is written.

    Returns (how, the claim in force): "created", "same-files" (already claimed for these
    files), or "taken-over" (`replace`). Raises naming the holder when another upload claimed it
    for different files.
    """
    key = claim_key(ours.model, ours.revision)
    where = f"s3://{bucket}/{key}"
    body = ours.to_json_bytes()
    for _ in range(5):  # each turn loses only to a write that landed in between
        if put_conditional(client, bucket, key, body, IfNoneMatch="*") is not None:
            return "created", ours
        current = read_claim(client, bucket, ours.model, ours.revision)
        if current is None:
            continue  # deleted in between: try to create it again
        raw, etag = current
        try:
            held = parse_claim(raw, where)
        except IntegrityError:
            if not replace:
                raise
            held = None
        if held is not None and held.files_sha256 == ours.files_sha256:
            return "same-files", held
        if not replace:
            raise _conflict(bucket, held, ours, published)
        if put_conditional(client, bucket, key, body, IfMatch=etag) is not None:
            return "taken-over", ours
    raise UserError(f"--revision: the claim {where} kept changing while this upload tried to take "
                    "it; another upload of this revision is running. Retry when it has finished")


def _published_manifest(client: Any, bucket: str, model: str, revision: str, replace: bool) -> tuple[Manifest | None, bool]:
    """(the published manifest, whether a manifest object exists at all)."""
    if head(client, bucket, manifest_key(model, revision)) is None:
        return None, False
    try:
        return fetch_manifest(client, bucket, model, revision)[0], True
    except IntegrityError:
        if not replace:
            raise
        return None, True  # unreadable: --replace overwrites it


def upload_model(
    client: Any,
    bucket: str,
    source_dir: str,
    model: str,
    revision: str,
    *,
    concurrency: int = 8,
    part_size_bytes: int = 64 * MIB,
    source: str | None = None,
    replace: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> UploadResult:
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
    from botocore.exceptions import BotoCoreError, ClientError
    from s3transfer.subscribers import BaseSubscriber

    started = time.monotonic()
    prefix = model_prefix(model, revision)
    check_concurrency(concurrency)
    if part_size_bytes < 5 * MIB:
        raise InputError("--part-size-mib", part_size_bytes // MIB,
                         "at least 5 (S3's minimum multipart part size)")
    files = scan_directory(source_dir)
    check_bucket(client, bucket)  # fail before hashing gigabytes
    digests = hash_files(files, concurrency)
    manifest = Manifest.build(
        model, revision,
        [ManifestFile(path=f.path, size_bytes=f.size_bytes, sha256=digests[f.path].sha256) for f in files],
        source=source or f"local:{os.path.abspath(source_dir)}",
    )
    if on_total:
        on_total(manifest.total_size_bytes)

    mkey = manifest_key(model, revision)
    existing, manifest_exists = _published_manifest(client, bucket, model, revision, replace)
    same = existing is not None and existing.same_content(manifest)
    ours = Claim(schema_version=1, model=model, revision=revision, files_sha256=manifest.files_sha256,
                 files=len(files), total_size_bytes=manifest.total_size_bytes, claimed_by=_who(),
                 claimed_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 upload_id=uuid.uuid4().hex, source=manifest.source)
    if manifest_exists and not same and not replace:
        current = read_claim(client, bucket, model, revision)
        try:
            held = parse_claim(current[0], claim_key(model, revision)) if current else None
        except IntegrityError:
            held = None
        if held is not None:
            raise _conflict(bucket, held, ours, published=True)
        raise UserError(
            f"--revision: {model}@{revision} already exists in s3://{bucket}/{prefix} with "
            "different files; revisions are immutable (nodes may be serving it). Upload "
            "under a new --revision, or pass --replace to overwrite it deliberately"
        )
    how, holder = claim_revision(client, bucket, ours, replace=replace, published=manifest_exists)
    if manifest_exists and not same:
        # Unpublish first: while files are replaced, the revision reads as incomplete.
        s3_request(bucket, mkey, lambda: client.delete_object(Bucket=bucket, Key=mkey))
    if same:
        manifest = existing  # keep the original created_at: nothing new is being published

    to_send: list[LocalFile] = []
    skipped_bytes = 0
    for f in files:
        meta = head(client, bucket, object_key(model, revision, f.path), checksums=True)
        if holds_same_bytes(meta, f.size_bytes, digests[f.path]):
            skipped_bytes += f.size_bytes
            if on_bytes:
                on_bytes(f.size_bytes)
        else:
            to_send.append(f)

    class _Progress(BaseSubscriber):
        def on_progress(self, future, bytes_transferred, **kwargs):  # noqa: ARG002
            if on_bytes:
                on_bytes(bytes_transferred)

    config = TransferConfig(
        multipart_threshold=part_size_bytes,
        multipart_chunksize=part_size_bytes,
        max_concurrency=concurrency,  # parts of all files share these threads
        use_threads=True,
    )
    try:
        with create_transfer_manager(client, config) as manager:
            futures = [
                manager.upload(f.abs_path, bucket, object_key(model, revision, f.path),
                               extra_args=upload_args(digests[f.path]), subscribers=[_Progress()])
                for f in to_send
            ]
            for fut in futures:
                fut.result()
    except (ClientError, BotoCoreError) as exc:
        mapped = describe_s3_error(exc, bucket, prefix)
        if mapped:
            raise mapped from None
        raise

    for f in to_send:
        st = os.stat(f.abs_path)
        if (st.st_size, st.st_mtime_ns) != (f.size_bytes, f.mtime_ns):
            # The bytes sent may not be the bytes hashed: do not publish a manifest for them.
            raise UserError(f"DIR: {f.abs_path} changed during the upload; re-run when it is stable")

    written = not same and _publish(client, bucket, manifest, ours)
    return UploadResult(
        bucket=bucket,
        prefix=prefix,
        manifest_key=mkey,
        manifest_sha256=manifest.content_sha256,
        manifest_written=written,
        claim_key=claim_key(model, revision),
        claim=how,
        claimed_by=holder.claimed_by,
        files=len(files),
        uploaded_files=len(to_send),
        skipped_files=len(files) - len(to_send),
        uploaded_bytes=sum(f.size_bytes for f in to_send),
        skipped_bytes=skipped_bytes,
        total_size_bytes=manifest.total_size_bytes,
        seconds=round(time.monotonic() - started, 3),
    )


def _publish(client: Any, bucket: str, manifest: Manifest, ours: Claim) -> bool:
    """Write the manifest if the claim is still for these files (a --replace may have taken it).
    False when an upload of the same files published it first."""
    model, revision = manifest.model, manifest.revision
    current = read_claim(client, bucket, model, revision)
    held = parse_claim(current[0], claim_key(model, revision)) if current else None
    if held is None or held.files_sha256 != ours.files_sha256:
        who = held.describe() if held else "nobody (the claim was deleted)"
        raise UserError(
            f"--revision: {model}@{revision} was taken over during this upload by {who}; this "
            "upload published nothing, and the objects it wrote may since have been replaced. "
            "Check with `weights verify --deep`"
        )
    mkey = manifest_key(model, revision)
    if put_conditional(client, bucket, mkey, manifest.to_json_bytes(), IfNoneMatch="*") is None:
        other, _ = fetch_manifest(client, bucket, model, revision)
        if not other.same_content(manifest):
            raise UserError(f"--revision: another upload published {model}@{revision} with different "
                            f"files while this one ran (s3://{bucket}/{mkey}); this upload published nothing")
        return False
    return True
