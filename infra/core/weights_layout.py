"""Where weights live in S3 and what the manifest promises about them.

Layout: ``s3://<bucket>/models/<name>/<revision>/<files>`` plus ``manifest.json`` in the same
prefix. The manifest is written last, so a prefix without one is an incomplete upload. Before any
object of a revision is written, the uploader claims the revision: it creates
``.llm-fleet-claim.json`` in the prefix with ``If-None-Match: *`` (who, when, and the digest of the
files it will publish), so two uploads of different files under one revision cannot both proceed.

The manifest is validated strictly (unknown fields refused, sizes and digests well-formed,
total consistent, its own ``content_sha256`` matching) and every file path is checked for
traversal: the hydrator runs as root on a node, so ``../../etc/cron.d/x`` in a manifest must
never become a write outside the destination.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.core import patterns
from infra.core.errors import InputError, IntegrityError
from infra.core.labels import PROJECT

SCHEMA_VERSION = 1
MODELS_PREFIX = "models"
MANIFEST_NAME = "manifest.json"
# Everything the hydrator keeps in a destination starts with this, so a manifest may not use it.
RESERVED_PREFIX = ".llm-fleet"
# Written into a destination only when every file is verified; vLLM pods wait for it. One
# constant shared by the hydrator, the `wait` command and the Kubernetes manifests.
MARKER_NAME = ".llm-fleet-hydrated.json"
# The revision's claim object (top-level, under the reserved prefix: no manifest file can collide).
CLAIM_NAME = ".llm-fleet-claim.json"
# Object metadata key holding the file's sha256 (sent as x-amz-meta-sha256), so quick `verify` can
# check without downloading. Metadata describes what the uploader meant, not the stored bytes:
# upload skips an object only when S3's own checksum of the bytes (validated when they were
# written) also equals the local file's.
SHA256_METADATA_KEY = "sha256"
BUCKET_ENV = "LLM_FLEET_WEIGHTS_BUCKET"

_MAX_PATH_CHARS = 1024


def weights_bucket_name(stack: str, account_id: str, region: str) -> str:
    """The weights bucket the program creates for a stack (preflight derives it before a deploy)."""
    return f"{PROJECT}-{stack}-weights-{account_id}-{region}"


def validate_model_name(name: str, field: str = "--model") -> str:
    if not patterns.matches(patterns.MODEL_NAME, name):
        raise InputError(
            field, name,
            "use 'name' or 'org/name' of letters, digits, '.', '_' and '-' "
            "(each part starts with a letter or digit, at most 128 characters)",
        )
    return name


def validate_revision(revision: str, field: str = "--revision") -> str:
    if not patterns.matches(patterns.REVISION, revision):
        raise InputError(
            field, revision,
            "use letters, digits, '.', '_' and '-', starting with a letter or digit, "
            "at most 128 characters (e.g. a commit hash or 'v1')",
        )
    return revision


def model_prefix(model: str, revision: str) -> str:
    """Key prefix of one model revision, with a trailing slash."""
    return f"{MODELS_PREFIX}/{validate_model_name(model)}/{validate_revision(revision)}/"


def object_key(model: str, revision: str, path: str) -> str:
    return model_prefix(model, revision) + check_relative_path(path)


def manifest_key(model: str, revision: str) -> str:
    return model_prefix(model, revision) + MANIFEST_NAME


def claim_key(model: str, revision: str) -> str:
    return model_prefix(model, revision) + CLAIM_NAME


def unsafe_path_reason(path: object) -> str | None:
    """Why `path` may not appear in a manifest, or None if it is a safe relative path."""
    if not isinstance(path, str) or not path:
        return "it is empty or not a string"
    if len(path) > _MAX_PATH_CHARS:
        return f"it is longer than {_MAX_PATH_CHARS} characters"
    if any(ord(ch) < 32 or ch == "\x7f" for ch in path):
        return "it contains a control character"
    if "\\" in path:
        return "it contains a backslash"
    if path.startswith("/") or (path[1:2] == ":" and path[0].isalpha()):
        return "it is absolute"
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return "it has an empty, '.' or '..' segment"
    if segments[0].startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX!r} are reserved for the hydrator"
    if path == MANIFEST_NAME:
        return f"{MANIFEST_NAME!r} is the manifest's own key"
    return None


def check_relative_path(path: str) -> str:
    reason = unsafe_path_reason(path)
    if reason:
        raise IntegrityError(f"unsafe file path {path!r} in manifest: {reason}")
    return path


def _matching(pattern: str, problem: str) -> AfterValidator:
    """A pydantic check that the whole value matches `pattern` (patterns.matches: no `$` slack)."""
    def check(value: str) -> str:
        if not patterns.matches(pattern, value):
            raise ValueError(problem)
        return value
    return AfterValidator(check)


ModelName = Annotated[str, _matching(patterns.MODEL_NAME, "not a valid model name")]
Revision = Annotated[str, _matching(patterns.REVISION, "not a valid revision")]
Sha256Hex = Annotated[str, _matching(patterns.SHA256_HEX, "must be 64 lowercase hex characters")]
UtcTimestamp = Annotated[str, _matching(patterns.UTC_TIMESTAMP, "must look like 2026-01-31T12:00:00Z")]


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="POSIX path relative to the model root; no '..', not absolute")
    size_bytes: int = Field(ge=0, description="exact object size")
    sha256: Sha256Hex = Field(description="lowercase hex sha256 of the whole file")

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        reason = unsafe_path_reason(value)
        if reason:
            raise ValueError(f"unsafe path {value!r}: {reason}")
        return value


class Manifest(BaseModel):
    """What a complete model revision contains. Immutable once written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(description="manifest format version")
    model: ModelName = Field(description="model name, e.g. 'meta-llama/Llama-3.1-8B-Instruct'")
    revision: Revision = Field(description="immutable revision label, e.g. a commit hash")
    created_at: UtcTimestamp = Field(description="UTC upload time, 'YYYY-MM-DDTHH:MM:SSZ'")
    source: str = Field(max_length=1024, description="where the files came from")
    total_size_bytes: int = Field(ge=0, description="sum of files[].size_bytes")
    files: tuple[ManifestFile, ...] = Field(description="every file, sorted by path")
    content_sha256: str = Field(description="sha256 of the canonical JSON of all other fields")

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("duplicate file paths")
        as_dirs = {p + "/" for p in paths}
        for p in paths:
            # 'a' and 'a/b' cannot both be files on disk.
            parts = p.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) + "/" in as_dirs:
                    raise ValueError(f"path {p!r} is below another file's path")
        total = sum(f.size_bytes for f in self.files)
        if total != self.total_size_bytes:
            raise ValueError(f"total_size_bytes {self.total_size_bytes} != sum of files {total}")
        if _content_digest(self._unsigned()) != self.content_sha256:
            raise ValueError("content_sha256 does not match the manifest's content")
        return self

    def _unsigned(self) -> dict:
        body = self.model_dump(mode="json")
        body.pop("content_sha256")
        return body

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def build(
        cls,
        model: str,
        revision: str,
        files: list[ManifestFile],
        source: str,
        created_at: dt.datetime | None = None,
    ) -> "Manifest":
        when = (created_at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        body = {
            "schema_version": SCHEMA_VERSION,
            "model": model,
            "revision": revision,
            "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": source,
            "total_size_bytes": sum(f.size_bytes for f in files),
            "files": [f.model_dump() for f in sorted(files, key=lambda f: f.path)],
        }
        return cls.model_validate({**body, "content_sha256": _content_digest(body)})

    def same_content(self, other: "Manifest") -> bool:
        """Same files, sizes and digests (creation time and source may differ)."""
        return self.files == other.files

    @property
    def files_sha256(self) -> str:
        """Digest of the file list alone: equal for two manifests with the same content."""
        return _content_digest({"files": [f.model_dump() for f in self.files]})


class Claim(BaseModel):
    """Who claimed a revision for which files: the first object of a revision an upload writes
    (conditionally), so a second upload of different files fails before it writes anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(description="claim format version")
    model: ModelName = Field(description="model name")
    revision: Revision = Field(description="the revision claimed")
    files_sha256: Sha256Hex = Field(description="Manifest.files_sha256 of the files this upload publishes")
    files: int = Field(ge=0, description="number of files")
    total_size_bytes: int = Field(ge=0, description="sum of the file sizes")
    claimed_by: str = Field(max_length=300, description="user@host (pid N) of the upload")
    claimed_at: UtcTimestamp = Field(description="UTC claim time, 'YYYY-MM-DDTHH:MM:SSZ'")
    upload_id: str = Field(max_length=64, description="random id of the claiming upload run")
    source: str = Field(max_length=1024, description="the manifest's source")


    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    def describe(self) -> str:
        return (f"{self.claimed_by} at {self.claimed_at} for {self.files} files, "
                f"{self.total_size_bytes} bytes, files sha256 {self.files_sha256[:12]}")


def parse_claim(raw: bytes, where: str) -> Claim:
    try:
        return Claim.model_validate(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise IntegrityError(f"revision claim {where} is unreadable ({exc.__class__.__name__}); "
                             "pass --replace to take the revision over") from None


def _content_digest(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Parse and strictly validate manifest bytes; `where` names the source in errors."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"manifest {where} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise IntegrityError(
            f"manifest {where} has schema_version {data.get('schema_version')!r}; this "
            f"hydrator reads version {SCHEMA_VERSION} (upgrade the image)"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
            for err in exc.errors()
        )
        raise IntegrityError(f"manifest {where} is invalid: {problems}") from None


def safe_join(root: str, rel_path: str) -> str:
    """`root/rel_path`, refusing anything that would land outside `root`.

    The lexical check catches '..' and absolute paths; the realpath check catches a symlink
    planted inside the destination that points elsewhere.
    """
    check_relative_path(rel_path)
    root_real = os.path.realpath(root)
    candidate = os.path.join(root_real, *rel_path.split("/"))
    parent_real = os.path.realpath(os.path.dirname(candidate))
    if os.path.commonpath([root_real, parent_real]) != root_real:
        raise IntegrityError(f"file path {rel_path!r} resolves outside the destination {root}")
    if os.path.islink(candidate):
        raise IntegrityError(f"{candidate} is a symlink; refusing to write through it")
    return candidate
