"""The S3 edge of the weights tier: client construction, bucket resolution, error mapping.

Every function that moves bytes takes a client, so tests and benchmarks point it at a
loopback S3-compatible server with `endpoint_url`.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from infra.core.errors import InputError, IntegrityError, NotFoundError, UserError
from infra.core.weights_layout import BUCKET_ENV, Manifest, manifest_key, parse_manifest
from infra.ops.aws import S3_CONDITION_FAILED_CODES

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                 "ExpiredToken", "InvalidToken"}


def make_client(endpoint_url: str | None = None, region: str | None = None,
                max_connections: int = 10) -> Any:
    """A boto3 S3 client with enough pooled connections for `max_connections` workers."""
    import boto3
    from botocore.config import Config

    config = Config(
        # One connection per worker, plus headroom for HEADs; botocore's default pool is 10.
        max_pool_connections=max(10, max_connections + 2),
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
    )
    try:
        return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
    except ValueError as exc:  # botocore's "Invalid endpoint", urllib's "Invalid IPv6 URL"
        raise InputError("--endpoint-url", endpoint_url, "an http:// or https:// URL, e.g. http://127.0.0.1:9000",
                         str(exc)) from None


def resolve_bucket(bucket: str | None) -> str:
    value = bucket or os.environ.get(BUCKET_ENV, "")
    if not value:
        raise UserError(f"--bucket: no bucket given; pass --bucket NAME or set {BUCKET_ENV}")
    if not (3 <= len(value) <= 63) or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789.-"
                                          for c in value):
        raise InputError("--bucket", value, "an S3 bucket name: 3-63 of a-z, 0-9, '.', '-'")
    return value


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def describe_s3_error(exc: BaseException, bucket: str, key: str) -> Exception | None:
    """Turn a botocore error into a user error, or None if it is not one we understand."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == "NoSuchBucket":
            return NotFoundError(f"bucket {bucket!r} does not exist (check --bucket/--region)")
        if code in _DENIED_CODES:
            return NotFoundError(
                f"access denied to s3://{bucket}/{key} ({code}): the role lacks s3:GetObject "
                "there, or the object does not exist (S3 answers 403, not 404, for a missing "
                "key when the caller may not list that prefix)"
            )
        return None
    if isinstance(exc, EndpointConnectionError):
        return NotFoundError(f"cannot reach the S3 endpoint: {exc}")
    if isinstance(exc, NoCredentialsError):
        return NotFoundError("no AWS credentials found (IRSA/Pod Identity role, or AWS_* env)")
    return None


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in _NOT_FOUND_CODES


def is_condition_failed(exc: BaseException) -> bool:
    """A conditional write (If-None-Match / If-Match) did not hold: someone else wrote first."""
    status = str((getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error_code(exc) in S3_CONDITION_FAILED_CODES or status in S3_CONDITION_FAILED_CODES


def s3_request(bucket: str, key: str, call: Callable[[], Any], *, missing_ok: bool = False) -> Any:
    """Run one S3 request. A missing object is None when `missing_ok`; an error we understand
    becomes a user error; the rest propagate."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        if missing_ok and is_not_found(exc):
            return None
        mapped = describe_s3_error(exc, bucket, key)
        if mapped:
            raise mapped from None
        raise


def check_bucket(client: Any, bucket: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in {"404", "NoSuchBucket", "NotFound"}:
            raise NotFoundError(f"bucket {bucket!r} does not exist (check --bucket/--region)") from None
        mapped = describe_s3_error(exc, bucket, "")
        if mapped:
            raise mapped from None
        raise


def head(client: Any, bucket: str, key: str, *, checksums: bool = False) -> dict | None:
    """HeadObject, or None when the object does not exist; `checksums` asks S3 for the stored
    checksums of the object's bytes (ChecksumCRC32, ChecksumType)."""
    extra = {"ChecksumMode": "ENABLED"} if checksums else {}
    return s3_request(bucket, key, lambda: client.head_object(Bucket=bucket, Key=key, **extra), missing_ok=True)


def fetch_manifest(client: Any, bucket: str, model: str, revision: str) -> tuple[Manifest, str]:
    """The validated manifest of a model revision and its key; NotFound if it is absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = manifest_key(model, revision)
    try:
        raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        if is_not_found(exc):
            raise NotFoundError(
                f"no manifest at s3://{bucket}/{key}: model {model} revision {revision} was "
                "never uploaded or its upload did not finish (the manifest is written last)"
            ) from None
        mapped = describe_s3_error(exc, bucket, key)
        if mapped:
            raise mapped from None
        raise
    manifest = parse_manifest(raw, f"s3://{bucket}/{key}")
    if (manifest.model, manifest.revision) != (model, revision):
        raise IntegrityError(
            f"manifest s3://{bucket}/{key} describes {manifest.model}@{manifest.revision}, "
            f"not {model}@{revision}"
        )
    return manifest, key
