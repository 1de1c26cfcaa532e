"""Deployer: the in-VPC AWS CodeBuild project that runs the workloads project of a private cluster.

With `endpoint_public_access: false` the EKS API server is reachable from the VPC only (EKS user
guide, cluster endpoint: "Any kubectl commands must come from within the VPC or a connected
network"), so the base project creates this deployer in the private subnets and `python -m infra
deploy` starts it to run `pulumi <action>` of `workloads/` with the policy pack, and the
rollout's in-cluster gates (Prometheus queries through the API server).

Children:

* a security group for the builds (egress TCP 443 only: Pulumi Cloud, PyPI, the API server) and a
  rule on the cluster security group admitting it on 443;
* the build role (trusted by codebuild.amazonaws.com for this project only) with the least it
  needs: its log group, the VPC network interfaces CodeBuild creates in our subnets, the source
  and cache prefixes of its bucket, the Pulumi access token secret, `eks:DescribeCluster`; and an
  EKS access entry with cluster-admin (charts create CRDs and RBAC, which Kubernetes only lets a
  principal grant when it holds those permissions itself);
* a log group with retention from config, and the source bucket (SSE-KMS with the AWS-managed
  key, versioning, public access blocked, TLS only, sources and caches expiring);
* the CodeBuild project: pinned image, the buildspec of `buildspec()`, no plain secrets.

IAM, Pod Identity and ECR resources stay in the base; this role cannot create any of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import yaml

from infra.core import deploy
from infra.core.config import LISTENER_PORT, DeployerConfig
from infra.core.paths import POLICIES_DIRNAME, WORKLOADS_DIRNAME
from infra.program.components.cluster import CLUSTER_ADMIN_POLICY
from infra.program.components.common import AwsContext, merge_tags, policy_json
from infra.program.components.weight_store import bucket_policy_document

HTTPS = LISTENER_PORT  # the API server and every upstream the build talks to listen on 443
PYTHON_RUNTIME = "3.11"  # the CodeBuild runtime-versions key the build pins (requirements need >= 3.11)
PIP_CACHE = "/root/.cache/pip/**/*"


def buildspec(cfg: DeployerConfig) -> str:
    """The build: install the pinned Pulumi CLI (checksum-verified) and the project's Python
    requirements, then run the requested action of the workloads project for the stack.

    `preview` prints its `--json` document back through the log (`infra.core.deploy`);
    `prometheus` runs the health gate's queries through the API server's service proxy;
    `bench` runs the bench gate's Job through the API server and prints its result back.
    """
    pulumi_cli = ("pulumi --cwd " + WORKLOADS_DIRNAME + ' --non-interactive --stack "$' + deploy.STACK_ENV + '"')
    pack = (f'--policy-pack "$CODEBUILD_SRC_DIR/{POLICIES_DIRNAME}" '
            f'--policy-pack-config "$CODEBUILD_SRC_DIR/{POLICIES_DIRNAME}/config.${deploy.STACK_ENV}.json"')
    tarball = "pulumi-v${PULUMI_VERSION}-linux-x64.tar.gz"
    run = "\n".join([
        f'case "${deploy.ACTION_ENV}" in',
        f"  {deploy.UP}) {pulumi_cli} up --yes {pack} ;;",
        f"  {deploy.PREVIEW}) rc=0; {pulumi_cli} preview --json {pack} > /tmp/preview.json || rc=$?",
        "    .venv/bin/python -m infra in-vpc emit /tmp/preview.json; exit $rc ;;",
        f"  {deploy.REFRESH}) {pulumi_cli} refresh --yes ;;",
        f"  {deploy.DESTROY}) {pulumi_cli} destroy --yes ;;",
        f'  {deploy.PROMETHEUS}) .venv/bin/python -m infra in-vpc prometheus --stack "${deploy.STACK_ENV}" ;;',
        f'  {deploy.BENCH}) .venv/bin/python -m infra in-vpc bench --stack "${deploy.STACK_ENV}" ;;',
        f'  *) echo "unknown {deploy.ACTION_ENV}=${deploy.ACTION_ENV} (one of: {" ".join(deploy.ACTIONS)})"; exit 2 ;;',
        "esac",
    ])
    doc = {
        "version": 0.2,
        "env": {"shell": "bash", "variables": {"PULUMI_VERSION": cfg.pulumi_version,
                                                "PULUMI_SKIP_UPDATE_CHECK": "true"}},
        "phases": {
            "install": {
                "runtime-versions": {"python": PYTHON_RUNTIME},
                "commands": [
                    f'curl -fsSL -o /tmp/pulumi.tgz "https://get.pulumi.com/releases/sdk/{tarball}"',
                    'curl -fsSL -o /tmp/pulumi-checksums.txt "https://github.com/pulumi/pulumi/releases/download/'
                    'v${PULUMI_VERSION}/pulumi-${PULUMI_VERSION}-checksums.txt"',
                    f'echo "$(grep " {tarball}$" /tmp/pulumi-checksums.txt | cut -d" " -f1)  /tmp/pulumi.tgz" '
                    "| sha256sum -c -",
                    'tar -xzf /tmp/pulumi.tgz -C /opt && export PATH="/opt/pulumi:$PATH"',
                    "python -m venv .venv && .venv/bin/pip install -q -r requirements.txt",
                    f"python -m venv {POLICIES_DIRNAME}/venv && "
                    f"{POLICIES_DIRNAME}/venv/bin/pip install -q -r {POLICIES_DIRNAME}/requirements.txt",
                ],
            },
            "pre_build": {"commands": [f'pulumi --cwd {WORKLOADS_DIRNAME} stack select --create "${deploy.STACK_ENV}"']},
            "build": {"commands": [run]},
        },
        "cache": {"paths": [PIP_CACHE]},
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def build_role_policy(*, ctx: AwsContext, log_group_arn: str, bucket_arn: str, subnet_ids: Sequence[str],
                      cluster_arn: str, token_secret_arn: str | None, bench_secret_arn: str | None = None) -> str:
    """The build role's permissions: nothing it does not use (CodeBuild user guide: service role
    and VPC permissions)."""
    statements = [
        {"Sid": "BuildLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"]},
        # The network interfaces CodeBuild puts into our subnets (these actions take no resource ARNs).
        {"Sid": "VpcNetworkInterfaces", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeDhcpOptions",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"]},
        {"Sid": "VpcNetworkInterfacePermission", "Effect": "Allow", "Action": ["ec2:CreateNetworkInterfacePermission"],
         "Resource": ctx.arn("ec2", "network-interface/*"),
         "Condition": {"StringEquals": {"ec2:AuthorizedService": f"codebuild.{ctx.dns_suffix}"},
                       "ArnEquals": {"ec2:Subnet": [ctx.arn("ec2", f"subnet/{s}") for s in subnet_ids]}}},
        {"Sid": "SourceBucket", "Effect": "Allow", "Action": ["s3:GetBucketAcl", "s3:GetBucketLocation"],
         "Resource": [bucket_arn]},
        {"Sid": "Sources", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": [f"{bucket_arn}/{deploy.SOURCE_PREFIX}*"]},
        {"Sid": "BuildCache", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"{bucket_arn}/{deploy.CACHE_PREFIX}*"]},
        # The kubeconfig of the base authenticates with `aws eks get-token` (no permission needed);
        # the prometheus action reads the endpoint and CA itself.
        {"Sid": "DescribeCluster", "Effect": "Allow", "Action": ["eks:DescribeCluster"], "Resource": [cluster_arn]},
    ]
    if token_secret_arn:
        statements.append({"Sid": "PulumiAccessToken", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                           "Resource": [token_secret_arn]})
    if bench_secret_arn:  # the bench action hands the bench tenant's JWT to its Job
        statements.append({"Sid": "BenchTenantToken", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                           "Resource": [bench_secret_arn]})
    return policy_json(statements)


def build_trust_policy(ctx: AwsContext, project_arn: str) -> str:
    """codebuild.amazonaws.com for this one project (CodeBuild's confused-deputy guidance)."""
    return policy_json([{
        "Effect": "Allow", "Principal": {"Service": f"codebuild.{ctx.dns_suffix}"}, "Action": ["sts:AssumeRole"],
        "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}, "ArnLike": {"aws:SourceArn": project_arn}},
    }])


@dataclass(frozen=True)
class DeployerArgs:
    project_name: str  # also the log group's and role's base name
    bucket_name: str
    stack: str
    aws: AwsContext
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # private subnets
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    config: DeployerConfig  # llm-fleet:deployer (infra/core/config.py holds the defaults)
    tags: Mapping[str, str] = field(default_factory=dict)


class Deployer(pulumi.ComponentResource):
    project: aws.codebuild.Project
    role: aws.iam.Role
    bucket: aws.s3.Bucket
    log_group: aws.cloudwatch.LogGroup
    access: aws.eks.AccessPolicyAssociation

    def __init__(self, name: str, args: DeployerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:deployer:Deployer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx, cfg, tags = args.aws, args.config, dict(args.tags)
        project_arn = ctx.arn("codebuild", f"project/{args.project_name}")

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description=f"Builds of {args.project_name} (egress HTTPS only)",
            tags=merge_tags(tags, Name=f"{args.project_name}-builds"), opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-egress-https", security_group_id=self.security_group.id, cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp", from_port=HTTPS, to_port=HTTPS,
            description="Pulumi service, PyPI, Pulumi CLI downloads, the EKS API", tags=tags, opts=child,
        )
        # The private endpoint's network interfaces carry the cluster security group, which
        # admits only its own members until told otherwise.
        self.api_access = aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-cluster-api", security_group_id=args.cluster_security_group_id,
            referenced_security_group_id=self.security_group.id, ip_protocol="tcp", from_port=HTTPS, to_port=HTTPS,
            description=f"EKS API from the builds of {args.project_name}", tags=tags, opts=child,
        )

        # Fixed names (the log group CodeBuild writes to, the project, the bucket, the access
        # entry keyed by the role) are released before a replacement takes them.
        fixed = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/codebuild/{args.project_name}",
            retention_in_days=cfg.log_retention_days, tags=tags, opts=fixed,
        )
        self.bucket = self._source_bucket(name, args, tags)

        self.role = aws.iam.Role(
            f"{name}-role",  # a generated name: a replacement never collides
            description=f"Builds of {args.project_name}: the workloads project of stack {args.stack}",
            assume_role_policy=build_trust_policy(ctx, project_arn), max_session_duration=3600,
            tags=tags, opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.id,
            policy=pulumi.Output.all(self.log_group.arn, self.bucket.arn, args.cluster_arn, *args.subnet_ids).apply(
                lambda v: build_role_policy(ctx=ctx, log_group_arn=v[0], bucket_arn=v[1], cluster_arn=v[2],
                                            subnet_ids=v[3:], token_secret_arn=cfg.access_token_secret_arn,
                                            bench_secret_arn=cfg.bench_token_secret_arn)),
            opts=child,
        )
        entry = aws.eks.AccessEntry(
            f"{name}-access", cluster_name=args.cluster_name, principal_arn=self.role.arn, type="STANDARD",
            tags=tags, opts=fixed,
        )
        self.access = aws.eks.AccessPolicyAssociation(
            f"{name}-access-admin", cluster_name=args.cluster_name, principal_arn=entry.principal_arn,
            policy_arn=CLUSTER_ADMIN_POLICY, access_scope={"type": "cluster"}, opts=fixed,
        )

        variables = [
            {"name": deploy.STACK_ENV, "value": args.stack, "type": "PLAINTEXT"},
            {"name": "PULUMI_BACKEND_URL", "value": cfg.backend_url, "type": "PLAINTEXT"},
        ]
        if cfg.access_token_secret_arn:
            variables.append({"name": "PULUMI_ACCESS_TOKEN", "value": cfg.access_token_secret_arn,
                              "type": "SECRETS_MANAGER"})
        self.project = aws.codebuild.Project(
            f"{name}-project",
            name=args.project_name,
            description=f"Runs the workloads project of stack {args.stack} inside the VPC (python -m infra deploy)",
            service_role=self.role.arn,
            build_timeout=cfg.build_timeout_minutes,
            concurrent_build_limit=1,  # one in-VPC operation per stack at a time
            artifacts={"type": "NO_ARTIFACTS"},
            source={"type": "S3", "buildspec": buildspec(cfg),
                    "location": f"{args.bucket_name}/{deploy.SOURCE_PREFIX}{args.stack}/current.zip"},
            environment={
                "type": "LINUX_CONTAINER", "compute_type": cfg.compute_type, "image": cfg.build_image,
                # CodeBuild's own credentials: curated and public images (a private ECR image needs a
                # repository policy trusting codebuild.amazonaws.com; docs/program.md).
                "image_pull_credentials_type": "CODEBUILD",
                "privileged_mode": False, "environment_variables": variables,
            },
            vpc_config={"vpc_id": args.vpc_id, "subnets": list(args.subnet_ids),
                        "security_group_ids": [self.security_group.id]},
            logs_config={"cloudwatch_logs": {"status": "ENABLED", "group_name": self.log_group.name,
                                             "stream_name": args.stack},
                         "s3_logs": {"status": "DISABLED"}},
            cache={"type": "S3", "location": f"{args.bucket_name}/{deploy.CACHE_PREFIX}{args.stack}"},
            tags=tags,
            # CodeBuild checks the role's VPC permissions when the project is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy], delete_before_replace=True),
        )
        self.register_outputs({"project": self.project.name, "role_arn": self.role.arn,
                               "source_bucket": self.bucket.bucket, "log_group": self.log_group.name})

    def outputs(self) -> pulumi.Output:
        """The base stack's `deployer` output: what `deploy` needs to start a build."""
        return pulumi.Output.all(self.project.name, self.bucket.bucket, self.log_group.name, self.role.arn,
                                 self.access.id).apply(lambda v: {
                                     "project": v[0], "source_bucket": v[1], "source_prefix": deploy.SOURCE_PREFIX,
                                     "log_group": v[2], "role_arn": v[3]})

    def _source_bucket(self, name: str, args: DeployerArgs, tags: dict[str, str]) -> aws.s3.Bucket:
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=True,
                               tags=merge_tags(tags, Name=args.bucket_name),
                               opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
        aws.s3.BucketOwnershipControls(f"{name}-bucket-ownership", bucket=bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-bucket-public-access-block", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        # SSE-KMS with the AWS-managed key: no key to pay for, and S3 grants its use to the account.
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-bucket-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
            opts=child)
        versioning = aws.s3.BucketVersioning(f"{name}-bucket-versioning", bucket=bucket.id,
                                             versioning_configuration={"status": "Enabled"}, opts=child)
        days = args.config.source_retention_days
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-bucket-lifecycle", bucket=bucket.id,
            rules=[{"id": f"expire-{prefix.rstrip('/')}", "status": "Enabled", "filter": {"prefix": prefix},
                    "expiration": {"days": days}, "noncurrent_version_expiration": {"noncurrent_days": 1},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1}}
                   for prefix in (deploy.SOURCE_PREFIX, deploy.CACHE_PREFIX)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        aws.s3.BucketPolicy(f"{name}-bucket-policy", bucket=bucket.id,
                            policy=bucket.arn.apply(bucket_policy_document),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]))
        return bucket
