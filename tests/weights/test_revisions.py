"""Revisions stay immutable under concurrency, and corrupt objects get repaired, not skipped.

Against moto's S3 server on loopback. moto honours `If-None-Match`/`If-Match` on PutObject but
checks, then writes, without a lock, so two truly simultaneous conditional PUTs could both pass
there (S3 itself serialises them: one gets 412, or 409 ConditionalRequestConflict). The racers
are therefore sequenced with botocore request hooks: both finish every read (the check), then
the first's first write completes before the second's first write is sent. That is the
interleaving that let two uploads both succeed before the revision claim existed.
"""
from __future__ import annotations

import json
import threading

import pytest
from botocore.stub import ANY, Stubber
from weights_support import MIB, MODEL, REV, UPLOAD_PART_SIZE_BYTES, corrupt_object

from infra.core.errors import UserError
from infra.core.weights_layout import claim_key, manifest_key, object_key, parse_claim, parse_manifest
from infra.ops.weights.localfs import digest_file
from infra.ops.weights.repair import _put, _Changed, repair_model
from infra.ops.weights.s3 import make_client
from infra.ops.weights.upload import upload_model
from infra.ops.weights.verify import verify_model

WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "DeleteObject",
          "CopyObject"}
SMALL, LARGE = "original/params.bin", "model-00001-of-00003.safetensors"


class Racer:
    """One upload on its own client, recording its requests; the first of its writes is held
    until both racers have done all their reads, and the second's until the first's returned."""

    def __init__(self, endpoint: str, name: str, gate: "Gate") -> None:
        self.name, self.gate = name, gate
        self.client = make_client(endpoint, "us-east-1", max_connections=8)
        self.requests: list[tuple[str, str]] = []
        self.result = self.error = None
        self._first_write: str | None = None
        self._lock = threading.Lock()
        self.client.meta.events.register("before-send.s3", self._before_send)
        self.client.meta.events.register("after-call.s3", self._after_call)

    def _before_send(self, request, event_name, **kwargs):
        op = event_name.rsplit(".", 1)[-1]
        key = request.url.split("?", 1)[0].split("/", 4)[-1]
        with self._lock:
            self.requests.append((op, key))
            first = op in WRITES and self._first_write is None
            if first:
                self._first_write = op
        if first:
            self.gate.both_checked.wait()
            if self.name == "second":
                assert self.gate.first_wrote.wait(30), "the first racer never wrote"

    def _after_call(self, event_name, **kwargs):
        if self.name == "first" and self._first_write is not None:
            self.gate.first_wrote.set()

    def writes(self) -> list[tuple[str, str]]:
        return [(op, key) for op, key in self.requests if op in WRITES]

    def run(self, bucket: str, src) -> None:
        try:
            self.result = upload_model(self.client, bucket, str(src), MODEL, REV, concurrency=4,
                                       part_size_bytes=UPLOAD_PART_SIZE_BYTES)
        except Exception as exc:  # asserted by the test
            self.error = exc


class Gate:
    def __init__(self) -> None:
        self.both_checked = threading.Barrier(2, timeout=30)
        self.first_wrote = threading.Event()


