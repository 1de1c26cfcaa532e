"""Hydrate a model revision from S3 onto local disk: parallel, verified, atomic, resumable.

Destination layout (everything of ours starts with `.llm-fleet`, which manifests may not use):

    <dest>/<manifest files...>              final names: only ever complete, verified files
    <dest>/.llm-fleet-hydrated.json         marker: written last, only when all files verified
    <dest>/.llm-fleet/lock                  flock()ed by the one hydration allowed at a time
    <dest>/.llm-fleet/verified.jsonl        files verified so far (size, mtime, inode, sha256)
    <dest>/.llm-fleet/parts/<id>.part       downloads in progress (same filesystem: rename is atomic)
    <dest>/.llm-fleet/parts/<id>.ranges     which ranges of a large .part are already written

Invariants: a file appears under its final name only after its sha256 matched the manifest;
the marker exists only while every file is in place; a re-run trusts a file without reading it
only while its size, mtime, ctime and inode are still what `verified.jsonl` recorded when it was
verified (anything else is re-hashed, and fetched again if it differs), and resumes large
downloads range by range. `wait` applies the same rule before it reports a destination ready.
A full disk mid-way is exit 4 with the finished ranges kept for the next run.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import stat
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from infra.core.errors import InputError, PreflightError
from infra.core.files import fsync_dir, storage_error, write_all
from infra.core.errors import IntegrityError, LockedError, NotFoundError
from infra.core.weights_layout import MARKER_NAME, Manifest, ManifestFile, object_key, safe_join
from infra.ops.weights.localfs import CHUNK_BYTES, FILE_MODE, atomic_write_bytes, sha256_file, write_small
from infra.ops.weights.s3 import describe_s3_error, fetch_manifest, is_not_found
from infra.ops.weights.upload import check_concurrency

MIB = 1024 * 1024
STATE_DIR = ".llm-fleet"
LOCK_NAME = "lock"
VERIFIED_LOG = "verified.jsonl"
PARTS_DIR = "parts"
# 2: the marker carries the sha256 of the verified-files log it was written with, so `wait` can
# check every file against what was verified without the manifest.
MARKER_SCHEMA_VERSION = 2
# What a verified record pins about a file: any change means it must be hashed again.
STAT_FIELDS = ("size_bytes", "mtime_ns", "ctime_ns", "ino")
MIN_PART_SIZE_BYTES = 1 * MIB
_TRANSIENT_ATTEMPTS = 3


@dataclass
class HydrateResult:
    dest: str
    bucket: str
    model: str
    revision: str
    manifest_key: str
    manifest_sha256: str
    already_hydrated: bool
    files: int
    downloaded_files: int
    skipped_files: int  # not downloaded: trusted_files + rehashed_files
    trusted_files: int  # unchanged since an earlier run verified them (stat as recorded; not re-read)
    rehashed_files: int  # read and hashed by this run (no record, or it changed), and matched
    total_size_bytes: int
    downloaded_bytes: int  # received from S3 by this run
    resumed_bytes: int  # ranges of interrupted downloads reused from disk
    skipped_bytes: int  # files already verified on disk
    get_requests: int  # GetObject calls made for files (the manifest's GET not counted)
    lock_wait_seconds: float
    seconds: float
    marker_path: str = ""

    def to_dict(self) -> dict:
        return {"command": "hydrate", "ok": True, **asdict(self)}


def marker_path(dest: str) -> str:
    return os.path.join(dest, MARKER_NAME)


def read_marker(dest: str) -> dict | None:
    """The marker's content, or None if absent or unreadable (a torn marker is no marker)."""
    try:
        with open(marker_path(dest), "rb") as fh:
            data = json.loads(fh.read())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _state(dest: str, *names: str) -> str:
    return os.path.join(dest, STATE_DIR, *names)


