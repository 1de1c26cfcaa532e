"""Corrupted, missing and hostile content is detected; nothing lands under a final name."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
from weights_support import MODEL, REV, TEST_PART_SIZE_BYTES, corrupt_object

from infra.core.errors import IntegrityError, NotFoundError
from infra.ops.weights.hydrate import MARKER_NAME, STATE_DIR, hydrate_model, read_marker
from infra.core.weights_layout import SHA256_METADATA_KEY, manifest_key, object_key
from infra.ops.weights.verify import verify_model

SMALL = "original/params.bin"  # fetched in one GET
LARGE = "model-00001-of-00003.safetensors"  # fetched as ranged parts


def _hydrate(s3, bucket, dest, **kw):
    return hydrate_model(s3, bucket, MODEL, REV, str(dest), concurrency=4,
                         part_size_bytes=TEST_PART_SIZE_BYTES, **kw)


def _final_files(dest) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames[:] = [d for d in dirnames if d != STATE_DIR]
        found |= {os.path.relpath(os.path.join(dirpath, f), dest) for f in filenames}
    return found - {MARKER_NAME}


@pytest.mark.parametrize("rel", [SMALL, LARGE])
def test_corrupted_object_fails_hydration_and_leaves_no_partial_file(s3, bucket, uploaded, tmp_path, rel):
    corrupt_object(s3, bucket, rel, uploaded[rel])
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError, match=f"checksum mismatch: .*{rel}") as err:
        _hydrate(s3, bucket, dest)
    assert err.value.exit_code == 6
    assert not (dest / rel).exists()
    assert read_marker(str(dest)) is None and not (dest / MARKER_NAME).exists()
    # Files that did arrive are complete and correct; the corrupt one left no temp file.
    for done in _final_files(dest):
        assert (dest / done).read_bytes() == uploaded[done]
    parts = dest / STATE_DIR / "parts"
    job_id = hashlib.sha256(f"{rel}\0{hashlib.sha256(uploaded[rel]).hexdigest()}".encode()).hexdigest()[:40]
    assert not (parts / f"{job_id}.part").exists()


def test_deep_verify_finds_corruption_that_metadata_hides(s3, bucket, uploaded):
    corrupt_object(s3, bucket, LARGE, uploaded[LARGE], keep_metadata=True)
    assert verify_model(s3, bucket, MODEL, REV).ok  # quick mode trusts the recorded sha256
    deep = verify_model(s3, bucket, MODEL, REV, deep=True)
    assert not deep.ok
    assert [(p.path, p.problem) for p in deep.problems] == [(LARGE, "sha256_mismatch")]
    assert deep.problems[0].expected == hashlib.sha256(uploaded[LARGE]).hexdigest()


def test_quick_verify_reports_every_problem(s3, bucket, uploaded):
    s3.delete_object(Bucket=bucket, Key=object_key(MODEL, REV, SMALL))
    s3.put_object(Bucket=bucket, Key=object_key(MODEL, REV, "config.json"), Body=b"{}",
                  Metadata={SHA256_METADATA_KEY: hashlib.sha256(b"{}").hexdigest()})
    corrupt_object(s3, bucket, "tokenizer.json", uploaded["tokenizer.json"], keep_metadata=False)
    wrong = dict(s3.head_object(Bucket=bucket, Key=object_key(MODEL, REV, LARGE))["Metadata"])
    s3.copy_object(Bucket=bucket, Key=object_key(MODEL, REV, LARGE),
                   CopySource={"Bucket": bucket, "Key": object_key(MODEL, REV, LARGE)},
                   Metadata={SHA256_METADATA_KEY: "0" * 64}, MetadataDirective="REPLACE")
    assert wrong[SHA256_METADATA_KEY] != "0" * 64
    res = verify_model(s3, bucket, MODEL, REV)
    assert sorted((p.path, p.problem) for p in res.problems) == sorted([
        (SMALL, "missing"), ("config.json", "size_mismatch"),
        ("tokenizer.json", "sha256_unrecorded"), (LARGE, "sha256_mismatch")])


@pytest.mark.parametrize("rel", [SMALL, LARGE])
def test_missing_object_fails_clearly(s3, bucket, uploaded, tmp_path, rel):
    s3.delete_object(Bucket=bucket, Key=object_key(MODEL, REV, rel))
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError, match=f"object missing: .*{rel}.*listed in the manifest"):
        _hydrate(s3, bucket, dest)
    assert not (dest / rel).exists() and read_marker(str(dest)) is None


@pytest.mark.parametrize("rel", [SMALL, LARGE])
def test_object_of_the_wrong_size_fails_clearly(s3, bucket, uploaded, tmp_path, rel):
    s3.put_object(Bucket=bucket, Key=object_key(MODEL, REV, rel), Body=uploaded[rel][:-10])
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError, match="size mismatch"):
        _hydrate(s3, bucket, dest)
    assert not (dest / rel).exists() and read_marker(str(dest)) is None


def test_missing_manifest_means_incomplete_model(s3, bucket, uploaded, tmp_path):
    s3.delete_object(Bucket=bucket, Key=manifest_key(MODEL, REV))
    dest = tmp_path / "dest"
    with pytest.raises(NotFoundError, match="no manifest.*did not finish") as err:
        _hydrate(s3, bucket, dest)
    assert err.value.exit_code == 4
    assert not dest.exists()  # failed before touching the destination
    with pytest.raises(NotFoundError, match="no manifest"):
        verify_model(s3, bucket, MODEL, REV)


def test_missing_bucket_is_not_found(s3, tmp_path):
    with pytest.raises(NotFoundError, match="bucket 'absent-bucket-x' does not exist"):
        hydrate_model(s3, "absent-bucket-x", MODEL, REV, str(tmp_path / "d"))


def test_manifest_of_another_model_is_refused(s3, bucket, uploaded, tmp_path):
    raw = s3.get_object(Bucket=bucket, Key=manifest_key(MODEL, REV))["Body"].read()
    s3.put_object(Bucket=bucket, Key=manifest_key(MODEL, "r2"), Body=raw)
    with pytest.raises(IntegrityError, match="describes acme/fake-llm@r1, not acme/fake-llm@r2"):
        hydrate_model(s3, bucket, MODEL, "r2", str(tmp_path / "d"))


def _signed_manifest(files: list[dict]) -> bytes:
    body = {"schema_version": 1, "model": MODEL, "revision": REV,
            "created_at": "2026-01-31T12:00:00Z", "source": "attacker",
            "total_size_bytes": sum(f["size_bytes"] for f in files), "files": files}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return json.dumps({**body, "content_sha256": hashlib.sha256(canonical.encode()).hexdigest()}).encode()


@pytest.mark.parametrize("evil", ["../escape.bin", "sub/../../escape.bin", "ABSOLUTE"])
def test_path_traversal_in_a_well_formed_manifest_writes_nothing(s3, bucket, tmp_path, evil):
    if evil == "ABSOLUTE":
        evil = str(tmp_path / "escape.bin")
    payload = b"pwned"
    entry = {"path": evil, "size_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    s3.put_object(Bucket=bucket, Key=manifest_key(MODEL, REV), Body=_signed_manifest([entry]))
    # Make the object fetchable under the key a naive join would produce.
    s3.put_object(Bucket=bucket, Key=f"models/{MODEL}/{REV}/{evil.lstrip('/')}", Body=payload)
    dest = tmp_path / "a" / "dest"
    with pytest.raises(IntegrityError, match="unsafe path") as err:
        hydrate_model(s3, bucket, MODEL, REV, str(dest))
    assert err.value.exit_code == 6
    assert not (tmp_path / "a" / "escape.bin").exists() and not (tmp_path / "escape.bin").exists()
    assert not dest.exists()


def test_symlink_in_destination_pointing_outside_is_refused(s3, bucket, uploaded, tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir(), outside.mkdir()
    (dest / "original").symlink_to(outside)  # 'original/params.bin' would land outside
    with pytest.raises(IntegrityError, match="outside the destination"):
        _hydrate(s3, bucket, dest)
    assert os.listdir(outside) == []
