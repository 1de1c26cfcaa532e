"""Upload -> verify -> hydrate against a real S3-compatible server on loopback."""
from __future__ import annotations

import json
import os

import pytest
from weights_support import MIB, MODEL, REV, TEST_PART_SIZE_BYTES, UPLOAD_PART_SIZE_BYTES, range_bytes, write_fake_model

from infra.core.errors import InputError, UserError
from infra.core.errors import NotFoundError
from infra.ops.weights.hydrate import MARKER_NAME, STATE_DIR, hydrate_model, read_marker
from infra.core.weights_layout import SHA256_METADATA_KEY, claim_key, manifest_key, object_key, parse_manifest
from infra.ops.weights.upload import scan_directory, upload_model
from infra.ops.weights.verify import verify_model


def _upload(s3, bucket, src, **kw):
    return upload_model(s3, bucket, str(src), MODEL, REV, concurrency=4,
                        part_size_bytes=UPLOAD_PART_SIZE_BYTES, **kw)


def _hydrate(s3, bucket, dest, **kw):
    kw.setdefault("concurrency", 4)
    kw.setdefault("part_size_bytes", TEST_PART_SIZE_BYTES)
    return hydrate_model(s3, bucket, MODEL, REV, str(dest), **kw)


def test_upload_verify_hydrate_round_trip(s3, bucket, fake_model, tmp_path, request_log):
    src, contents = fake_model
    total = sum(len(d) for d in contents.values())
    up = _upload(s3, bucket, src)
    assert (up.uploaded_files, up.skipped_files, up.uploaded_bytes) == (len(contents), 0, total)

    # The layout: one object per file under models/<name>/<rev>/, sha256 in its metadata,
    # and a manifest that lists them all.
    manifest = parse_manifest(
        s3.get_object(Bucket=bucket, Key=manifest_key(MODEL, REV))["Body"].read(), "test")
    assert {f.path: f.size_bytes for f in manifest.files} == {p: len(d) for p, d in contents.items()}
    assert manifest.total_size_bytes == total
    for rel in contents:
        meta = s3.head_object(Bucket=bucket, Key=object_key(MODEL, REV, rel))
        assert meta["Metadata"][SHA256_METADATA_KEY] == next(
            f.sha256 for f in manifest.files if f.path == rel)

    for deep in (False, True):
        ver = verify_model(s3, bucket, MODEL, REV, deep=deep)
        assert ver.ok and ver.files == len(contents)
        assert ver.checked_bytes == (total if deep else 0)

    dest = tmp_path / "dest"
    request_log.clear()
    res = _hydrate(s3, bucket, dest)
    for rel, data in contents.items():
        assert (dest / rel).read_bytes() == data
        assert (dest / rel).stat().st_mode & 0o777 == 0o644  # readable by the vLLM pod's uid
    assert (res.downloaded_files, res.downloaded_bytes, res.already_hydrated) == (len(contents), total, False)
    marker = read_marker(str(dest))
    assert marker["manifest_sha256"] == manifest.content_sha256 == res.manifest_sha256
    assert (marker["model"], marker["revision"], marker["total_size_bytes"]) == (MODEL, REV, total)
    # Nothing left behind but the marker and the state directory.
    assert sorted(os.listdir(dest)) == sorted(
        {rel.split("/")[0] for rel in contents} | {MARKER_NAME, STATE_DIR})
    assert not os.path.exists(dest / STATE_DIR / "parts")

    # Files above the part size were fetched as ranges no larger than the part size, covering
    # each file exactly once; smaller files in one GET.
    gets = [g for g in request_log.gets() if not g[0].endswith("manifest.json")]
    assert res.get_requests == len(gets)
    fetched = {}
    for key, rng in gets:
        rel = key.split(f"{REV}/", 1)[1]
        size = len(contents[rel])
        if size > TEST_PART_SIZE_BYTES:
            assert rng is not None and range_bytes(rng, size) <= TEST_PART_SIZE_BYTES
        else:
            assert rng is None
        fetched[rel] = fetched.get(rel, 0) + range_bytes(rng, size)
    assert fetched == {rel: len(d) for rel, d in contents.items()}


def test_second_hydration_is_a_no_op_without_file_gets(s3, bucket, uploaded, tmp_path, request_log):
    dest = tmp_path / "dest"
    _hydrate(s3, bucket, dest)
    request_log.clear()
    again = _hydrate(s3, bucket, dest)
    assert again.already_hydrated and again.downloaded_bytes == 0 and again.get_requests == 0
    assert [k for k, _ in request_log.gets()] == [manifest_key(MODEL, REV)]


def test_deleted_local_file_is_the_only_one_fetched_again(s3, bucket, uploaded, tmp_path, request_log):
    contents = uploaded
    dest = tmp_path / "dest"
    _hydrate(s3, bucket, dest)
    (dest / "tokenizer.json").unlink()
    request_log.clear()
    res = _hydrate(s3, bucket, dest)
    assert not res.already_hydrated
    assert {k for k, _ in request_log.gets()} == {
        manifest_key(MODEL, REV), object_key(MODEL, REV, "tokenizer.json")}
    assert res.downloaded_bytes == len(contents["tokenizer.json"])
    assert (dest / "tokenizer.json").read_bytes() == contents["tokenizer.json"]
    assert read_marker(str(dest)) is not None


