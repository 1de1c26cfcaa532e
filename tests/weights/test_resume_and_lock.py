"""Interrupted hydrations resume without re-fetching verified bytes; one hydration per dest."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from weights_support import MODEL, REV, TEST_PART_SIZE_BYTES, UPLOAD_PART_SIZE_BYTES, Interrupted, range_bytes

from infra.core.errors import IntegrityError, LockedError, NotFoundError
from infra.ops.weights.hydrate import (
    LOCK_NAME, MARKER_NAME, PARTS_DIR, STATE_DIR, hydrate_model, hydration_lock, read_marker,
    wait_for_marker,
)
from infra.core.weights_layout import manifest_key
from infra.ops.weights.upload import upload_model

ROOT = Path(__file__).resolve().parents[2]
BIG1, BIG2 = "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors"


def _hydrate(s3, bucket, dest, **kw):
    kw.setdefault("concurrency", 4)
    return hydrate_model(s3, bucket, MODEL, REV, str(dest),
                         part_size_bytes=TEST_PART_SIZE_BYTES, **kw)


def _file_gets(request_log) -> list[tuple[str, str | None]]:
    return [g for g in request_log.gets() if g[0] != manifest_key(MODEL, REV)]


def _rel(key: str) -> str:
    return key.split(f"/{REV}/", 1)[1]


def _interrupt_mid_way(s3, bucket, dest, request_log, contents) -> list[tuple[str, str | None]]:
    """Crash a one-stream hydration after BIG1 (4 ranges) and 2 of BIG2's 3 ranges."""
    n_big1 = -(-len(contents[BIG1]) // TEST_PART_SIZE_BYTES)
    request_log.fail_after_gets = 1 + n_big1 + 2  # the manifest, then biggest file first
    with pytest.raises(Interrupted):
        _hydrate(s3, bucket, dest, concurrency=1)
    request_log.fail_after_gets = None
    first = _file_gets(request_log)
    assert {_rel(k) for k, _ in first} == {BIG1, BIG2}
    assert (dest / BIG1).read_bytes() == contents[BIG1]  # finished, under its final name
    assert not (dest / BIG2).exists() and read_marker(str(dest)) is None
    request_log.clear()
    return first


def test_interrupted_hydration_resumes_without_refetching(s3, bucket, uploaded, tmp_path, request_log):
    contents = uploaded
    dest = tmp_path / "dest"
    first = _interrupt_mid_way(s3, bucket, dest, request_log, contents)

    res = _hydrate(s3, bucket, dest)
    second = _file_gets(request_log)
    # Nothing fetched twice: the two runs' requests are disjoint and together cover every
    # byte of the model exactly once.
    assert set(first).isdisjoint(second)
    assert BIG1 not in {_rel(k) for k, _ in second}
    total = sum(len(d) for d in contents.values())
    fetched = sum(range_bytes(r, len(contents[_rel(k)])) for k, r in first + second)
    assert fetched == total
    assert res.downloaded_bytes == sum(range_bytes(r, len(contents[_rel(k)])) for k, r in second)
    assert res.resumed_bytes == 2 * TEST_PART_SIZE_BYTES  # BIG2's two finished ranges
    assert (res.skipped_files, res.skipped_bytes) == (1, len(contents[BIG1]))
    for rel, data in contents.items():
        assert (dest / rel).read_bytes() == data
    assert read_marker(str(dest))["manifest_sha256"] == res.manifest_sha256


def test_a_damaged_partial_file_is_detected_and_fetched_afresh(s3, bucket, uploaded, tmp_path, request_log):
    contents = uploaded
    dest = tmp_path / "dest"
    _interrupt_mid_way(s3, bucket, dest, request_log, contents)
    # Power loss can leave a range recorded as written whose bytes never reached the disk.
    started = [r for r in (dest / STATE_DIR / PARTS_DIR).glob("*.ranges")
               if len(r.read_text().splitlines()) > 1]  # header + finished range indices
    assert len(started) == 1
    with open(started[0].with_suffix(".part"), "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 64)
    res = _hydrate(s3, bucket, dest)
    big2_ranges = [r for k, r in _file_gets(request_log) if _rel(k) == BIG2]
    assert len(big2_ranges) == 3 + 1  # the one missing range, then all three again
    assert (dest / BIG2).read_bytes() == contents[BIG2]
    assert res.downloaded_files == len(contents) - 1


def test_a_verified_file_altered_on_disk_is_rehashed_not_trusted(s3, bucket, uploaded, tmp_path, request_log):
    contents = uploaded
    dest = tmp_path / "dest"
    _interrupt_mid_way(s3, bucket, dest, request_log, contents)
    with open(dest / BIG1, "r+b") as fh:  # changes mtime, so the verified record no longer applies
        fh.seek(5)
        fh.write(b"\xff\xfe")
    _hydrate(s3, bucket, dest)
    assert BIG1 in {_rel(k) for k, _ in _file_gets(request_log)}
    assert (dest / BIG1).read_bytes() == contents[BIG1]


def test_two_concurrent_hydrations_download_once(s3, bucket, uploaded, tmp_path, request_log):
    dest = tmp_path / "dest"
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(_hydrate(s3, bucket, dest, concurrency=2))
        except Exception as exc:  # surfaced by the asserts below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    total = sum(len(d) for d in uploaded.values())
    assert sorted(r.already_hydrated for r in results) == [False, True]
    assert sorted(r.downloaded_bytes for r in results) == [0, total]
    # Each (key, range) was fetched once across both hydrations.
    gets = _file_gets(request_log)
    assert len(gets) == len(set(gets))
    for rel, data in uploaded.items():
        assert (dest / rel).read_bytes() == data


def _cli_hydrate(s3_endpoint: str, bucket: str, dest: Path, *extra: str) -> subprocess.Popen:
    code = ("import sys, infra.cli as c; c.COMMAND_MODULES = ('infra.cli.weights',); "
            "sys.exit(c.main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "weights", "hydrate", "--model", MODEL, "--revision", REV,
            "--bucket", bucket, "--endpoint-url", s3_endpoint, "--region", "us-east-1",
            "--dest", str(dest), "--part-size-mib", "4", "--json", *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_two_concurrent_hydration_processes_download_once(s3_endpoint, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    procs = [_cli_hydrate(s3_endpoint, bucket, dest) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    payloads = [json.loads(out) for out, _ in outs]
    total = sum(len(d) for d in uploaded.values())
    assert sorted(p["downloaded_bytes"] for p in payloads) == [0, total]
    assert sorted(p["already_hydrated"] for p in payloads) == [False, True]
    for rel, data in uploaded.items():
        assert (dest / rel).read_bytes() == data


def test_fail_fast_when_locked(s3, bucket, uploaded, tmp_path, request_log):
    dest = tmp_path / "dest"
    with hydration_lock(str(dest)):
        with pytest.raises(LockedError, match=rf"pid {os.getpid()} .*--no-wait") as err:
            _hydrate(s3, bucket, dest, wait_for_lock=False)
        assert err.value.exit_code == 7
        started = time.monotonic()
        with pytest.raises(LockedError, match=r"waited \d+\.\ds \(--lock-timeout-s 0\.3\)"):
            _hydrate(s3, bucket, dest, lock_timeout_s=0.3)
        assert time.monotonic() - started >= 0.3
    assert _file_gets(request_log) == [] and read_marker(str(dest)) is None


def test_waits_for_the_lock_then_proceeds(s3, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    held = threading.Event()

    def hold():
        with hydration_lock(str(dest)):
            held.set()
            time.sleep(1.5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    res = _hydrate(s3, bucket, dest, lock_timeout_s=30)
    t.join()
    assert res.lock_wait_seconds >= 0.5 and not res.already_hydrated


def test_a_killed_holder_does_not_leave_a_stale_lock(s3, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    (dest / STATE_DIR).mkdir(parents=True)
    lock_path = dest / STATE_DIR / LOCK_NAME
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; "
         f"fd = os.open({str(lock_path)!r}, os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError):
            _hydrate(s3, bucket, dest, wait_for_lock=False)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    res = _hydrate(s3, bucket, dest, wait_for_lock=False)
    assert not res.already_hydrated and read_marker(str(dest)) is not None


def test_wait_for_marker_returns_once_hydration_finishes(s3, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    seen = {}
    waiter = threading.Thread(target=lambda: seen.update(
        wait_for_marker(str(dest), MODEL, REV, timeout_s=30, poll_s=0.05)))
    waiter.start()
    time.sleep(0.2)
    assert seen == {}
    res = _hydrate(s3, bucket, dest)
    waiter.join(30)
    assert seen["manifest_sha256"] == res.manifest_sha256


def test_wait_for_marker_times_out_and_refuses_a_foreign_marker(tmp_path):
    started = time.monotonic()
    with pytest.raises(NotFoundError, match="no hydration marker") as err:
        wait_for_marker(str(tmp_path), MODEL, REV, timeout_s=0.3, poll_s=0.05)
    assert err.value.exit_code == 4 and time.monotonic() - started >= 0.3
    (tmp_path / MARKER_NAME).write_text(json.dumps({"model": "other/model", "revision": REV}))
    with pytest.raises(IntegrityError, match="other/model@r1, not acme/fake-llm@r1"):
        wait_for_marker(str(tmp_path), MODEL, REV, timeout_s=0)


def test_insufficient_space_is_reported_before_downloading(s3, bucket, uploaded, tmp_path, request_log, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    from infra.core.errors import PreflightError
    with pytest.raises(PreflightError, match="not enough free space"):
        _hydrate(s3, bucket, tmp_path / "dest")
    assert _file_gets(request_log) == []


def test_identical_files_at_two_paths_do_not_share_a_temp_file(s3, bucket, tmp_path):
    # Ranged downloads of two files with the same sha256 run side by side; if their temp files
    # collided, the parts would interleave and one rename would find its .part gone.
    src = tmp_path / "src"
    data = os.urandom(5 * 1024 * 1024 + 1)  # three ranged parts each
    for rel in ("a/shard.bin", "b/shard.bin"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    upload_model(s3, bucket, str(src), MODEL, REV, part_size_bytes=UPLOAD_PART_SIZE_BYTES)
    dest = tmp_path / "dest"
    res = _hydrate(s3, bucket, dest, concurrency=6)
    assert res.downloaded_files == 2
    assert (dest / "a/shard.bin").read_bytes() == data == (dest / "b/shard.bin").read_bytes()
