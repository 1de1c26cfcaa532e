"""Honest local verification: a file is trusted without reading it only while its size, mtime,
ctime and inode are what verified.jsonl recorded; `hydrate` and `wait` apply the same rule, and
nothing reports a file as verified that no run checked."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from weights_support import MODEL, REV

from infra.ops.weights.hydrate import MARKER_NAME, STATE_DIR, VERIFIED_LOG, read_marker

VICTIM = "model-00003-of-00003.safetensors"


def _ids(bucket: str) -> list[str]:
    return ["--model", MODEL, "--revision", REV, "--bucket", bucket]


def _dd_one_byte(path, offset: int = 100) -> None:
    """What `dd conv=notrunc` does to one byte: same size, other content. Repeats until the
    filesystem's timestamps moved (a write inside the same timestamp tick as the verification
    is invisible to any stat rule; that is what --reverify is for)."""
    before = os.stat(path)
    for _ in range(100):
        with open(path, "r+b") as fh:
            fh.seek(offset)
            old = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([old[0] ^ 0xFF]))
        now = os.stat(path)
        if (now.st_mtime_ns, now.st_ctime_ns) != (before.st_mtime_ns, before.st_ctime_ns):
            assert now.st_size == before.st_size
            return
        time.sleep(0.005)
        with open(path, "r+b") as fh:  # undo, then try again on the next tick
            fh.seek(offset)
            fh.write(old)
    raise AssertionError("the filesystem's timestamps never moved")


@pytest.fixture
def hydrated(cli, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    code, _, _ = cli("hydrate", *_ids(bucket), "--dest", str(dest), "--json", "--part-size-mib", "2")
    assert code == 0
    return dest


def test_a_same_size_change_is_rehashed_and_fetched_again_not_reported_verified(cli, bucket, uploaded, hydrated):
    _dd_one_byte(hydrated / VICTIM)
    code, out, _ = cli("hydrate", *_ids(bucket), "--dest", str(hydrated), "--part-size-mib", "2")
    assert code == 0 and not out.startswith("already hydrated")
    assert "1 files downloaded and verified" in out
    assert f"{len(uploaded) - 1} unchanged since an earlier run verified them" in out
    assert (hydrated / VICTIM).read_bytes() == uploaded[VICTIM]
    code, out, _ = cli("hydrate", *_ids(bucket), "--dest", str(hydrated), "--json")
    again = json.loads(out)
    assert (again["already_hydrated"], again["trusted_files"], again["downloaded_files"]) == (True, len(uploaded), 0)


def test_wait_refuses_a_marker_whose_files_changed(cli, hydrated):
    wait = ("wait", "--model", MODEL, "--revision", REV, "--dest", str(hydrated), "--timeout-s", "0")
    assert cli(*wait)[0] == 0
    _dd_one_byte(hydrated / VICTIM)
    code, out, err = cli(*wait, "--json")
    assert code == 6 and f"{VICTIM} changed since it was verified" in err and "Re-run `weights hydrate`" in err
    assert json.loads(out)["exit_code"] == 6


def test_a_file_replaced_by_identical_bytes_is_rehashed_not_fetched(cli, bucket, uploaded, hydrated):
    victim = hydrated / VICTIM
    copy = hydrated / "copy.tmp"
    shutil.copyfile(victim, copy)
    os.replace(copy, victim)  # same bytes, another inode
    code, out, _ = cli("hydrate", *_ids(bucket), "--dest", str(hydrated), "--json")
    res = json.loads(out)
    assert code == 0 and (res["rehashed_files"], res["downloaded_files"], res["already_hydrated"]) == (1, 0, False)
    assert cli("wait", "--model", MODEL, "--revision", REV, "--dest", str(hydrated), "--timeout-s", "0")[0] == 0


def test_a_marker_from_an_older_hydrator_is_not_trusted_and_gets_rewritten(cli, bucket, uploaded, hydrated):
    marker = read_marker(str(hydrated))
    old = {k: v for k, v in marker.items() if k != "verified_log_sha256"} | {"schema_version": 1}
    (hydrated / MARKER_NAME).write_text(json.dumps(old))
    code, _, err = cli("wait", "--model", MODEL, "--revision", REV, "--dest", str(hydrated),
                       "--timeout-s", "0.1", "--poll-interval-s", "0.05")
    assert code == 4 and "older hydrator" in err
    code, out, _ = cli("hydrate", *_ids(bucket), "--dest", str(hydrated), "--json")
    res = json.loads(out)
    assert code == 0 and not res["already_hydrated"] and res["downloaded_files"] == 0
    assert read_marker(str(hydrated))["schema_version"] == 2


def test_a_verified_log_edited_behind_the_marker_is_not_trusted_by_wait(cli, hydrated):
    log = hydrated / STATE_DIR / VERIFIED_LOG
    records = [json.loads(line) for line in log.read_text().splitlines()]
    _dd_one_byte(hydrated / VICTIM)
    # Someone "fixes" the record to match the changed file: the marker's digest of the log catches it.
    st = os.stat(hydrated / VICTIM)
    for rec in records:
        if rec["path"] == VICTIM:
            rec.update(mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
    log.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    code, _, err = cli("wait", "--model", MODEL, "--revision", REV, "--dest", str(hydrated), "--timeout-s", "0")
    assert code == 6 and "verified-files log" in err