def test_reverify_rehashes_and_repairs_a_locally_corrupted_file(s3, bucket, uploaded, tmp_path, request_log):
    contents = uploaded
    dest = tmp_path / "dest"
    _hydrate(s3, bucket, dest)
    victim = dest / "model-00003-of-00003.safetensors"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes: only a re-hash can tell
    victim.write_bytes(bytes(data))
    request_log.clear()
    res = _hydrate(s3, bucket, dest, reverify=True)
    assert {k for k, _ in request_log.gets()} == {
        manifest_key(MODEL, REV), object_key(MODEL, REV, victim.name)}
    assert res.downloaded_bytes == len(contents[victim.name])
    assert victim.read_bytes() == contents[victim.name]


def test_reupload_skips_unchanged_files_without_sending_bytes(s3, bucket, uploaded, fake_model, request_log):
    src, contents = fake_model  # the same files `uploaded` put in the bucket
    again = _upload(s3, bucket, src)
    assert (again.uploaded_files, again.skipped_files, again.manifest_written) == (0, len(contents), False)
    sends = {(op, key) for op, key, _ in request_log.requests
             if op in ("PutObject", "UploadPart", "CreateMultipartUpload")}
    assert sends == {("PutObject", claim_key(MODEL, REV))}  # the claim's create, refused: 412


def test_a_revision_is_immutable_unless_replaced(s3, bucket, fake_model, tmp_path, request_log):
    src, contents = fake_model
    first = _upload(s3, bucket, src)
    (src / "config.json").write_bytes(b'{"changed": true}')
    with pytest.raises(UserError, match="--revision.*immutable.*--replace"):
        _upload(s3, bucket, src)
    assert verify_model(s3, bucket, MODEL, REV).ok  # nothing was touched

    request_log.clear()
    replaced = _upload(s3, bucket, src, replace=True)
    assert replaced.uploaded_files == 1 and replaced.manifest_written
    assert replaced.manifest_sha256 != first.manifest_sha256
    # The claim was taken over first, then the old manifest went, the new one last: never a mix
    # of old and new published.
    ops = [(op, key) for op, key, _ in request_log.requests if op in ("DeleteObject", "PutObject")]
    assert ops[:3] == [("PutObject", claim_key(MODEL, REV)), ("PutObject", claim_key(MODEL, REV)),
                       ("DeleteObject", manifest_key(MODEL, REV))]  # create refused, then If-Match
    assert ops[-1] == ("PutObject", manifest_key(MODEL, REV))
    assert replaced.claim == "taken-over"
    dest = tmp_path / "dest"
    _hydrate(s3, bucket, dest)
    assert (dest / "config.json").read_bytes() == b'{"changed": true}'


def test_upload_to_a_missing_bucket_fails_before_hashing(s3, fake_model):
    src, _ = fake_model
    with pytest.raises(NotFoundError, match="bucket 'no-such-bucket-here' does not exist"):
        upload_model(s3, "no-such-bucket-here", str(src), MODEL, REV)


def test_upload_input_errors_name_the_field(s3, bucket, tmp_path):
    with pytest.raises(InputError, match="DIR.*existing directory"):
        upload_model(s3, bucket, str(tmp_path / "nope"), MODEL, REV)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="at least one file"):
        upload_model(s3, bucket, str(tmp_path / "empty"), MODEL, REV)
    write_fake_model(tmp_path / "m", {"a.bin": 10})
    with pytest.raises(InputError, match="--concurrency"):
        upload_model(s3, bucket, str(tmp_path / "m"), MODEL, REV, concurrency=0)
    with pytest.raises(InputError, match="--part-size-mib"):
        upload_model(s3, bucket, str(tmp_path / "m"), MODEL, REV, part_size_bytes=MIB)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # nothing half-written


def test_scan_follows_file_symlinks_and_skips_hydrator_state(tmp_path):
    # A Hugging Face snapshot is a tree of symlinks into blobs/; a hydrated dir has our state.
    blobs, snap = tmp_path / "blobs", tmp_path / "snap"
    write_fake_model(blobs, {"abc": 5})
    snap.mkdir()
    (snap / "config.json").symlink_to(blobs / "abc")
    (snap / MARKER_NAME).write_text("{}")
    (snap / STATE_DIR).mkdir()
    (snap / STATE_DIR / "lock").write_text("")
    write_fake_model(snap / ".git" / "lfs", {"objects.bin": 7})
    write_fake_model(snap / ".cache" / "huggingface", {"download.lock": 1})
    files = scan_directory(str(snap))
    assert [(f.path, f.size_bytes) for f in files] == [("config.json", 5)]
    (snap / "loop").symlink_to(snap)
    with pytest.raises(InputError, match="directory symlink"):
        scan_directory(str(snap))


def test_result_serialises_to_json(s3, bucket, uploaded, tmp_path):
    payload = json.loads(json.dumps(_hydrate(s3, bucket, tmp_path / "d").to_dict()))
    assert payload["ok"] and payload["total_size_bytes"] == sum(map(len, uploaded.values()))
    assert payload["files"] == len(uploaded)


def test_verified_log_is_compacted_to_one_line_per_file(s3, bucket, uploaded, tmp_path):
    dest = tmp_path / "dest"
    _hydrate(s3, bucket, dest)
    (dest / "config.json").unlink()
    _hydrate(s3, bucket, dest)  # appends a record for the re-fetched file, then compacts
    lines = (dest / STATE_DIR / "verified.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(uploaded)