@contextmanager
def hydration_lock(dest: str, *, wait_for_lock: bool = True, timeout_s: float = 3600.0,
                   poll_s: float = 0.2) -> Iterator[float]:
    """Hold an exclusive flock on `<dest>/.llm-fleet/lock`; yields the seconds spent waiting.

    flock is released by the kernel when the process dies, so a killed hydration never leaves
    a stale lock. The lock file itself is never deleted (deleting it would let two processes
    lock two different inodes).
    """
    os.makedirs(_state(dest), exist_ok=True)
    fd = os.open(_state(dest, LOCK_NAME), os.O_RDWR | os.O_CREAT, FILE_MODE)
    started = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                waited = time.monotonic() - started
                if not wait_for_lock or waited >= timeout_s:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    how = ("--no-wait was given" if not wait_for_lock
                           else f"waited {waited:.1f}s (--lock-timeout-s {timeout_s:g})")
                    raise LockedError(
                        f"{dest} is being hydrated by another process ({holder}); {how}"
                    ) from None
                time.sleep(min(poll_s, max(timeout_s - waited, 0.01)))
        # Who holds it, for the message a waiting process prints; informational only.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield time.monotonic() - started
    finally:
        os.close(fd)  # releases the flock


# ----- the verified-files log ---------------------------------------------------------------

