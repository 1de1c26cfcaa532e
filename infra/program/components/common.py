"""Small pieces the components share: the AWS account context, tags, IAM policy documents.

Pure helpers; nothing here registers a resource.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from infra.core.money import usd


@dataclass(frozen=True)
class AwsContext:
    """Facts about the target account, looked up once by the program (`aws.get_*` invokes)."""

    account_id: str
    region: str
    partition: str = "aws"
    dns_suffix: str = "amazonaws.com"

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def managed_policy(self, name: str) -> str:
        return f"arn:{self.partition}:iam::aws:policy/{name}"


def merge_tags(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """Config tags plus resource-specific ones (extra keys win; `Name` is the usual one)."""
    out = dict(base)
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def policy_json(statements: list[dict[str, Any]]) -> str:
    """An IAM policy document, rendered deterministically."""
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def assume_role_policy(principal_service: str, actions: tuple[str, ...] = ("sts:AssumeRole",),
                       condition: dict[str, Any] | None = None) -> str:
    stmt: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": principal_service},
        "Action": list(actions),
    }
    if condition:
        stmt["Condition"] = condition
    return policy_json([stmt])


def iam_principal_of(caller_arn: str) -> str | None:
    """The IAM principal an access entry names for a caller (`sts get-caller-identity` ARN).

    An assumed role's session ARN (`arn:aws:sts::123456789012:assumed-role/NAME/SESSION`) maps to
    `arn:aws:iam::123456789012:role/NAME`: a role path is not in the session ARN, so a role with a
    path must be named in config (cluster.deployer_principal_arn). Users map to themselves; the
    account root gets no entry (None).
    """
    parts = caller_arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    partition, service, account, resource = parts[1], parts[2], parts[4], parts[5]
    if service == "sts" and resource.startswith("assumed-role/"):
        return f"arn:{partition}:iam::{account}:role/{resource.split('/')[1]}"
    if service == "iam" and resource.startswith(("user/", "role/")):
        return caller_arn
    return None


def short_hash(*parts: str, n: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def fleet_plan_summary(plan: Any) -> dict[str, Any]:
    """The fleet plan in a few numbers (a stack output; the full plan is `size --json`)."""
    return {
        "model": plan.model,
        "instance_type": plan.instance_type,
        "gpu": plan.gpu,
        "precision": plan.precision,
        "tensor_parallel": plan.tensor_parallel,
        "azs": plan.azs,
        "replicas_per_node": plan.replicas_per_node,
        "replicas_per_az": plan.replicas_per_az,
        "replicas_max": plan.replicas_max,
        "nodes_per_az": {"min": plan.nodes_per_az.min, "desired": plan.nodes_per_az.desired, "max": plan.nodes_per_az.max},
        "warm_spares_per_az": plan.warm_spares_per_az,
        "predicted_ttft_p95_ms": round(plan.predicted.ttft_p95_ms, 1),
        "predicted_tpot_p95_ms": round(plan.predicted.tpot_p95_ms, 2),
        "predicted_e2e_p95_ms": round(plan.predicted.e2e_p95_ms, 1),
        "usd_per_hour_baseline": usd(plan.cost.usd_per_hour_baseline),
        "usd_per_hour_max": usd(plan.cost.usd_per_hour_max),
    }
