"""The in-VPC deployer over CodeBuild, against moto's server on 127.0.0.1 (S3, CodeBuild, CloudWatch
Logs), with botocore's Stubber where moto cannot say it: moto's `BatchGetBuilds` reports every
build SUCCEEDED at once and writes no log, so a failing build's status is stubbed
(`start_build`, `batch_get_builds`) and the build's log lines are written by the test."""
from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.core import deploy
from infra.core.errors import WorkspaceError
from infra.core.paths import REPO_ROOT
from infra.ops.deploy.codebuild import CodeBuildRunner, log_location

REGION = "us-east-1"
STACK = "prod"


class FakeClock:
    def __init__(self) -> None:
        self.t, self.slept = 0.0, []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def _project_inputs(prod_run) -> dict[str, Any]:
    return prod_run.project("llm-fleet").one("aws:codebuild/project:Project", "deployer-project").inputs


def create_project_request(inputs: dict[str, Any]) -> dict[str, Any]:
    """The program's CodeBuild project as a CreateProject request: pulumi-aws spells a few keys its
    own way (`buildTimeout`, `cloudwatchLogs`, tags as a map); everything else is the API's."""
    env, logs = inputs["environment"], inputs["logsConfig"]
    return {
        "name": inputs["name"], "description": inputs["description"], "serviceRole": inputs["serviceRole"],
        "source": inputs["source"], "artifacts": inputs["artifacts"],
        "environment": {k: env[k] for k in ("type", "image", "computeType", "environmentVariables", "privilegedMode",
                                            "imagePullCredentialsType")},
        "vpcConfig": inputs["vpcConfig"], "cache": inputs["cache"],
        "logsConfig": {"cloudWatchLogs": logs["cloudwatchLogs"], "s3Logs": logs["s3Logs"]},
        "timeoutInMinutes": inputs["buildTimeout"], "concurrentBuildLimit": inputs["concurrentBuildLimit"],
        "tags": [{"key": k, "value": v} for k, v in sorted(inputs["tags"].items())],
    }


def _events(lines: list[str]) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)  # CloudWatch Logs refuses events older than 14 days
    return [{"timestamp": now_ms + i, "message": m} for i, m in enumerate(lines)]


class BuildWritesItsLog:
    """A CodeBuild client that, once a build starts, writes `lines` into the log stream CodeBuild
    would give it (moto runs no build), and records the StartBuild request."""

    def __init__(self, client: Any, logs: Any, group: str, lines: list[str]) -> None:
        self.client, self.logs, self.group, self.lines = client, logs, group, lines
        self.started: list[dict[str, Any]] = []

    def start_build(self, **kwargs: Any) -> dict[str, Any]:
        self.started.append(kwargs)
        response = self.client.start_build(**kwargs)
        _, stream = log_location(response["build"], {"log_group": self.group}, STACK)
        self.logs.create_log_stream(logGroupName=self.group, logStreamName=stream)
        self.logs.put_log_events(logGroupName=self.group, logStreamName=stream,
                                 logEvents=_events(self.lines))
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture
def world(moto_endpoint, prod_run):
    """The deployer of the prod plan in moto: its source bucket, log group and CodeBuild project."""
    outputs = prod_run.project("llm-fleet").outputs[deploy.OUT_DEPLOYER]
    make = lambda service: boto3.client(service, region_name=REGION, endpoint_url=moto_endpoint)  # noqa: E731
    s3, logs, codebuild = make("s3"), make("logs"), make("codebuild")
    s3.create_bucket(Bucket=outputs["source_bucket"])
    logs.create_log_group(logGroupName=outputs["log_group"])
    codebuild.create_project(**create_project_request(_project_inputs(prod_run)))
    yield {"outputs": outputs, "s3": s3, "logs": logs, "codebuild": codebuild}
    codebuild.delete_project(name=outputs["project"])
    logs.delete_log_group(logGroupName=outputs["log_group"])
    for obj in s3.list_objects_v2(Bucket=outputs["source_bucket"]).get("Contents", []):
        s3.delete_object(Bucket=outputs["source_bucket"], Key=obj["Key"])
    s3.delete_bucket(Bucket=outputs["source_bucket"])


def _runner(world, codebuild: Any, clock: FakeClock | None = None) -> CodeBuildRunner:
    clients = {"codebuild": codebuild, "logs": world["logs"], "s3": world["s3"]}
    return CodeBuildRunner(REPO_ROOT, deployer_of=lambda stack: world["outputs"], region_of=lambda stack: REGION,
                           clients=lambda service, region: clients[service], clock=clock or FakeClock(), poll_s=5)