def _load_verified(dest: str) -> dict[str, dict]:
    """path -> {size_bytes, sha256, mtime_ns, ino}; later lines win; a torn last line is ignored."""
    records: dict[str, dict] = {}
    try:
        with open(_state(dest, VERIFIED_LOG), "rb") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    records[rec["path"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                    continue
    except FileNotFoundError:
        pass
    return records


def _stat_fields(path: str) -> dict:
    st = os.lstat(path)  # a symlink put in a file's place is a change, never followed
    if not stat.S_ISREG(st.st_mode):
        return {"size_bytes": None, "mtime_ns": None, "ctime_ns": None, "ino": None}
    return {"size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def changed_since_verified(rec: dict, path: str) -> list[str]:
    """Which of size, mtime, ctime and inode differ from the record (["missing"]: no file).
    A same-size rewrite within one filesystem timestamp tick of the verification is invisible
    to this; `hydrate --reverify` re-hashes everything."""
    try:
        now = _stat_fields(path)
    except (FileNotFoundError, NotADirectoryError):
        return ["missing"]
    return [name for name in STAT_FIELDS if rec.get(name) is None or rec.get(name) != now[name]]


def _record_matches(rec: dict | None, final: str, entry: ManifestFile) -> bool:
    return bool(rec) and rec.get("sha256") == entry.sha256 and rec.get("size_bytes") == entry.size_bytes \
        and not changed_since_verified(rec, final)


# ----- download jobs ------------------------------------------------------------------------

class _Cancelled(Exception):
    """Another unit failed; this one stopped early."""


class _RetryFresh(Exception):
    """A resumed .part failed its checksum: its old ranges are suspect, download it afresh."""

    def __init__(self, job: "_FileJob") -> None:
        super().__init__(job.entry.path)
        self.job = job


@dataclass(eq=False)
class _FileJob:
    entry: ManifestFile
    key: str
    final_path: str
    tmp_path: str
    ranges_path: str
    parts: list[tuple[int, int]]  # inclusive byte ranges; empty for a single-stream file
    done: set[int] = field(default_factory=set)
    published: bool = False
    resumed: bool = False
    retried: bool = False
    fd: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ranged(self) -> bool:
        return bool(self.parts)

    def todo(self) -> list[int]:
        return [i for i in range(len(self.parts)) if i not in self.done] if self.ranged else [0]


class _Hydration:
    """One run's shared state: client, counters, the stop flag, the verified log."""

    def __init__(self, client: Any, bucket: str, dest: str, on_bytes: Callable[[int], None] | None):
        self.client, self.bucket, self.dest = client, bucket, dest
        self.on_bytes = on_bytes
        self.stop = threading.Event()
        self.counter_lock = threading.Lock()
        self.downloaded_bytes = 0
        self.get_requests = 0
        self.downloaded_files = 0
        self.verified_log = _state(dest, VERIFIED_LOG)

    def _count(self, n_bytes: int = 0, requests: int = 0) -> None:
        with self.counter_lock:
            self.downloaded_bytes += n_bytes
            self.get_requests += requests
        if n_bytes and self.on_bytes:
            self.on_bytes(n_bytes)

    def record_verified(self, entry: ManifestFile, fields: dict) -> None:
        """Append that `entry` was verified while its file had these stat fields."""
        line = json.dumps({"path": entry.path, "sha256": entry.sha256, **fields}, sort_keys=True) + "\n"
        with self.counter_lock:
            write_small(self.verified_log, line.encode(), append=True)

    # -- S3 reads --

    def _get(self, job: _FileJob, byte_range: str | None) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.bucket, "Key": job.key}
        if byte_range:
            kwargs["Range"] = byte_range
        self._count(requests=1)
        try:
            return self.client.get_object(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            if is_not_found(exc):
                raise IntegrityError(
                    f"object missing: s3://{self.bucket}/{job.key} is listed in the manifest "
                    "but does not exist"
                ) from None
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
                raise IntegrityError(
                    f"size mismatch: s3://{self.bucket}/{job.key} is shorter than the manifest's "
                    f"{job.entry.size_bytes} bytes"
                ) from None
            mapped = describe_s3_error(exc, self.bucket, job.key)
            if mapped:
                raise mapped from None
            raise

    def _stream(self, body: Any, sink: Callable[[bytes], None]) -> int:
        received = 0
        for chunk in body.iter_chunks(CHUNK_BYTES):
            if self.stop.is_set():
                body.close()
                raise _Cancelled()
            sink(chunk)
            received += len(chunk)
            self._count(n_bytes=len(chunk))
        return received

    def _transient(self, fn: Callable[[], None]) -> None:
        """Retry a unit on a dropped connection; botocore only retries before the body."""
        from botocore.exceptions import (
            ConnectionClosedError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError,
        )
        from urllib3.exceptions import ProtocolError

        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                return fn()
            except (ConnectionClosedError, IncompleteReadError, ReadTimeoutError,
                    ResponseStreamingError, ProtocolError, _ShortRead):
                if attempt == _TRANSIENT_ATTEMPTS or self.stop.is_set():
                    raise
                time.sleep(0.2 * attempt)

    # -- units --

    def run_unit(self, job: _FileJob, index: int) -> None:
        from botocore.exceptions import FlexibleChecksumError

        try:
            self._run_unit(job, index)
        except FlexibleChecksumError as exc:
            # botocore checked the object's stored CRC/SHA checksum while streaming it.
            raise IntegrityError(
                f"checksum mismatch: s3://{self.bucket}/{job.key} failed S3's transfer "
                f"checksum ({exc}); nothing was written under {job.final_path}"
            ) from None
        except OSError as exc:
            mapped = storage_error(exc, job.tmp_path if job.ranged else job.final_path, _RESUME_HINT)
            if mapped is None:
                raise
            raise mapped from None

    def finish_ranged(self, job: _FileJob) -> None:
        try:
            self._finish_ranged(job)
        except OSError as exc:
            mapped = storage_error(exc, job.final_path, _RESUME_HINT)
            if mapped is None:
                raise
            raise mapped from None

    def _run_unit(self, job: _FileJob, index: int) -> None:
        if self.stop.is_set():
            raise _Cancelled()
        if job.ranged:
            self._transient(lambda: self._range_unit(job, index))
            with job.lock:
                write_small(job.ranges_path, f"{index}\n".encode(), append=True)
                job.done.add(index)  # after the record: a range that is not recorded is fetched again
                finished = len(job.done) == len(job.parts)
            if finished:
                self._finish_ranged(job)
        else:
            self._transient(lambda: self._single_unit(job))

    def _single_unit(self, job: _FileJob) -> None:
        entry = job.entry
        response = self._get(job, None)
        if response.get("ContentLength") != entry.size_bytes:
            response["Body"].close()
            raise IntegrityError(
                f"size mismatch: s3://{self.bucket}/{job.key} has {response.get('ContentLength')} "
                f"bytes, the manifest says {entry.size_bytes}"
            )
        digest = hashlib.sha256()
        try:
            fd = os.open(job.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            try:
                def sink(chunk: bytes) -> None:
                    digest.update(chunk)  # verify while streaming: no second read
                    write_all(fd, chunk)
                received = self._stream(response["Body"], sink)
                if received != entry.size_bytes:
                    raise _ShortRead(received, entry.size_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink(job.tmp_path)
            raise
        self._publish(job, digest.hexdigest())

    def _range_unit(self, job: _FileJob, index: int) -> None:
        start, end = job.parts[index]
        response = self._get(job, f"bytes={start}-{end}")
        total = str(response.get("ContentRange", "")).rpartition("/")[2]
        if total != str(job.entry.size_bytes):
            response["Body"].close()
            raise IntegrityError(
                f"size mismatch: s3://{self.bucket}/{job.key} has {total or 'unknown'} bytes, "
                f"the manifest says {job.entry.size_bytes}"
            )
        offset = start
        assert job.fd is not None

        def sink(chunk: bytes) -> None:
            nonlocal offset
            view = memoryview(chunk)
            while view:
                written = os.pwrite(job.fd, view, offset)
                offset += written
                view = view[written:]
        received = self._stream(response["Body"], sink)
        if received != end - start + 1:
            raise _ShortRead(received, end - start + 1)

    def _finish_ranged(self, job: _FileJob) -> None:
        assert job.fd is not None
        os.fsync(job.fd)
        actual = _sha256_fd(job.fd, self.stop)
        if actual != job.entry.sha256 and job.resumed and not job.retried:
            raise _RetryFresh(job)
        self._publish(job, actual)

    def _publish(self, job: _FileJob, actual_sha256: str) -> None:
        """Rename the verified temp file to its final name, or discard it on a mismatch."""
        if job.fd is not None:
            os.close(job.fd)
            job.fd = None
        if actual_sha256 != job.entry.sha256:
            _unlink(job.tmp_path)
            _unlink(job.ranges_path)
            raise IntegrityError(
                f"checksum mismatch: s3://{self.bucket}/{job.key} has sha256 {actual_sha256}, "
                f"the manifest says {job.entry.sha256}; nothing was written under "
                f"{job.final_path}"
            )
        os.makedirs(os.path.dirname(job.final_path), exist_ok=True)
        os.replace(job.tmp_path, job.final_path)
        job.published = True
        _unlink(job.ranges_path)
        self.record_verified(job.entry, _stat_fields(job.final_path))
        with self.counter_lock:
            self.downloaded_files += 1

    def partial(self, jobs: list[_FileJob]) -> dict:
        """What a failed or interrupted run leaves for the next one (reported under --json)."""
        kept = sum(job.parts[i][1] - job.parts[i][0] + 1
                   for job in jobs if job.ranged and not job.published for i in set(job.done))
        return {"downloaded_files": self.downloaded_files, "downloaded_bytes": self.downloaded_bytes,
                "get_requests": self.get_requests, "kept_partial_bytes": kept, "resume": _RESUME_HINT}


_RESUME_HINT = ("verified files and finished ranges are kept: re-run the same command to resume "
                "(free disk space first if it is full)")


class _ShortRead(Exception):
    def __init__(self, received: int, expected: int) -> None:
        super().__init__(f"connection ended after {received} of {expected} bytes")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sha256_fd(fd: int, stop: threading.Event) -> str:
    digest = hashlib.sha256()
    offset = 0
    while True:
        if stop.is_set():
            raise _Cancelled()
        chunk = os.pread(fd, 8 * CHUNK_BYTES, offset)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)
        offset += len(chunk)


def _split(size_bytes: int, part_size_bytes: int) -> list[tuple[int, int]]:
    return [(start, min(start + part_size_bytes, size_bytes) - 1)
            for start in range(0, size_bytes, part_size_bytes)]


def _prepare_ranged(job: _FileJob, part_size_bytes: int) -> int:
    """Open the job's .part for positional writes; returns bytes reused from a previous run.

    The .ranges file starts with a header naming the size and part size, so parts recorded
    under a different split are never trusted.
    """
    header = f"size={job.entry.size_bytes} part={part_size_bytes} sha256={job.entry.sha256}"
    reused: set[int] = set()
    if os.path.exists(job.tmp_path) and os.path.exists(job.ranges_path):
        with open(job.ranges_path, encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
        if lines and lines[0] == header:
            for line in lines[1:]:
                if line.isdigit() and int(line) < len(job.parts):
                    reused.add(int(line))
    if not reused:
        _unlink(job.tmp_path)
        write_small(job.ranges_path, (header + "\n").encode())
    job.fd = os.open(job.tmp_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.ftruncate(job.fd, job.entry.size_bytes)  # sparse; parts land at their offsets
    job.done = reused
    job.resumed = bool(reused)
    return sum(job.parts[i][1] - job.parts[i][0] + 1 for i in reused)


def _reset_ranged(job: _FileJob, part_size_bytes: int) -> None:
    if job.fd is not None:
        os.close(job.fd)
        job.fd = None
    _unlink(job.tmp_path)
    _unlink(job.ranges_path)
    job.retried = True
    _prepare_ranged(job, part_size_bytes)


def _rehash(final: str, entry: ManifestFile) -> dict | None:
    """The stat fields of the file under its final name if hashing it shows it is the manifest's
    file (a local read beats a download) and it did not change while it was read; else None."""
    try:
        before = _stat_fields(final)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if before["size_bytes"] != entry.size_bytes or sha256_file(final) != entry.sha256:
        return None
    return before if _stat_fields(final) == before else None


def _check_dest(dest: str) -> str:
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as exc:
        raise InputError("--dest", dest, f"a directory this process can create ({exc.strerror})") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise InputError("--dest", dest, "a directory this process can write")
    return os.path.realpath(dest)


def hydrate_model(
    client: Any,
    bucket: str,
    model: str,
    revision: str,
    dest: str,
    *,
    concurrency: int = 8,
    part_size_bytes: int = 64 * MIB,
    wait_for_lock: bool = True,
    lock_timeout_s: float = 3600.0,
    reverify: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> HydrateResult:
    """Hydrate model@revision into `dest`. On any failure or Ctrl-C the exception carries
    `.partial` (what this run did and kept for the next one); a full disk or read-only
    filesystem is a StorageError (exit 4)."""
    started = time.monotonic()
    check_concurrency(concurrency)
    if not isinstance(part_size_bytes, int) or part_size_bytes < MIN_PART_SIZE_BYTES:
        raise InputError("--part-size-mib", part_size_bytes / MIB, "at least 1")
    if lock_timeout_s < 0:
        raise InputError("--lock-timeout-s", lock_timeout_s, "zero or more seconds")
    manifest, mkey = fetch_manifest(client, bucket, model, revision)
    dest = _check_dest(dest)
    if on_total:
        on_total(manifest.total_size_bytes)

    def result(**kw: Any) -> HydrateResult:
        base = dict(dest=dest, bucket=bucket, model=model, revision=revision, manifest_key=mkey,
                    manifest_sha256=manifest.content_sha256, files=len(manifest.files),
                    total_size_bytes=manifest.total_size_bytes, marker_path=marker_path(dest),
                    seconds=round(time.monotonic() - started, 3))
        return HydrateResult(**base, **kw)

    run = _Hydration(client, bucket, dest, on_bytes)
    jobs: list[_FileJob] = []
    try:
        with hydration_lock(dest, wait_for_lock=wait_for_lock, timeout_s=lock_timeout_s) as waited:
            return _hydrate_locked(run, jobs, manifest, mkey, model, revision, concurrency,
                                   part_size_bytes, reverify, round(waited, 3), result)
    except OSError as exc:
        mapped = storage_error(exc, exc.filename or dest, _RESUME_HINT)
        if mapped is None:
            raise
        mapped.partial = run.partial(jobs)
        raise mapped from None
    except BaseException as exc:  # user errors, Ctrl-C, bugs: the caller reports what was done
        with contextlib.suppress(AttributeError):
            exc.partial = run.partial(jobs)
        raise


def _hydrate_locked(run: _Hydration, jobs: list[_FileJob], manifest: Manifest, mkey: str, model: str,
                    revision: str, concurrency: int, part_size_bytes: int, reverify: bool,
                    waited: float, result: Callable[..., HydrateResult]) -> HydrateResult:
    dest = run.dest
    finals = {f.path: safe_join(dest, f.path) for f in manifest.files}  # refuses traversal
    verified = _load_verified(dest)
    trusted = set() if reverify else {
        f.path for f in manifest.files if _record_matches(verified.get(f.path), finals[f.path], f)}
    marker = read_marker(dest)
    if (marker and marker.get("schema_version") == MARKER_SCHEMA_VERSION
            and marker.get("manifest_sha256") == manifest.content_sha256
            and len(trusted) == len(manifest.files)):
        # Every file is as it was verified. Typically the second of two concurrent hydrations.
        if run.on_bytes:
            run.on_bytes(manifest.total_size_bytes)
        return result(already_hydrated=True, downloaded_files=0, skipped_files=len(manifest.files),
                      trusted_files=len(manifest.files), rehashed_files=0, downloaded_bytes=0,
                      resumed_bytes=0, skipped_bytes=manifest.total_size_bytes, get_requests=0,
                      lock_wait_seconds=waited)
    if marker is not None or os.path.lexists(marker_path(dest)):
        # From here until the end the destination is not complete: say so first.
        _unlink(marker_path(dest))
        fsync_dir(dest)

    unknown = [f for f in manifest.files if f.path not in trusted]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        hashed = list(pool.map(lambda f: _rehash(finals[f.path], f), unknown))
    rehashed = [(f, fields) for f, fields in zip(unknown, hashed) if fields is not None]
    to_fetch = [f for f, fields in zip(unknown, hashed) if fields is None]
    skipped_bytes = manifest.total_size_bytes - sum(f.size_bytes for f in to_fetch)
    for f, fields in rehashed:
        run.record_verified(f, fields)

    parts_dir = _state(dest, PARTS_DIR)
    os.makedirs(parts_dir, exist_ok=True)
    resumed_bytes = 0
    try:
        for entry in sorted(to_fetch, key=lambda f: -f.size_bytes):  # big first: better packing
            job_id = hashlib.sha256(f"{entry.path}\0{entry.sha256}".encode()).hexdigest()[:40]
            ranged = entry.size_bytes > part_size_bytes
            job = _FileJob(
                entry=entry, key=object_key(model, revision, entry.path),
                final_path=finals[entry.path],
                tmp_path=os.path.join(parts_dir, job_id + ".part"),
                ranges_path=os.path.join(parts_dir, job_id + ".ranges"),
                parts=_split(entry.size_bytes, part_size_bytes) if ranged else [],
            )
            if ranged:
                resumed_bytes += _prepare_ranged(job, part_size_bytes)
            jobs.append(job)
        _check_space(dest, manifest, to_fetch, resumed_bytes)
        if run.on_bytes and (skipped_bytes or resumed_bytes):
            run.on_bytes(skipped_bytes + resumed_bytes)
        _run_jobs(run, jobs, concurrency, part_size_bytes)
    finally:
        for job in jobs:
            if job.fd is not None:
                os.close(job.fd)
                job.fd = None

    for directory in sorted({os.path.dirname(p) for p in finals.values()}):
        fsync_dir(directory)  # the renames must be durable before the marker says so
    shutil.rmtree(parts_dir, ignore_errors=True)  # leftovers of other revisions/splits
    # Compact the append-only log to one line per manifest file, so it does not grow with every
    # re-run; the marker records its digest, which is how `wait` knows what was verified.
    records = _load_verified(dest)
    log = "".join(json.dumps(records[f.path], sort_keys=True) + "\n"
                  for f in manifest.files if f.path in records).encode()
    atomic_write_bytes(run.verified_log, log)
    atomic_write_bytes(marker_path(dest), json.dumps({
        "schema_version": MARKER_SCHEMA_VERSION,
        "model": model,
        "revision": revision,
        "bucket": run.bucket,
        "manifest_key": mkey,
        "manifest_sha256": manifest.content_sha256,
        "files": len(manifest.files),
        "total_size_bytes": manifest.total_size_bytes,
        "verified_log_sha256": hashlib.sha256(log).hexdigest(),
        "hydrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2, sort_keys=True).encode() + b"\n")
    return result(already_hydrated=False, downloaded_files=run.downloaded_files,
                  skipped_files=len(manifest.files) - len(to_fetch), trusted_files=len(trusted),
                  rehashed_files=len(rehashed), downloaded_bytes=run.downloaded_bytes,
                  resumed_bytes=resumed_bytes, skipped_bytes=skipped_bytes,
                  get_requests=run.get_requests, lock_wait_seconds=waited)


def _check_space(dest: str, manifest: Manifest, to_fetch: list[ManifestFile],
                 resumed_bytes: int) -> None:
    # .part files are preallocated sparse, so count what is still to arrive, plus 1% slack.
    needed = sum(f.size_bytes for f in to_fetch) - resumed_bytes
    free = shutil.disk_usage(dest).free
    if needed > 0 and free < needed * 1.01:
        raise PreflightError(
            f"not enough free space in {dest}: {needed / 2**30:.2f} GiB still to download, "
            f"{free / 2**30:.2f} GiB free (model total {manifest.total_size_bytes / 2**30:.2f} GiB)"
        )


def _run_jobs(run: _Hydration, jobs: list[_FileJob], concurrency: int, part_size_bytes: int) -> None:
    """Run every job's units on `concurrency` threads; stop everything at the first failure."""
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="hydrate") as pool:
        pending: set[Future] = set()

        def submit(job: _FileJob) -> None:
            for index in job.todo():
                pending.add(pool.submit(run.run_unit, job, index))

        try:
            for job in jobs:
                if job.ranged and not job.todo():
                    # Every range survived the interruption: only the hash and rename remain.
                    pending.add(pool.submit(run.finish_ranged, job))
                else:
                    submit(job)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    exc = fut.exception()
                    if isinstance(exc, _RetryFresh):
                        _reset_ranged(exc.job, part_size_bytes)
                        submit(exc.job)
                    elif exc is not None and not isinstance(exc, _Cancelled):
                        raise exc
        except BaseException:
            run.stop.set()
            for fut in pending:
                fut.cancel()
            raise


def marker_problem(dest: str, marker: dict) -> str | None:
    """Why `marker` does not (or no longer) vouch for `dest`, or None when every file it covers
    is unchanged since it was verified: the hydrate fast path's rule, without the manifest."""
    if marker.get("schema_version") != MARKER_SCHEMA_VERSION or not marker.get("verified_log_sha256"):
        return "it was written by an older hydrator that did not record what it verified"
    try:
        with open(_state(dest, VERIFIED_LOG), "rb") as fh:
            log = fh.read()
    except FileNotFoundError:
        return f"its verified-files log {_state(dest, VERIFIED_LOG)} is missing"
    if hashlib.sha256(log).hexdigest() != marker["verified_log_sha256"]:
        return f"its verified-files log {_state(dest, VERIFIED_LOG)} changed after the marker was written"
    try:
        records = [json.loads(line) for line in log.splitlines()]
        paths = {rec["path"]: safe_join(dest, rec["path"]) for rec in records}
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, IntegrityError) as exc:
        return f"its verified-files log is unreadable ({exc.__class__.__name__})"
    if len(paths) != marker.get("files"):
        return f"its verified-files log lists {len(paths)} files, the marker {marker.get('files')}"
    for rec in records:
        changed = changed_since_verified(rec, paths[rec["path"]])
        if changed:
            return f"{rec['path']} changed since it was verified ({', '.join(changed)})"
    return None


def wait_for_marker(dest: str, model: str, revision: str, *, timeout_s: float = 3600.0,
                    poll_s: float = 2.0) -> dict:
    """Block until `dest` holds a hydration marker for model@revision whose files are unchanged
    since they were verified; returns the marker.

    This is what a vLLM pod's init container runs, so it checks the same marker file the
    hydrator writes (one constant, MARKER_NAME), and the same stat rule as the hydrator's fast
    path. A marker whose files changed while it stayed in place is an integrity failure (exit
    6): nothing will fix it but another `hydrate`. A marker that an older hydrator wrote is
    waited out (the hydrator's next run rewrites it).
    """
    if timeout_s < 0:
        raise InputError("--timeout-s", timeout_s, "zero or more seconds")
    deadline = time.monotonic() + timeout_s
    why_not = "no hydration marker"
    while True:
        marker = read_marker(dest)
        if marker is not None:
            if (marker.get("model"), marker.get("revision")) != (model, revision):
                raise IntegrityError(
                    f"{marker_path(dest)} is for {marker.get('model')}@{marker.get('revision')}, "
                    f"not {model}@{revision}: the destination is shared by two models"
                )
            problem = marker_problem(dest, marker)
            if problem is None:
                return marker
            why_not = f"a marker that cannot be trusted ({problem})"
            if marker.get("schema_version") == MARKER_SCHEMA_VERSION and read_marker(dest) == marker:
                # Still the same marker after the change was seen, so no hydration is at work
                # (a hydration deletes the marker before it touches a file).
                raise IntegrityError(
                    f"{marker_path(dest)} says ready, but {problem}: the files are not what was "
                    "verified. Re-run `weights hydrate` (it re-hashes changed files and fetches "
                    "what differs; --reverify re-hashes every file)"
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotFoundError(
                f"{why_not} at {marker_path(dest)} after {timeout_s:g}s: is the "
                "hydrator running on this node? (kubectl logs of the weights DaemonSet pod)"
            )
        time.sleep(min(poll_s, remaining))