def _race(s3_endpoint, bucket, src_first, src_second) -> tuple[Racer, Racer]:
    gate = Gate()
    racers = (Racer(s3_endpoint, "first", gate), Racer(s3_endpoint, "second", gate))
    threads = [threading.Thread(target=r.run, args=(bucket, src)) for r, src in zip(racers, (src_first, src_second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return racers


def test_two_concurrent_uploads_of_different_files_exactly_one_wins(s3_endpoint, s3, bucket, fake_model, tmp_path):
    src, contents = fake_model
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_bytes(b'{"different": true}')
    (other / "weights.bin").write_bytes(b"\x01" * 1000)
    first, second = _race(s3_endpoint, bucket, src, other)
    assert first.error is None and first.result.claim == "created"
    assert isinstance(second.error, UserError) and second.result is None
    claim = parse_claim(s3.get_object(Bucket=bucket, Key=claim_key(MODEL, REV))["Body"].read(), "test")
    # The loser names the winner (who, when, what) and wrote nothing but its refused claim.
    message = str(second.error)
    assert claim.claimed_by in message and claim.claimed_at in message and claim.files_sha256[:12] in message
    assert "wrote nothing" in message and "--replace" in message
    assert second.writes() == [("PutObject", claim_key(MODEL, REV))]
    assert verify_model(s3, bucket, MODEL, REV, deep=True).ok
    manifest = parse_manifest(s3.get_object(Bucket=bucket, Key=manifest_key(MODEL, REV))["Body"].read(), "test")
    assert sorted(f.path for f in manifest.files) == sorted(contents)
    assert claim.files_sha256 == manifest.files_sha256


def test_two_concurrent_uploads_of_the_same_files_both_succeed(s3_endpoint, s3, bucket, fake_model, tmp_path):
    src, contents = fake_model
    first, second = _race(s3_endpoint, bucket, src, src)
    assert (first.error, second.error) == (None, None)
    assert (first.result.claim, second.result.claim) == ("created", "same-files")
    assert verify_model(s3, bucket, MODEL, REV, deep=True).ok


def test_a_claimed_revision_refuses_different_files_before_its_manifest_exists(s3, bucket, fake_model, tmp_path):
    src, _ = fake_model
    held = tmp_path / "held"
    held.mkdir()
    (held / "a.bin").write_bytes(b"a")
    upload_model(s3, bucket, str(held), MODEL, REV, part_size_bytes=UPLOAD_PART_SIZE_BYTES)
    s3.delete_object(Bucket=bucket, Key=manifest_key(MODEL, REV))  # that upload "died" before publishing
    with pytest.raises(UserError, match="is claimed by .*, not published yet .* wrote nothing"):
        upload_model(s3, bucket, str(src), MODEL, REV, part_size_bytes=UPLOAD_PART_SIZE_BYTES)
    taken = upload_model(s3, bucket, str(src), MODEL, REV, part_size_bytes=UPLOAD_PART_SIZE_BYTES, replace=True)
    assert taken.claim == "taken-over" and verify_model(s3, bucket, MODEL, REV, deep=True).ok


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("rel", [SMALL, LARGE])
def test_upload_resends_an_object_whose_bytes_are_corrupt_though_its_metadata_was_kept(
        s3, bucket, uploaded, fake_model, rel, replace):
    src, contents = fake_model
    corrupt_object(s3, bucket, rel, contents[rel], keep_metadata=True)
    assert not verify_model(s3, bucket, MODEL, REV, deep=True).ok
    res = upload_model(s3, bucket, str(src), MODEL, REV, part_size_bytes=UPLOAD_PART_SIZE_BYTES,
                       replace=replace)
    assert (res.uploaded_files, res.skipped_files) == (1, len(contents) - 1)
    assert not res.manifest_written  # same files: the published manifest stays
    assert verify_model(s3, bucket, MODEL, REV, deep=True).ok


# ----- repair ---------------------------------------------------------------------------

class Writes:
    """Requests a client sends that write, by (operation, key)."""

    def __init__(self, client) -> None:
        self.seen: list[tuple[str, str, dict]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request, event_name, **kwargs):
        op = event_name.rsplit(".", 1)[-1]
        if op in WRITES:
            headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
            self.seen.append((op, request.url.split("?", 1)[0].split("/", 4)[-1], headers))

    def keys(self) -> set[str]:
        return {key for _, key, _ in self.seen}


def test_repair_reuploads_exactly_the_objects_that_fail_deep_verify(s3, bucket, uploaded, fake_model):
    src, contents = fake_model
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    bad = {rel: corrupt_object(s3, bucket, rel, contents[rel], keep_metadata=True) for rel in (SMALL, LARGE)}
    s3.delete_object(Bucket=bucket, Key=object_key(MODEL, REV, "tokenizer.json"))
    checked = {p.path: p for p in verify_model(s3, bucket, MODEL, REV, deep=True).problems}
    assert set(checked) == {SMALL, LARGE, "tokenizer.json"}
    manifest_etag = s3.head_object(Bucket=bucket, Key=manifest_key(MODEL, REV))["ETag"]
    writes = Writes(s3)

    res = repair_model(s3, bucket, str(src), MODEL, REV, concurrency=3, part_size_bytes=5 * MIB)
    assert res.ok and sorted(r["path"] for r in res.repaired) == sorted(checked)
    assert writes.keys() == {object_key(MODEL, REV, rel) for rel in checked}
    # Conditional on what was checked: If-Match its ETag, If-None-Match for the missing one.
    puts = {key: h for op, key, h in writes.seen if op in ("PutObject", "CompleteMultipartUpload")}
    assert puts[object_key(MODEL, REV, SMALL)]["if-match"] == checked[SMALL].etag
    assert puts[object_key(MODEL, REV, LARGE)]["if-match"] == checked[LARGE].etag  # multipart: on completion
    assert puts[object_key(MODEL, REV, "tokenizer.json")]["if-none-match"] == "*"
    assert verify_model(s3, bucket, MODEL, REV, deep=True).ok
    assert s3.head_object(Bucket=bucket, Key=manifest_key(MODEL, REV))["ETag"] == manifest_etag
    # Nothing is deleted: the corrupt bytes stay as a noncurrent version.
    key = object_key(MODEL, REV, SMALL)
    noncurrent = [s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
                  for v in s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"] if not v["IsLatest"]]
    assert bad[SMALL] in noncurrent


def test_repair_never_overwrites_an_object_changed_after_its_check(s3, bucket, uploaded, fake_model, s3_endpoint):
    src, contents = fake_model
    corrupt_object(s3, bucket, SMALL, contents[SMALL], keep_metadata=True)
    key = object_key(MODEL, REV, SMALL)
    meddler = make_client(s3_endpoint, "us-east-1")
    concurrent = b"a concurrent upload"

    def change_first(request, event_name, **kwargs):  # between repair's check and its write
        if event_name.endswith("PutObject") and key in request.url and not meddler_done.is_set():
            meddler_done.set()
            meddler.put_object(Bucket=bucket, Key=key, Body=concurrent)
    meddler_done = threading.Event()
    s3.meta.events.register("before-send.s3", change_first)
    res = repair_model(s3, bucket, str(src), MODEL, REV, part_size_bytes=5 * MIB)
    assert not res.ok and res.repaired == []
    assert res.unrepaired[0]["path"] == SMALL and "changed in S3 after it was checked" in res.unrepaired[0]["reason"]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == concurrent


def test_repair_refuses_a_local_file_that_does_not_match_the_manifest(s3, bucket, uploaded, fake_model):
    src, contents = fake_model
    corrupt_object(s3, bucket, SMALL, contents[SMALL], keep_metadata=True)
    (src / SMALL).write_bytes(b"not the original")
    writes = Writes(s3)
    res = repair_model(s3, bucket, str(src), MODEL, REV, part_size_bytes=5 * MIB)
    assert not res.ok and "does not match the manifest either" in res.unrepaired[0]["reason"]
    assert writes.seen == []


def test_a_multipart_repair_puts_its_condition_on_the_completion(tmp_path):
    """moto ignores If-Match on CompleteMultipartUpload, so this path runs against botocore's
    Stubber: S3 evaluates a conditional multipart write when it completes ("Conditional writes",
    AWS S3 User Guide: the condition goes on CompleteMultipartUpload), answering 412 there."""
    import boto3

    data = b"x" * (5 * MIB + 10)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    digest = digest_file(str(path), crc32=True)
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    stub = Stubber(client)
    where = {"Bucket": "bkt", "Key": "k"}
    stub.add_response("create_multipart_upload", {"UploadId": "u1"},
                      {**where, "Metadata": {"sha256": digest.sha256}, "ChecksumAlgorithm": "CRC32",
                       "ChecksumType": "FULL_OBJECT"})
    for number in (1, 2):
        stub.add_response("upload_part", {"ETag": f'"p{number}"', "ChecksumCRC32": "AAAAAA=="},
                          {**where, "UploadId": "u1", "PartNumber": number, "Body": ANY, "ChecksumAlgorithm": "CRC32"})
    stub.add_client_error("complete_multipart_upload", "PreconditionFailed", http_status_code=412, expected_params={
        **where, "UploadId": "u1", "ChecksumCRC32": digest.crc32, "ChecksumType": "FULL_OBJECT",
        "IfMatch": '"checked-etag"', "MultipartUpload": {"Parts": [
            {"PartNumber": 1, "ETag": '"p1"', "ChecksumCRC32": "AAAAAA=="},
            {"PartNumber": 2, "ETag": '"p2"', "ChecksumCRC32": "AAAAAA=="}]}})
    stub.add_response("abort_multipart_upload", {}, {**where, "UploadId": "u1"})
    with stub, pytest.raises(_Changed):
        _put(client, "bkt", "k", str(path), len(data), digest, {"IfMatch": '"checked-etag"'}, 5 * MIB)
    stub.assert_no_pending_responses()


def test_repair_and_conflict_through_the_cli(cli, s3, bucket, uploaded, fake_model, tmp_path):
    src, contents = fake_model
    ids = ["--model", MODEL, "--revision", REV, "--bucket", bucket]
    corrupt_object(s3, bucket, SMALL, contents[SMALL], keep_metadata=True)
    code, out, _ = cli("repair", str(src), *ids)
    assert code == 0 and out.startswith(f"repaired {SMALL} (sha256_mismatch)")
    code, out, _ = cli("repair", str(src), *ids, "--json")
    assert code == 0 and json.loads(out)["problems"] == []  # nothing left to repair
    corrupt_object(s3, bucket, SMALL, contents[SMALL], keep_metadata=True)
    (src / SMALL).write_bytes(b"changed locally")
    code, out, err = cli("repair", str(src), *ids, "--json")
    report = json.loads(out)
    assert code == 6 and report["exit_code"] == 6 and report["unrepaired"][0]["path"] == SMALL
    assert "1 not repaired" in err
    code, out, err = cli("upload", str(src), *ids, "--json")  # different files, same revision
    assert code == 2 and "is claimed by" in json.loads(out)["error"] and "already published" in err
