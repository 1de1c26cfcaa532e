"""AWS facts the operations share, the Price List API client of `prices refresh` (boto3), and
its errors as user errors.

The refresh itself (`infra.core.catalog.refresh`) is pure over an injected client; the command
layer (`infra/cli/cost.py`) makes the client here and hands it in.
"""
from __future__ import annotations

from typing import Any, Callable

from infra.core.errors import UserError

# A conditional S3 write lost: 412 when If-None-Match/If-Match does not hold, 409 when two
# conditional writes of one key race (AWS S3 User Guide, "conditional writes").
S3_CONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

# The Price List API endpoint lives in us-east-1 whatever region is priced.
PRICING_ENDPOINT_REGION = "us-east-1"


def pricing_client(factory: Callable[..., Any] | None = None) -> Any:
    """A boto3 `pricing` client on the Price List API endpoint (us-east-1)."""
    if factory is None:
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - boto3 is a runtime requirement
            raise UserError(f"prices refresh needs boto3 ({exc}); pip install -r requirements.txt") from None
        factory = boto3.client
    return factory("pricing", region_name=PRICING_ENDPOINT_REGION)


def explain_aws_error(exc: Exception) -> UserError:
    """An AWS client error of the refresh as a one-line user error that says how to fix it."""
    name = exc.__class__.__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return UserError(
            "prices refresh needs AWS credentials with pricing:GetProducts (the Price List API, us-east-1); "
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and retry"
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return UserError(f"prices refresh could not reach the Price List API endpoint in us-east-1 ({exc})")
    return UserError(f"prices refresh failed: {name}: {exc}")