def test_the_programs_project_is_a_valid_create_project_request(world, prod_run):
    """botocore validates the request against CodeBuild's API model before moto sees it."""
    (project,) = world["codebuild"].batch_get_projects(names=[world["outputs"]["project"]])["projects"]
    assert project["name"] == "llm-fleet-prod-deployer"
    assert project["source"]["buildspec"] == _project_inputs(prod_run)["source"]["buildspec"]


def test_a_build_uploads_the_tree_starts_with_the_action_and_reads_its_result_back(world):
    preview = {"steps": [{"op": "create", "urn": "urn:pulumi:prod::llm-fleet-workloads::x"}], "changeSummary": {"create": 1}}
    lines = ["[Container] Entering phase BUILD", "Previewing update (prod)", *deploy.result_lines(preview), "done"]
    codebuild = BuildWritesItsLog(world["codebuild"], world["logs"], world["outputs"]["log_group"], lines)
    shown: list[str] = []
    result = _runner(world, codebuild).run(STACK, deploy.PREVIEW, on_output=shown.append,
                                           config_text="config: {rolled: back}\n")
    assert result.succeeded and result.document == preview
    assert "Previewing update (prod)" in shown and not [s for s in shown if s.startswith("::llm-fleet")]
    (request,) = codebuild.started
    env = {v["name"]: v for v in request["environmentVariablesOverride"]}
    assert env[deploy.ACTION_ENV] == {"name": deploy.ACTION_ENV, "value": "preview", "type": "PLAINTEXT"}
    assert env[deploy.STACK_ENV]["value"] == STACK and request["sourceTypeOverride"] == "S3"
    bucket, key = request["sourceLocationOverride"].split("/", 1)
    assert bucket == world["outputs"]["source_bucket"] and key.startswith(f"{deploy.SOURCE_PREFIX}{STACK}/")
    archive = zipfile.ZipFile(io.BytesIO(world["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()))
    names = set(archive.namelist())
    assert {"workloads/__main__.py", "workloads/Pulumi.yaml", "__main__.py", "Pulumi.yaml", "requirements.txt",
            "policies/__main__.py", f"policies/config.{STACK}.json", "stacks/prod.yaml"} <= names
    assert not [n for n in names if n.startswith(("tests/", "docs/", ".git"))]
    assert archive.read(f"Pulumi.{STACK}.yaml") == b"config: {rolled: back}\n"  # the rollback's config


def test_a_failing_build_reports_its_status_and_log_tail(world):
    build_id = f"{world['outputs']['project']}:0f0e0d0c-0000-4000-8000-000000000001"
    lines = ["error: update failed", "error: 1 resource failed"]
    stream = f"{STACK}/{build_id.split(':', 1)[1]}"
    world["logs"].create_log_stream(logGroupName=world["outputs"]["log_group"], logStreamName=stream)
    world["logs"].put_log_events(logGroupName=world["outputs"]["log_group"], logStreamName=stream,
                                 logEvents=_events(lines))
    codebuild = boto3.client("codebuild", region_name=REGION)
    stub = Stubber(codebuild)
    stub.add_response("start_build", {"build": {"id": build_id, "buildStatus": "IN_PROGRESS"}})
    stub.add_response("batch_get_builds", {"builds": [{"id": build_id, "buildStatus": "IN_PROGRESS"}]})
    stub.add_response("batch_get_builds", {"builds": [{"id": build_id, "buildStatus": "FAILED",
                                                       "logs": {"groupName": world["outputs"]["log_group"],
                                                                "streamName": stream}}]})
    clock = FakeClock()
    with stub:
        result = _runner(world, codebuild, clock).run(STACK, deploy.UP, on_output=lambda s: None)
    stub.assert_no_pending_responses()
    assert (result.status, result.succeeded, result.document) == ("FAILED", False, None)
    assert result.log_tail == tuple(lines) and clock.slept == [5]


def test_a_base_without_a_deployer_is_refused(world):
    runner = CodeBuildRunner(REPO_ROOT, deployer_of=lambda stack: None, region_of=lambda stack: REGION,
                             clients=lambda service, region: None)
    with pytest.raises(WorkspaceError, match="exports no `deployer`") as info:
        runner.run(STACK, deploy.UP, on_output=lambda s: None)
    assert info.value.kind == "not-found"
    with pytest.raises(WorkspaceError, match="not one of"):
        _runner(world, world["codebuild"]).run(STACK, "apply", on_output=lambda s: None)


def test_a_start_build_error_names_the_project(world):
    missing = dict(world["outputs"], project="no-such-project")
    runner = CodeBuildRunner(REPO_ROOT, deployer_of=lambda stack: missing, region_of=lambda stack: REGION,
                             clients=lambda service, region: {"codebuild": world["codebuild"], "logs": world["logs"],
                                                              "s3": world["s3"]}[service])
    with pytest.raises(WorkspaceError, match="cannot start the in-VPC up \\(no-such-project\\)"):
        runner.run(STACK, deploy.UP, on_output=lambda s: None)
