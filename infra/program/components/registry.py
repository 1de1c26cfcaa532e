"""ImageRegistry: the stack's images come from its own private ECR registry, never from Docker
Hub's anonymous limit (10 pulls per hour per IP; our NAT gateways are three IPs).

* A pull-through cache rule per upstream host ECR supports (charts.yaml `registries`): the first
  pull of an image caches it under `<prefix>/<upstream path>`. Docker Hub and GitHub Container
  Registry need credentials: ECR reads them from a Secrets Manager secret whose name starts with
  `ecr-pullthroughcache/` (Amazon ECR user guide, "Creating a pull through cache rule"). The
  secrets are created here, empty; their values (`{"username": ..., "accessToken": ...}`) are set
  out of band (docs/program.md, Images), since no stack config holds a secret.
* A private repository per mirrored image (nvcr.io is no pull-through upstream), filled by the
  mirror step (`python -m infra images --stack S --script`), tags immutable.
* The node role may import upstream images into the pull-through repositories (a node's pull
  of a tag not cached yet), and create them, under those prefixes only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws

from infra.core.catalog.charts import ChartCatalog, ecr_registry, ecr_repository, load_chart_catalog
from infra.program.components.common import AwsContext, merge_tags, policy_json

SECRET_PREFIX = "ecr-pullthroughcache/"  # required by ECR for pull-through credentials


def pull_through_policy(ctx: AwsContext, prefixes: list[str]) -> str:
    """What a node needs on a cache miss (ECR user guide, "IAM permissions required to sync an
    upstream registry"): import the upstream image, creating its repository on first use."""
    return policy_json([{
        "Sid": "PullThroughCacheMiss",
        "Effect": "Allow",
        "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
        "Resource": [ctx.arn("ecr", f"repository/{p}/*") for p in sorted(prefixes)],
    }])


@dataclass(frozen=True)
class ImageRegistryArgs:
    aws: AwsContext
    name_prefix: str  # llm-fleet-prod: names of the credential secrets
    node_role_name: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)
    catalog: ChartCatalog | None = None  # None: charts.yaml


class ImageRegistry(pulumi.ComponentResource):
    host: str
    rules: dict[str, aws.ecr.PullThroughCacheRule]
    secrets: dict[str, aws.secretsmanager.Secret]
    mirrors: dict[str, aws.ecr.Repository]

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:images:ImageRegistry", name, None, opts)
        ctx, tags = args.aws, args.tags
        cat = args.catalog or load_chart_catalog()
        child = pulumi.ResourceOptions(parent=self)
        # One rule per prefix and one repository per name: replacements delete the old first.
        fixed = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.host = ecr_registry(ctx.account_id, ctx.region, ctx.dns_suffix)
        self.rules, self.secrets, self.mirrors = {}, {}, {}

        for up in cat.registries.values():
            if up.mirrored:
                continue
            credential, after = None, []
            if up.credentials:
                secret = aws.secretsmanager.Secret(
                    f"{name}-{up.ecr_prefix}-credentials",
                    # A generated suffix: the name stays free for a replacement (a deleted secret's
                    # name is reserved during its recovery window).
                    name_prefix=f"{SECRET_PREFIX}{args.name_prefix}-{up.ecr_prefix}-",
                    description=f"{up.upstream_url} credentials for the ECR pull-through cache "
                                '({"username": ..., "accessToken": ...}, set out of band)',
                    tags=merge_tags(tags, Name=f"{args.name_prefix}-{up.ecr_prefix}-pull-through"),
                    opts=child,
                )
                self.secrets[up.ecr_prefix] = secret
                credential, after = secret.arn, [secret]
            self.rules[up.ecr_prefix] = aws.ecr.PullThroughCacheRule(
                f"{name}-{up.ecr_prefix}",
                ecr_repository_prefix=up.ecr_prefix,
                upstream_registry_url=up.upstream_url,
                credential_arn=credential,
                opts=pulumi.ResourceOptions.merge(fixed, pulumi.ResourceOptions(depends_on=after)),
            )

        for ref in cat.images.values():
            if not cat.upstream(ref.host, f"image {ref.key}").mirrored:
                continue
            repo = ecr_repository(ref.repository, cat)
            self.mirrors[ref.key] = aws.ecr.Repository(
                f"{name}-mirror-{ref.key}",
                name=repo,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS"}],
                # Copies only: the mirror step refills them, so a replacement or destroy may drop them.
                force_delete=True,
                tags=merge_tags(tags, Name=repo),
                opts=fixed,
            )

        aws.iam.RolePolicy(
            f"{name}-node-pull-through",
            role=args.node_role_name,
            policy=pull_through_policy(ctx, list(self.rules)),
            opts=child,
        )
        self.register_outputs({
            "host": self.host,
            "pull_through_prefixes": sorted(self.rules),
            "credential_secrets": {k: s.arn for k, s in self.secrets.items()},
            "mirrors": {k: r.name for k, r in self.mirrors.items()},
        })
