"""The rollout state store in S3 (`state.s3` in the rollout plan): journal, lock, deployed records.

Keys under `s3://<bucket>/<prefix>/<environment>/`: `journal.json`, `history/<id>.json`,
`deployed/<stack>.json`, `lock.json`. The lock is taken with a conditional create
(`PutObject` with `If-None-Match: *`: S3 answers 412 PreconditionFailed when the key exists,
409 ConditionalRequestConflict when two creates race) and released by deleting it. A rollout
killed without running its `finally` leaves the lock behind: the next one is refused with the
holder's details, and `--break-lock` deletes it once you know that holder is gone.

Effectful (boto3); imported only when a plan configures `state.s3`.
"""
from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator, Mapping

from infra.core.errors import RolloutLockedError, UserError
from infra.ops.aws import S3_CONDITION_FAILED_CODES
from infra.ops.rollout.state import _check_stack, holder_text

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3StateStore:
    def __init__(self, bucket: str, prefix: str, environment: str, *, region: str | None = None,
                 client: Any = None, endpoint_url: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
        self.s3 = client
        self.bucket = bucket
        self.environment = environment
        self.base = "/".join(p for p in (prefix.strip("/"), environment) if p)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.base}"

    def _key(self, name: str) -> str:
        return f"{self.base}/{name}"

    def _get(self, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise UserError(f"{self.describe()}/{name}: cannot read ({exc.response.get('Error', {}).get('Code')})") from None
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{self.describe()}/{name}: not JSON") from None
        if not isinstance(doc, dict):
            raise UserError(f"{self.describe()}/{name}: not a JSON object")
        return doc

    def _put(self, name: str, doc: Mapping[str, Any], **extra: Any) -> None:
        body = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=body, ContentType="application/json", **extra)

    def read_journal(self) -> dict[str, Any] | None:
        return self._get("journal.json")

    def write_journal(self, doc: Mapping[str, Any]) -> None:
        self._put("journal.json", doc)

    def archive_journal(self, rollout_id: str, doc: Mapping[str, Any]) -> None:
        self._put(f"history/{rollout_id}.json", doc)
        self.s3.delete_object(Bucket=self.bucket, Key=self._key("journal.json"))

    def set_aside_journal(self, name: str) -> str:
        key = self._key(f"history/{name}.json")
        self.s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": self._key("journal.json")})
        self.s3.delete_object(Bucket=self.bucket, Key=self._key("journal.json"))
        return f"s3://{self.bucket}/{key}"

    def read_deployed(self, stack: str) -> dict[str, Any] | None:
        return self._get(f"deployed/{_check_stack(stack)}.json")

    def write_deployed(self, stack: str, doc: Mapping[str, Any]) -> None:
        self._put(f"deployed/{_check_stack(stack)}.json", doc)

    @contextlib.contextmanager
    def lock(self, holder: Mapping[str, Any]) -> Iterator[None]:
        from botocore.exceptions import ClientError

        try:
            self._put("lock.json", holder, IfNoneMatch="*")
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if err.get("Code") in S3_CONDITION_FAILED_CODES or status in S3_CONDITION_FAILED_CODES:
                current = self._get("lock.json")
                raise RolloutLockedError(
                    f"rollout of environment {self.environment!r} is locked by {holder_text(current)} "
                    f"({self.describe()}/lock.json); wait for it to finish, or if that rollout is dead, "
                    "run again with --break-lock"
                ) from None
            raise
        try:
            yield
        finally:
            self.s3.delete_object(Bucket=self.bucket, Key=self._key("lock.json"))

    def break_lock(self) -> str:
        current = self._get("lock.json")
        if current is None:
            return f"{self.describe()}/lock.json: no lock held"
        self.s3.delete_object(Bucket=self.bucket, Key=self._key("lock.json"))
        return f"{self.describe()}/lock.json: removed the lock of {holder_text(current)}"
