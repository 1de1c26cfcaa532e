"""`python -m infra weights ...`: JSON output, documented exit codes, no tracebacks."""
from __future__ import annotations

import io
import json

import pytest
from weights_support import MODEL, REV

import infra.cli
from infra.core.errors import exit_code_table
from infra.ops.weights.hydrate import hydration_lock
from infra.core.weights_layout import BUCKET_ENV, manifest_key, object_key
from infra.ops.weights.progress import ProgressBar


def _ids(bucket: str) -> list[str]:
    return ["--model", MODEL, "--revision", REV, "--bucket", bucket]


def test_upload_verify_hydrate_wait_json(cli, bucket, fake_model, tmp_path):
    src, contents = fake_model
    total = sum(map(len, contents.values()))
    code, out, err = cli("upload", str(src), *_ids(bucket), "--json", "--part-size-mib", "8")
    assert code == 0 and err == ""
    up = json.loads(out)
    assert (up["command"], up["ok"], up["uploaded_files"], up["total_size_bytes"]) == (
        "upload", True, len(contents), total)
    assert up["manifest_key"] == manifest_key(MODEL, REV)

    code, out, _ = cli("verify", *_ids(bucket), "--json", "--deep")
    ver = json.loads(out)
    assert code == 0 and ver["ok"] and ver["problems"] == [] and ver["checked_bytes"] == total

    dest = tmp_path / "dest"
    code, out, err = cli("hydrate", *_ids(bucket), "--dest", str(dest), "--json",
                         "--concurrency", "3", "--part-size-mib", "4")
    assert code == 0 and err == ""  # --json: no progress bar
    hy = json.loads(out)
    assert (hy["command"], hy["ok"], hy["downloaded_bytes"], hy["files"]) == ("hydrate", True, total, len(contents))
    assert hy["manifest_sha256"] == up["manifest_sha256"]
    assert (dest / "config.json").read_bytes() == contents["config.json"]

    code, out, _ = cli("wait", "--model", MODEL, "--revision", REV, "--dest", str(dest),
                       "--timeout-s", "0", "--json")
    wa = json.loads(out)
    assert code == 0 and wa["ok"] and wa["marker"]["manifest_sha256"] == up["manifest_sha256"]


def test_human_output_and_bucket_from_environment(cli, uploaded, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(BUCKET_ENV, bucket)
    code, out, _ = cli("hydrate", "--model", MODEL, "--revision", REV, "--dest", str(tmp_path / "d"))
    assert code == 0 and out.startswith(f"hydrated {MODEL}@{REV} into ")
    code, out, _ = cli("verify", "--model", MODEL, "--revision", REV)
    assert code == 0 and out.startswith(f"ok: {len(uploaded)} files")


def test_missing_bucket_names_the_flag_and_the_variable(cli, tmp_path):
    code, out, err = cli("hydrate", "--model", MODEL, "--revision", REV, "--dest", str(tmp_path), "--json")
    assert code == 2
    assert err.strip() == f"error: --bucket: no bucket given; pass --bucket NAME or set {BUCKET_ENV}"
    assert json.loads(out) == {"command": "hydrate", "ok": False, "exit_code": 2,
                               "error": err.strip()[len("error: "):]}


@pytest.mark.parametrize("argv, needle", [
    (["--model", "../etc", "--revision", REV, "--bucket", "abc"], "--model: '../etc' is not allowed"),
    (["--model", MODEL, "--revision", "a/b", "--bucket", "abc"], "--revision: 'a/b' is not allowed"),
    (["--model", MODEL, "--revision", REV, "--bucket", "Bad_Bucket"], "--bucket: 'Bad_Bucket'"),
])
def test_bad_names_exit_2(cli, tmp_path, argv, needle):
    code, _, err = cli("hydrate", *argv, "--dest", str(tmp_path / "d"))
    assert code == 2 and needle in err
    assert not (tmp_path / "d").exists()


def test_bad_flag_values_exit_2(cli, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli("hydrate", *_ids("abc"), "--dest", str(tmp_path), "--concurrency", "0")
    assert exc.value.code == 2


def test_missing_manifest_exits_4(cli, bucket, uploaded, s3, tmp_path):
    s3.delete_object(Bucket=bucket, Key=manifest_key(MODEL, REV))
    for argv in (["hydrate", *_ids(bucket), "--dest", str(tmp_path / "d")], ["verify", *_ids(bucket)]):
        code, _, err = cli(*argv, "--json")
        assert code == 4 and "no manifest" in err


def test_integrity_failures_exit_6_with_the_problems_listed(cli, bucket, uploaded, s3, tmp_path):
    s3.delete_object(Bucket=bucket, Key=object_key(MODEL, REV, "tokenizer.json"))
    code, out, err = cli("verify", *_ids(bucket), "--json")
    report = json.loads(out)
    assert code == 6 and report["ok"] is False and report["exit_code"] == 6
    assert report["problems"] == [{"path": "tokenizer.json", "problem": "missing",
                                   "expected": None, "actual": None}]
    assert err.startswith("error: 1 of ") and "do not match the manifest" in err
    code, out, err = cli("verify", *_ids(bucket))
    assert code == 6 and out.strip() == "tokenizer.json: object missing"
    code, out, err = cli("hydrate", *_ids(bucket), "--dest", str(tmp_path / "d"), "--json")
    assert code == 6 and "object missing" in json.loads(out)["error"]


def test_locked_destination_exits_7(cli, bucket, uploaded, tmp_path):
    dest = tmp_path / "d"
    with hydration_lock(str(dest)):
        code, out, err = cli("hydrate", *_ids(bucket), "--dest", str(dest), "--no-wait", "--json")
    assert code == 7 and "being hydrated by another process" in err
    assert json.loads(out)["exit_code"] == 7


def test_wait_timeout_exits_4(cli, tmp_path):
    code, _, err = cli("wait", "--model", MODEL, "--revision", REV, "--dest", str(tmp_path),
                       "--timeout-s", "0.1", "--poll-interval-s", "0.05")
    assert code == 4 and "no hydration marker" in err


def test_help_documents_every_exit_code(cli):
    parser = infra.cli.build_parser()
    weights = parser._subparsers._group_actions[0].choices["weights"]
    text = weights.format_help()
    for code, meaning in exit_code_table("weights").items():
        assert f"  {code}  {meaning[:30]}" in text


def test_progress_bar_draws_only_when_enabled():
    stream = io.StringIO()
    bar = ProgressBar(100 * 2**20, "hydrate", enabled=True, stream=stream)
    bar.advance(50 * 2**20)
    bar.close()
    assert " 50.0% 50/100 MiB" in stream.getvalue() and stream.getvalue().endswith("\n")
    quiet = io.StringIO()  # not a TTY: default is silent
    bar = ProgressBar(10, "hydrate", stream=quiet)
    bar.advance(10)
    bar.close()
    assert quiet.getvalue() == ""
