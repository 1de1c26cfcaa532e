"""`interfaces.InVpcRunner` over AWS CodeBuild (boto3): the stack's in-VPC deployer.

One run: zip the working tree (`source.source_archive`; a rollback's config replaces the stack
file), upload it under the deployer bucket's `sources/<stack>/<sha256>.zip`, `StartBuild` with
that S3 source and the action in `LLM_FLEET_ACTION` (plain variables only; the Pulumi token is the
project's SECRETS_MANAGER variable), then poll `BatchGetBuilds` and stream the build's CloudWatch
Logs stream (`GetLogEvents`) until the build has ended and its log is drained. What the build
printed back with `infra.core.deploy.result_lines` is parsed from the log.

CodeBuild facts relied on (API reference): `StartBuild.sourceLocationOverride` for an S3 source is
`<bucket>/<key>` of a zip; `Build.logs.groupName`/`streamName` appear once the build has a log
stream, which CodeBuild names `<logsConfig streamName>/<build id after the colon>`; a build ends in
SUCCEEDED, FAILED, FAULT, TIMED_OUT or STOPPED (`buildStatus`, IN_PROGRESS until then).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from infra.core import deploy
from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import Clock, InVpcResult, OnOutput, SystemClock
from infra.ops.deploy.source import source_archive

Clients = Callable[[str, str], Any]  # (service, region) -> boto3 client
LOG_TAIL_LINES = 40
IN_PROGRESS = "IN_PROGRESS"


def boto3_clients(endpoint_url: str | None = None) -> Clients:
    def make(service: str, region: str) -> Any:
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=endpoint_url)

    return make


def log_location(build: Mapping[str, Any], deployer: Mapping[str, Any], stack: str) -> tuple[str, str]:
    """(log group, log stream) of a build: what CodeBuild reports, else the name it will use."""
    logs = build.get("logs") or {}
    group = logs.get("groupName") or deployer["log_group"]
    stream = logs.get("streamName") or f"{stack}/{str(build['id']).split(':', 1)[-1]}"
    return group, stream


class CodeBuildRunner:
    def __init__(self, project_dir: Path | str, *, deployer_of: Callable[[str], Mapping[str, Any] | None],
                 region_of: Callable[[str], str], clients: Clients | None = None, clock: Clock | None = None,
                 poll_s: float = 5.0) -> None:
        self.project_dir = Path(project_dir)
        self.deployer_of = deployer_of
        self.region_of = region_of
        self.clients = clients or boto3_clients()
        self.clock = clock or SystemClock()
        self.poll_s = poll_s

    def _deployer(self, stack: str) -> Mapping[str, Any]:
        info = self.deployer_of(stack)
        if not info:
            raise WorkspaceError(
                f"{stack}: the base stack exports no `{deploy.OUT_DEPLOYER}` (deploy the base first; a stack with "
                "cluster.endpoint_public_access runs its workloads where you are)", kind="not-found")
        return info

    def run(self, stack: str, action: str, *, on_output: OnOutput, env: Mapping[str, str] | None = None,
            config_text: str | None = None) -> InVpcResult:
        from botocore.exceptions import BotoCoreError, ClientError

        if action not in deploy.ACTIONS:
            raise WorkspaceError(f"{stack}: in-VPC action {action!r} is not one of {', '.join(deploy.ACTIONS)}")
        info = self._deployer(stack)
        region = self.region_of(stack)
        codebuild, logs, s3 = (self.clients(s, region) for s in ("codebuild", "logs", "s3"))
        overrides = {f"Pulumi.{stack}.yaml": config_text} if config_text is not None else None
        archive = source_archive(self.project_dir, overrides)
        key = f"{info.get('source_prefix', deploy.SOURCE_PREFIX)}{stack}/{archive.sha256}.zip"
        variables = [{"name": deploy.ACTION_ENV, "value": action, "type": "PLAINTEXT"},
                     {"name": deploy.STACK_ENV, "value": stack, "type": "PLAINTEXT"}]
        variables += [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in sorted((env or {}).items())]
        try:
            s3.put_object(Bucket=info["source_bucket"], Key=key, Body=archive.data)
            build = codebuild.start_build(
                projectName=info["project"], sourceTypeOverride="S3",
                sourceLocationOverride=f"{info['source_bucket']}/{key}", environmentVariablesOverride=variables,
            )["build"]
        except (ClientError, BotoCoreError) as exc:
            raise WorkspaceError(f"{stack}: cannot start the in-VPC {action} ({info['project']}): {exc}",
                                 kind="unavailable") from None
        build_id = str(build["id"])
        on_output(f"in-VPC {action} of {stack}: build {build_id} ({len(archive.files)} files, s3://{info['source_bucket']}/{key})")
        lines: list[str] = []
        token: str | None = None
        group, stream = log_location(build, info, stack)
        try:
            while True:
                try:
                    build = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
                except (ClientError, BotoCoreError) as exc:
                    raise WorkspaceError(f"{stack}: build {build_id}: cannot read its status: {exc}") from None
                done = build.get("buildStatus", IN_PROGRESS) != IN_PROGRESS
                group, stream = log_location(build, info, stack)
                token = self._drain(logs, group, stream, token, lines, on_output)
                if done:
                    break
                self.clock.sleep(self.poll_s)
        except KeyboardInterrupt:
            print(f"interrupted: build {build_id} keeps running in the VPC (stopping it mid-update would leave the "
                  f"stack locked); follow it in log group {group}", file=sys.stderr)
            raise
        status = str(build.get("buildStatus"))
        try:
            document = deploy.parse_result(lines)
        except ValueError as exc:
            raise WorkspaceError(f"{stack}: build {build_id}: {exc}") from None
        on_output(f"in-VPC {action} of {stack}: build {build_id} {status}")
        return InVpcResult(build_id, status, document, tuple(lines[-LOG_TAIL_LINES:]))

    @staticmethod
    def _drain(logs: Any, group: str, stream: str, token: str | None, lines: list[str], on_output: OnOutput) -> str | None:
        """Every event after `token`; returns the token to continue from."""
        from botocore.exceptions import ClientError

        while True:
            kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
            if token:
                kwargs["nextToken"] = token
            try:
                page = logs.get_log_events(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return token  # the stream appears once the build is provisioned
                raise WorkspaceError(f"cannot read the build log {group}/{stream}: {exc}") from None
            for event in page.get("events") or []:
                for line in str(event.get("message", "")).splitlines():
                    lines.append(line)
                    if not line.startswith((deploy.RESULT_PREFIX, deploy.RESULT_END)):
                        on_output(line)
            nxt = page.get("nextForwardToken")
            if not nxt or nxt == token:  # the same token again: nothing newer yet
                return nxt or token
            token = nxt
