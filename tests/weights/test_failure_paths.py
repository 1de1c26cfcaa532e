"""Failure paths of the weights commands: a disk that fills mid-hydration (exit 4, JSON on
stdout, partial data kept and resumed), Ctrl-C anywhere (exit 130, a JSON summary, no
traceback), and bad input that used to raise (exit 2)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from weights_support import MIB, MODEL, REV

import infra.ops.weights.s3 as weights_s3
from infra.ops.weights.hydrate import LOCK_NAME, STATE_DIR, hydration_lock, read_marker
from tests.fs_faults import full_disk, read_only

ROOT = Path(__file__).resolve().parents[2]
BIG1 = "model-00001-of-00003.safetensors"  # the biggest file: fetched first, 4 ranges of 2 MiB


def _ids(bucket: str) -> list[str]:
    return ["--model", MODEL, "--revision", REV, "--bucket", bucket]


def test_a_disk_that_fills_mid_hydration_is_exit_4_with_json_and_the_run_resumes(cli, bucket, uploaded, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    dest.mkdir()
    hydrate = ("hydrate", *_ids(bucket), "--dest", str(dest), "--concurrency", "1", "--part-size-mib", "2", "--json")
    with monkeypatch.context() as patch:
        full_disk(patch, dest, 3 * MIB)  # room for BIG1's first range, not its second
        code, out, err = cli(*hydrate)
    assert code == 4
    report = json.loads(out)
    assert (report["ok"], report["exit_code"]) == (False, 4)
    assert "no space left on the device (ENOSPC)" in report["error"] and str(dest) in report["error"]
    assert err.startswith("error: cannot write ")
    assert report["partial"]["kept_partial_bytes"] == 2 * MIB
    assert read_marker(str(dest)) is None and not (dest / BIG1).exists()

    code, out, _ = cli(*hydrate)
    res = json.loads(out)
    assert code == 0 and res["resumed_bytes"] == 2 * MIB
    assert res["downloaded_bytes"] == sum(map(len, uploaded.values())) - 2 * MIB
    for rel, data in uploaded.items():
        assert (dest / rel).read_bytes() == data


def test_a_read_only_destination_is_exit_4(cli, bucket, uploaded, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    (dest / STATE_DIR).mkdir(parents=True)
    read_only(monkeypatch, dest)
    code, out, err = cli("hydrate", *_ids(bucket), "--dest", str(dest), "--json")
    assert code == 4 and "read-only filesystem (EROFS)" in json.loads(out)["error"]


def _interrupt_on(monkeypatch, operation: str, after: int) -> None:
    """The CLI's S3 client raises KeyboardInterrupt (what Ctrl-C raises) before sending its
    `after`+1-th `operation` request, wherever that request is made (main or worker thread)."""
    real = weights_s3.make_client

    def make_client(*args, **kwargs):
        client = real(*args, **kwargs)
        seen = []

        def before_send(event_name, **kw):
            if event_name.endswith(f".{operation}"):
                seen.append(1)
                if len(seen) > after:
                    raise KeyboardInterrupt
        client.meta.events.register("before-send.s3", before_send)
        return client
    monkeypatch.setattr(weights_s3, "make_client", make_client)


@pytest.mark.parametrize("command, operation, after", [
    ("hydrate", "GetObject", 2),  # the manifest, one file, then Ctrl-C
    ("verify", "HeadObject", 1),
    ("upload", "PutObject", 0),  # at the revision claim
    ("repair", "GetObject", 1),
])
def test_ctrl_c_anywhere_is_exit_130_with_a_json_summary(cli, bucket, uploaded, fake_model, tmp_path, monkeypatch,
                                                         command, operation, after):
    src, _ = fake_model
    argv = {"hydrate": ["hydrate", "--dest", str(tmp_path / "dest"), "--concurrency", "1"],
            "verify": ["verify"], "upload": ["upload", str(src)], "repair": ["repair", str(src)]}[command]
    _interrupt_on(monkeypatch, operation, after)
    code, out, err = cli(*argv, *_ids(bucket), "--json")
    assert code == 130 and err.strip() == "interrupted"
    summary = json.loads(out)
    assert (summary["command"], summary["ok"], summary["exit_code"]) == (command, False, 130)
    if command == "hydrate":
        assert summary["partial"]["downloaded_files"] == 1 and "re-run" in summary["partial"]["resume"]
        assert read_marker(str(tmp_path / "dest")) is None


def open_files(pid: int) -> set[str]:
    """The paths a process holds open (none once it has exited); an fd closed while we list them is skipped."""
    paths: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return paths
    for fd in fds:
        try:
            paths.add(os.path.realpath(os.readlink(f"/proc/{pid}/fd/{fd}")))
        except FileNotFoundError:
            continue
    return paths


def test_a_real_sigint_while_waiting_for_the_lock_is_exit_130_with_json(s3_endpoint, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    code = ("import sys, infra.cli as c; c.COMMAND_MODULES = ('infra.cli.weights',); "
            "sys.exit(c.main(sys.argv[1:]))")
    with hydration_lock(str(dest)):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "weights", "hydrate", *_ids(bucket), "--endpoint-url", s3_endpoint,
             "--region", "us-east-1", "--dest", str(dest), "--lock-timeout-s", "60", "--json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        lock = os.path.realpath(dest / STATE_DIR / LOCK_NAME)
        deadline = time.monotonic() + 60
        # The child opens the lock file only once it is inside the lock's wait loop.
        while lock not in open_files(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.strip() == "interrupted"
    assert json.loads(out) == {"command": "hydrate", "ok": False, "exit_code": 130, "error": "interrupted (Ctrl-C)",
                               "partial": {"downloaded_files": 0, "downloaded_bytes": 0, "get_requests": 0,
                                           "kept_partial_bytes": 0, "resume": json.loads(out)["partial"]["resume"]}}


@pytest.mark.parametrize("url", ["notaurl", "http://[::1"])
def test_a_bad_endpoint_url_is_exit_2_naming_the_flag(cli, bucket, capsys, url):
    with pytest.raises(SystemExit) as exc:  # argparse: infra.cli.argtypes.endpoint_url
        cli("verify", *_ids(bucket), "--endpoint-url", url, endpoint=False)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --endpoint-url: {url!r} is not" in err and "Traceback" not in err


def test_make_client_refuses_what_botocore_cannot_parse():
    from infra.core.errors import InputError

    with pytest.raises(InputError, match="--endpoint-url: 'notaurl' is not allowed"):
        weights_s3.make_client("notaurl")


@pytest.mark.parametrize("argv, needle", [
    (["verify", "--model", MODEL + "\n"], "--model: 'acme/fake-llm\\n' is not allowed"),
    (["verify", "--revision", REV + "\n"], "--revision: 'r1\\n' is not allowed"),
    (["hydrate", "--revision", REV + "\n", "--dest", "DEST"], "--revision: 'r1\\n' is not allowed"),
])
def test_a_name_with_a_trailing_newline_is_exit_2(cli, bucket, tmp_path, argv, needle):
    ids = {"--model": MODEL, "--revision": REV}
    rest = [a.replace("DEST", str(tmp_path / "d")) for a in argv]
    for flag in ids:
        if flag not in rest:
            rest += [flag, ids[flag]]
    code, out, err = cli(*rest, "--bucket", bucket, "--json")
    assert code == 2 and needle in err
    assert json.loads(out)["exit_code"] == 2
    assert not (tmp_path / "d").exists()


def test_json_to_a_file_keeps_the_human_output_on_stdout(cli, bucket, uploaded, tmp_path):
    report = tmp_path / "verify.json"
    code, out, _ = cli("verify", *_ids(bucket), "--json", str(report))
    assert code == 0 and out.startswith(f"ok: {len(uploaded)} files")
    assert json.loads(report.read_text())["ok"] is True
