"""Key naming, manifest validation, and refusal of unsafe paths."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from infra.core.errors import InputError
from infra.core.errors import IntegrityError
from infra.core.weights_layout import (
    Manifest, ManifestFile, manifest_key, object_key, parse_manifest, safe_join,
    unsafe_path_reason, validate_model_name, validate_revision,
)

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()


def _manifest(files=(("config.json", 1, SHA_A), ("w/model.safetensors", 1, SHA_B))) -> Manifest:
    return Manifest.build("org/model", "abc123",
                          [ManifestFile(path=p, size_bytes=s, sha256=h) for p, s, h in files],
                          source="test")


def _signed(body: dict) -> bytes:
    """Sign a manifest body the way the spec says (sha256 of canonical JSON), independently
    of the code under test, so a hostile but well-formed manifest can be fabricated."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return json.dumps({**body, "content_sha256": hashlib.sha256(canonical.encode()).hexdigest()}).encode()


def _body(paths: list[str]) -> dict:
    return {"schema_version": 1, "model": "org/model", "revision": "abc123",
            "created_at": "2026-01-31T12:00:00Z", "source": "test",
            "total_size_bytes": len(paths),
            "files": [{"path": p, "size_bytes": 1, "sha256": SHA_A} for p in paths]}


def test_keys_follow_the_documented_layout():
    assert manifest_key("org/model", "abc123") == "models/org/model/abc123/manifest.json"
    assert object_key("org/model", "abc123", "a/b.bin") == "models/org/model/abc123/a/b.bin"


def test_manifest_round_trips_and_its_digest_is_the_independent_spec():
    m = _manifest()
    raw = m.to_json_bytes()
    again = parse_manifest(raw, "test")
    assert again == m
    assert json.loads(_signed(_body(["x"])))["content_sha256"] == parse_manifest(
        _signed(_body(["x"])), "t").content_sha256
    assert m.total_size_bytes == 2
    assert [f.path for f in m.files] == sorted(f.path for f in m.files)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(source="someone else"), "content_sha256 does not match"),
    (lambda d: d.update(total_size_bytes=99), "total_size_bytes 99"),
    (lambda d: d["files"][0].update(sha256=SHA_B), "content_sha256 does not match"),
    (lambda d: d.update(extra_field=1), "extra"),
    (lambda d: d.update(schema_version=2), "schema_version 2"),
    (lambda d: d["files"][0].update(sha256="ABC"), "64 lowercase hex"),
    (lambda d: d["files"][0].update(size_bytes=-1), "greater than or equal to 0"),
])
def test_tampered_or_malformed_manifest_is_refused(mutate, needle):
    data = json.loads(_manifest().to_json_bytes())
    mutate(data)
    with pytest.raises(IntegrityError, match=needle):
        parse_manifest(json.dumps(data).encode(), "s3://b/k")


def test_not_json_is_refused():
    with pytest.raises(IntegrityError, match="not valid JSON"):
        parse_manifest(b"{truncated", "s3://b/k")


def test_total_must_equal_the_sum_even_when_signed():
    body = _body(["a.bin", "b.bin"])
    body["total_size_bytes"] = 5
    with pytest.raises(IntegrityError, match="total_size_bytes 5 != sum of files 2"):
        parse_manifest(_signed(body), "t")


@pytest.mark.parametrize("paths, needle", [
    (["a.bin", "a.bin"], "duplicate"),
    (["a", "a/b.bin"], "below another file"),
])
def test_paths_that_cannot_coexist_on_disk_are_refused(paths, needle):
    with pytest.raises(IntegrityError, match=needle):
        parse_manifest(_signed(_body(paths)), "t")


UNSAFE = ["../escape.bin", "a/../../b", "/etc/passwd", "C:/x", "a\\..\\b", "a//b", "./a",
          "a/.", "", "a\x00b", ".llm-fleet-hydrated.json", ".llm-fleet/lock", "manifest.json",
          "x" * 1025]


@pytest.mark.parametrize("path", UNSAFE)
def test_unsafe_paths_are_refused_even_in_a_correctly_signed_manifest(path):
    assert unsafe_path_reason(path) is not None
    with pytest.raises(IntegrityError, match="unsafe path"):
        parse_manifest(_signed(_body([path])), "t")


@pytest.mark.parametrize("path", ["config.json", "original/params.bin", "a/b/c-1_2.safetensors",
                                  ".gitattributes", "sub/manifest.json", "a..b"])
def test_ordinary_paths_are_accepted(path):
    assert unsafe_path_reason(path) is None
    assert parse_manifest(_signed(_body([path])), "t").files[0].path == path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "\\", ".llm-fleet", "x.bin"]),
                min_size=1, max_size=6))
def test_any_accepted_path_stays_inside_the_root(pieces):
    path = "/".join(pieces)
    if unsafe_path_reason(path) is None:
        root = "/srv/models/m/r"
        joined = os.path.normpath(os.path.join(root, path))
        assert joined.startswith(root + "/")


def test_safe_join_refuses_a_symlink_planted_inside_the_destination(tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir(), outside.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(IntegrityError, match="outside the destination"):
        safe_join(str(dest), "sub/evil.bin")
    (dest / "link.bin").symlink_to(outside / "target")
    with pytest.raises(IntegrityError, match="symlink"):
        safe_join(str(dest), "link.bin")
    assert safe_join(str(dest), "ok/file.bin") == os.path.join(os.path.realpath(dest), "ok", "file.bin")


@pytest.mark.parametrize("name", ["llama", "meta-llama/Llama-3.1-8B-Instruct", "a.b_c-d"])
def test_valid_model_names(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b/c", "/abs", "a//b", "-lead", "sp ace", "a/.."])
def test_invalid_model_names_name_the_flag(name):
    with pytest.raises(InputError, match="--model"):
        validate_model_name(name)


@pytest.mark.parametrize("rev", ["", "..", "a/b", "x" * 129])
def test_invalid_revisions_name_the_flag(rev):
    with pytest.raises(InputError, match="--revision"):
        validate_revision(rev)
