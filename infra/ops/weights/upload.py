"""Upload a local model directory to S3: parallel multipart transfers, manifest last.

A file whose object already exists with the same size and sha256 (kept in the object's
`x-amz-meta-sha256`) is skipped, so a re-run after an interruption only sends what is missing.
A revision is immutable: uploading different content under an existing manifest is refused
unless `replace=True`, which deletes the old manifest first so nodes never see a mix.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable

from infra.core.errors import InputError, UserError
from infra.core.errors import IntegrityError
from infra.core.weights_layout import (
    RESERVED_PREFIX, SHA256_METADATA_KEY, Manifest, ManifestFile, manifest_key, model_prefix,
    object_key, unsafe_path_reason,
)
from infra.ops.weights.localfs import sha256_file
from infra.ops.weights.s3 import check_bucket, describe_s3_error, fetch_manifest, head

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


def _hash_all(files: list[LocalFile], concurrency: int) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        digests = pool.map(lambda f: sha256_file(f.abs_path), files)
        return {f.path: d for f, d in zip(files, digests)}


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
    digests = _hash_all(files, concurrency)
    manifest = Manifest.build(
        model, revision,
        [ManifestFile(path=f.path, size_bytes=f.size_bytes, sha256=digests[f.path]) for f in files],
        source=source or f"local:{os.path.abspath(source_dir)}",
    )
    if on_total:
        on_total(manifest.total_size_bytes)

    mkey = manifest_key(model, revision)
    existing: Manifest | None = None
    if head(client, bucket, mkey) is not None:
        try:
            existing, _ = fetch_manifest(client, bucket, model, revision)
        except IntegrityError:
            if not replace:
                raise
        if existing is not None and existing.same_content(manifest):
            manifest = existing  # keep the original created_at: nothing new is being published
        elif not replace:
            raise UserError(
                f"--revision: {model}@{revision} already exists in s3://{bucket}/{prefix} with "
                "different files; revisions are immutable (nodes may be serving it). Upload "
                "under a new --revision, or pass --replace to overwrite it deliberately"
            )
        else:
            # Unpublish first: while files are replaced, the revision reads as incomplete.
            client.delete_object(Bucket=bucket, Key=mkey)
            existing = None

    to_send: list[LocalFile] = []
    skipped_bytes = 0
    for f in files:
        meta = head(client, bucket, object_key(model, revision, f.path))
        if (meta is not None and meta.get("ContentLength") == f.size_bytes
                and meta.get("Metadata", {}).get(SHA256_METADATA_KEY) == digests[f.path]):
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
                manager.upload(
                    f.abs_path, bucket, object_key(model, revision, f.path),
                    extra_args={"Metadata": {SHA256_METADATA_KEY: digests[f.path]}},
                    subscribers=[_Progress()],
                )
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

    written = existing is None
    if written:
        try:
            client.put_object(Bucket=bucket, Key=mkey, Body=manifest.to_json_bytes(),
                              ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            mapped = describe_s3_error(exc, bucket, mkey)
            if mapped:
                raise mapped from None
            raise
    return UploadResult(
        bucket=bucket,
        prefix=prefix,
        manifest_key=mkey,
        manifest_sha256=manifest.content_sha256,
        manifest_written=written,
        files=len(files),
        uploaded_files=len(to_send),
        skipped_files=len(files) - len(to_send),
        uploaded_bytes=sum(f.size_bytes for f in to_send),
        skipped_bytes=skipped_bytes,
        total_size_bytes=manifest.total_size_bytes,
        seconds=round(time.monotonic() - started, 3),
    )

