"""Preflight checks against moto's server (offerings, S3, KMS, STS) and botocore's Stubber
(service quotas: moto serves only VPC quotas; capacity reservations: not implemented by moto)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from infra.ops.preflight import checks
from infra.cli.preflight import run as cli_run
from infra.ops.preflight.inputs import QUOTA_CODES, preflight_inputs
from preflight_support import BUCKET, MANIFEST, REGION, STACK

REPO = Path(__file__).resolve().parents[2]
CR = {"us-west-2a": "cr-0aaaaaaaaaaaaaaa1", "us-west-2b": "cr-0bbbbbbbbbbbbbbb2", "us-west-2c": "cr-0ccccccccccccccc3"}


def quota_client(value=None, error=None, code="L-417A185B"):
    client = boto3.client("service-quotas", region_name=REGION)
    stub = Stubber(client)
    params = {"ServiceCode": "ec2", "QuotaCode": code}
    if error:
        stub.add_client_error("get_service_quota", service_error_code=error, expected_params=params)
    else:
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": float(value), "Unit": "None"}},
                          expected_params=params)
    stub.activate()
    return client


def reservation(rid, az, state="active", total=5, itype="p5.48xlarge", rtype="default", **extra):
    return {"CapacityReservationId": rid, "AvailabilityZone": az, "InstanceType": itype, "State": state,
            "TotalInstanceCount": total, "AvailableInstanceCount": total, "ReservationType": rtype, **extra}


def reservations_client(items=None, error=None):
    client = boto3.client("ec2", region_name=REGION)
    stub = Stubber(client)
    params = {"CapacityReservationIds": sorted(set(CR.values()))}
    if error:
        stub.add_client_error("describe_capacity_reservations", service_error_code=error, expected_params=params)
    else:
        stub.add_response("describe_capacity_reservations", {"CapacityReservations": items}, expected_params=params)
    stub.activate()
    return client


class Ec2Proxy:
    """moto for everything but DescribeCapacityReservations, which goes to a stubbed client."""

    def __init__(self, moto, stubbed):
        self.moto, self.stubbed = moto, stubbed

    def __getattr__(self, name):
        return getattr(self.stubbed if name == "describe_capacity_reservations" else self.moto, name)


def clients_for(endpoint, quota=None, ec2=None):
    def get(service):
        if service == "service-quotas":
            return quota
        if service == "ec2" and ec2 is not None:
            return ec2
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint)
    return get


@pytest.fixture(scope="module")
def inputs():
    return preflight_inputs(STACK, REPO, first_deploy=False)


def _project(tmp_path, **fleet_changes):
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((REPO / f"Pulumi.{STACK}.yaml").read_text())
    doc["config"]["llm-fleet:fleet"].update(fleet_changes)
    if fleet_changes.get("capacity_type") in ("reservation", "capacity-block"):
        doc["config"]["llm-fleet:gpu_nodes"]["capacity_reservation_ids"] = CR
    (tmp_path / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


# --- inputs (pure) ------------------------------------------------------------------------


def test_inputs_come_from_the_regional_plan(inputs):
    assert inputs.region == REGION and inputs.instance_type == "p5.48xlarge"
    assert inputs.vcpus_per_instance == 192
    assert inputs.required_vcpus == inputs.nodes_max_per_az * inputs.azs * 192
    assert inputs.quota == ("L-417A185B", "Running On-Demand P instances")
    assert inputs.manifest_key == MANIFEST
    assert inputs.bucket_name("123456789012") == BUCKET
    assert inputs.kms_alias_name("123456789012") == f"alias/{BUCKET}"


def test_spot_uses_the_spot_quota_and_unknown_families_skip(inputs):
    assert dataclasses.replace(inputs, capacity_type="spot").quota[0] == "L-7212CCBC"
    assert QUOTA_CODES[("p", "on-demand")][0] == "L-417A185B"
    g = dataclasses.replace(inputs, instance_type="g6e.48xlarge", instance_family="g")
    result = checks.vcpu_quota(g, quota_client(1))
    assert result.status == "skip" and "check its vCPU quota by hand" in result.detail


def test_outputs_and_flags_name_the_bucket():
    deployed = preflight_inputs(STACK, REPO, outputs={"weights_bucket": "from-outputs", "availability_zones": ["us-west-2b"]})
    assert deployed.bucket == "from-outputs" and deployed.sources["bucket"] == "stack output weights_bucket"
    assert deployed.named_azs == ("us-west-2b",) and deployed.first_deploy is False
    flagged = preflight_inputs(STACK, REPO, bucket="my-bucket", kms_alias="alias/k")
    assert flagged.bucket_name("1") == "my-bucket" and flagged.kms_alias_name("1") == "alias/k"
    assert flagged.first_deploy is True  # no outputs: not deployed yet


# --- everything against moto ----------------------------------------------------------------


def test_all_checks_pass_in_a_ready_region(moto_endpoint, world, inputs):
    report = checks.run_checks(inputs, clients_for(moto_endpoint, quota_client(inputs.required_vcpus)))
    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {"instance-offering": "pass", "vcpu-quota": "pass", "capacity-reservations": "skip",
                        "eks-version": "pass", "capacity-block-upgrade": "skip",
                        "weights-bucket": "pass", "kms-key": "pass", "weights-manifest": "pass",
                        # every image is there, but pinned by tag only and a few still pulled from upstream
                        "ecr-images": "warn"}, report.to_list()
    assert report.ok


def test_quota_shortfall_fails_with_the_increase_to_request(moto_endpoint, world, inputs):
    need = inputs.required_vcpus
    report = checks.run_checks(inputs, clients_for(moto_endpoint, quota_client(need // 2)))
    quota = next(c for c in report.checks if c.name == "vcpu-quota")
    assert quota.status == "fail" and f"increase of {need - need // 2} vCPUs" in quota.detail
    assert not report.ok


@pytest.mark.parametrize("error", ["AccessDeniedException", "NoSuchResourceException"])
def test_quota_api_errors_fail_the_check(inputs, error):
    result = checks.vcpu_quota(inputs, quota_client(error=error))
    assert result.status == "fail" and error in result.detail


def test_capacity_block_quota_shortfall_only_warns(inputs):
    result = checks.vcpu_quota(dataclasses.replace(inputs, capacity_type="capacity-block"), quota_client(192))
    assert result.status == "warn"


def test_type_not_offered_in_a_named_az(moto_endpoint, inputs):
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    named = dataclasses.replace(inputs, instance_type="p5en.48xlarge", named_azs=("us-west-2a", "us-west-2b"))
    _, result = checks.chosen_azs(named, ec2)
    assert result.status == "fail" and "not offered in us-west-2b" in result.detail


def test_too_few_azs_offer_the_type(moto_endpoint, inputs):
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    wide = dataclasses.replace(inputs, instance_type="p5en.48xlarge", named_azs=None, azs=4)
    azs, result = checks.chosen_azs(wide, ec2)
    assert result.status == "fail" and "offered in 3 AZ(s)" in result.detail and "the plan needs 4" in result.detail
    ok = dataclasses.replace(wide, azs=3)
    azs, result = checks.chosen_azs(ok, ec2)
    assert result.status == "pass" and azs == ["us-west-2a", "us-west-2c", "us-west-2d"]


def test_missing_storage_fails_but_is_skipped_before_the_first_deploy(moto_endpoint, inputs):
    report = checks.run_checks(inputs, clients_for(moto_endpoint, quota_client(inputs.required_vcpus)))
    by = {c.name: c for c in report.checks}
    assert by["weights-bucket"].status == "fail" and BUCKET in by["weights-bucket"].detail
    assert by["kms-key"].status == "fail"
    first = dataclasses.replace(inputs, first_deploy=True)
    report = checks.run_checks(first, clients_for(moto_endpoint, quota_client(inputs.required_vcpus)))
    by = {c.name: c for c in report.checks}
    assert [by[n].status for n in ("weights-bucket", "kms-key", "weights-manifest")] == ["skip"] * 3
    assert report.ok


def test_missing_manifest_says_how_to_upload(moto_endpoint, world, inputs):
    world["s3"].delete_object(Bucket=BUCKET, Key=MANIFEST)
    result = checks.weights_manifest(inputs, world["s3"], BUCKET, True)
    assert result.status == "fail" and "python -m infra weights upload --model meta-llama/Llama-3.3-70B-Instruct" in result.detail


def test_a_revision_missing_from_the_bucket_lists_what_the_bucket_has(moto_endpoint, world, inputs):
    """Issue 14: a stack copied from another region keeps a revision its own bucket never got."""
    model_dir = MANIFEST.rsplit("/", 2)[0]
    world["s3"].put_object(Bucket=BUCKET, Key=f"{model_dir}/v0-partial/model-00001.safetensors", Body=b"x")
    copied = dataclasses.replace(inputs, manifest_revision="v9")
    result = checks.weights_manifest(copied, world["s3"], BUCKET, True)
    assert result.status == "fail"
    assert "llm-fleet:weights.revision v9 is not in this bucket" in result.detail
    assert "revisions with a manifest: 6f6073b423013f6a7d4d9f39144961bfbfbc386b" in result.detail
    assert "incomplete (no manifest): v0-partial" in result.detail
    world["s3"].delete_object(Bucket=BUCKET, Key=f"{model_dir}/v0-partial/model-00001.safetensors")


def test_disabled_key_and_wrong_region_bucket_fail(moto_endpoint, world, inputs):
    world["kms"].disable_key(KeyId=world["key_id"])
    result = checks.kms_key(inputs, world["kms"], f"alias/{BUCKET}")
    assert result.status == "fail" and "Disabled" in result.detail
    east = dataclasses.replace(inputs, region="us-east-1")
    result = checks.weights_bucket(east, world["s3"], BUCKET)
    assert result.status == "fail" and "is in us-west-2, the stack is in us-east-1" in result.detail


# --- capacity reservations (Stubber) ----------------------------------------------------------


@pytest.fixture(scope="module")
def reserved():
    import tempfile

    project = _project(Path(tempfile.mkdtemp()), capacity_type="reservation")
    return preflight_inputs(STACK, project, first_deploy=False)


def test_active_matching_reservations_pass(reserved):
    items = [reservation(rid, az, total=reserved.nodes_max_per_az) for az, rid in CR.items()]
    result = checks.capacity_reservations(reserved, reservations_client(items))
    assert result.status == "pass" and "cr-0aaaaaaaaaaaaaaa1 (us-west-2a, active" in result.detail
    assert reserved.named_azs == tuple(sorted(CR))


@pytest.mark.parametrize("change, status, text", [
    ({"state": "scheduled", "StartDate": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)}, "fail", "state scheduled (starts 2026-12-01"),
    ({"state": "expired"}, "fail", "state expired, must be active"),
    ({"az": "us-west-2d"}, "fail", "is in us-west-2d, configured for us-west-2a"),
    ({"itype": "p4d.24xlarge"}, "fail", "reserves p4d.24xlarge, the plan uses p5.48xlarge"),
    ({"total": 1}, "fail", "holds 1 instances, the plan runs at least"),
    ({"total": "min"}, "warn", "bursts up to"),
])
def test_reservation_problems(reserved, change, status, text):
    # The burst-headroom cases need a plan whose max exceeds its min (the verified prod plan
    # carries its burst at baseline, so give it headroom here).
    if reserved.nodes_max_per_az <= reserved.nodes_min_per_az:
        reserved = dataclasses.replace(reserved, nodes_max_per_az=reserved.nodes_min_per_az + 2)
    items = []
    for az, rid in CR.items():
        kwargs = {"total": reserved.nodes_max_per_az}
        if rid == CR["us-west-2a"]:
            kwargs.update({k: v for k, v in change.items() if k != "total"})
            if "total" in change:
                kwargs["total"] = reserved.nodes_min_per_az if change["total"] == "min" else change["total"]
        items.append(reservation(rid, kwargs.pop("az", az), **kwargs))
    result = checks.capacity_reservations(reserved, reservations_client(items))
    assert result.status == status and text in result.detail, result.detail


def test_unknown_reservation_id_fails(reserved):
    result = checks.capacity_reservations(reserved, reservations_client(error="InvalidCapacityReservationId.NotFound"))
    assert result.status == "fail" and "not found in us-west-2" in result.detail


def test_capacity_block_must_be_a_capacity_block(reserved):
    blocks = dataclasses.replace(reserved, capacity_type="capacity-block")
    items = [reservation(rid, az, total=reserved.nodes_max_per_az) for az, rid in CR.items()]
    result = checks.capacity_reservations(blocks, reservations_client(items))
    assert result.status == "fail" and "capacity_type says capacity-block" in result.detail
    items = [reservation(rid, az, total=reserved.nodes_max_per_az, rtype="capacity-block") for az, rid in CR.items()]
    assert checks.capacity_reservations(blocks, reservations_client(items)).status == "pass"


def test_full_run_with_reservations_mixes_moto_and_stubber(moto_endpoint, world, reserved):
    items = [reservation(rid, az, total=reserved.nodes_max_per_az) for az, rid in CR.items()]
    ec2 = Ec2Proxy(boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint), reservations_client(items))
    report = checks.run_checks(reserved, clients_for(moto_endpoint, quota_client(reserved.required_vcpus), ec2))
    assert report.ok and {c.name: c.status for c in report.checks}["capacity-reservations"] == "pass"


# --- the command ---------------------------------------------------------------------------------


def _args(**kw):
    base = dict(stack=STACK, json=None, bucket=None, kms_alias=None, outputs=None, weights_model=None,
                first_deploy=False, endpoint_url=None, project_dir=str(REPO))
    return argparse.Namespace(**{**base, **kw})


def test_cli_table_and_exit_codes(moto_endpoint, world, capsys, inputs):
    assert cli_run(_args(), clients=clients_for(moto_endpoint, quota_client(inputs.required_vcpus))) == 0
    out = capsys.readouterr().out
    assert "llm-fleet preflight: stack prod-us-west-2 in us-west-2" in out and "preflight passed" in out
    assert "vcpu-quota" in out and "PASS" in out
    assert cli_run(_args(), clients=clients_for(moto_endpoint, quota_client(192))) == 4
    assert "preflight FAILED: 1 check(s)" in capsys.readouterr().out


def test_cli_json_and_outputs_file(moto_endpoint, world, tmp_path, capsys, inputs):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"weights_bucket": BUCKET, "availability_zones": ["us-west-2a", "us-west-2b", "us-west-2c"]}))
    code = cli_run(_args(json="-", outputs=str(outputs)), clients=clients_for(moto_endpoint, quota_client(inputs.required_vcpus)))
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["ok"] is True and doc["exit_code"] == 0
    assert doc["sources"]["bucket"] == "stack output weights_bucket"
    assert doc["sources"]["azs"] == "stack output availability_zones"
    assert [c["name"] for c in doc["checks"]][0] == "instance-offering"


def test_cli_bad_outputs_file_is_a_usage_error(tmp_path):
    from infra.core.errors import InputError

    bad = tmp_path / "o.json"
    bad.write_text("[1]")
    with pytest.raises(InputError, match="--outputs"):
        cli_run(_args(outputs=str(bad)), clients=lambda s: None)


@pytest.mark.parametrize("url", ["http://[::1", "notaurl", "ftp://host", "http://host:99999"])
def test_a_bad_endpoint_url_exits_2_without_a_traceback(capsys, url):
    """Issue 14: `preflight --endpoint-url "http://[::1"` was a ValueError traceback (exit 1)."""
    from infra.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["preflight", "--stack", STACK, "--endpoint-url", url])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--endpoint-url" in err and "http(s)://host[:port]" in err and "Traceback" not in err


# --- EKS version, capacity-block upgrades, images ---------------------------------------------


@pytest.mark.parametrize("version, day, status, text", [
    ("1.35", "2026-12-01", "pass", "standard support until 2027-03-27"),
    ("1.35", "2027-02-10", "warn", "plan the upgrade"),
    ("1.33", "2026-12-01", "warn", "extended support until 2027-07-29"),
    ("1.33", "2027-08-01", "fail", "ended on 2027-07-29"),
    ("1.36", "2026-12-01", "fail", "no support dates"),
])
def test_eks_version_support_window(inputs, version, day, status, text):
    from datetime import date

    result = checks.eks_version(dataclasses.replace(inputs, kubernetes_version=version), date.fromisoformat(day))
    assert result.status == status and text in result.detail, result


def _eks_stub(groups: dict):
    """An EKS client answering describe_nodegroup from `groups` (Stubber: moto's EKS needs a cluster)."""
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client("eks", region_name=REGION, aws_access_key_id="t",
                                                          aws_secret_access_key="t")
    stub = Stubber(client)
    for name, ng in groups.items():
        params = {"clusterName": f"llm-fleet-{STACK}", "nodegroupName": name}
        if ng is None:
            stub.add_client_error("describe_nodegroup", "ResourceNotFoundException", expected_params=params)
        else:
            stub.add_response("describe_nodegroup", {"nodegroup": {"nodegroupName": name, **ng}}, params)
    stub.activate()
    return client, stub


def test_capacity_block_groups_are_upgraded_at_zero_nodes(inputs):
    """EKS user guide, "Create a managed node group with Capacity Blocks for ML": upgrades want
    desired size 0. A pending version change on a group that still runs nodes fails, naming the
    command that scales it down; one at 0 nodes, or without a change, passes."""
    cb = dataclasses.replace(inputs, capacity_type="capacity-block", kubernetes_version="1.35", gpu_node_groups={
        "us-west-2a": "g-a", "us-west-2b": "g-b", "us-west-2c": "g-c"})
    client, stub = _eks_stub({
        "g-a": {"version": "1.34", "scalingConfig": {"minSize": 2, "desiredSize": 2, "maxSize": 3}},
        "g-b": {"version": "1.34", "scalingConfig": {"minSize": 0, "desiredSize": 0, "maxSize": 3}},
        "g-c": {"version": "1.35", "scalingConfig": {"minSize": 2, "desiredSize": 2, "maxSize": 3}},
    })
    result = checks.capacity_block_upgrade(cb, client)
    stub.assert_no_pending_responses()
    assert result.status == "fail" and "g-a (us-west-2a) runs 2 node(s)" in result.detail
    assert "--scaling-config minSize=0,desiredSize=0,maxSize=3" in result.detail and "g-b" not in result.detail
    client, _ = _eks_stub({"g-a": None, "g-b": {"version": "1.35", "scalingConfig": {"desiredSize": 1}},
                           "g-c": {"version": "1.34", "scalingConfig": {"desiredSize": 0}}})
    ok = checks.capacity_block_upgrade(cb, client)
    assert ok.status == "pass" and "g-a: not created yet" in ok.detail and "upgrade at 0 nodes" in ok.detail


def test_capacity_block_group_names_are_the_fixed_ones(tmp_path):
    project = _project(tmp_path, capacity_type="capacity-block", instance_usd_per_hour={"p5.48xlarge": 31.46})
    inp = preflight_inputs(STACK, project)
    assert inp.gpu_node_groups == {az: f"llm-fleet-{STACK}-gpu-{az}" for az in CR}


def test_a_missing_image_fails_and_names_the_mirror_step(moto_endpoint, world, inputs):
    ecr = world["ecr"]
    ecr.batch_delete_image(repositoryName="nvcr/nvidia/k8s-device-plugin", imageIds=[{"imageTag": "v0.20.0"}])
    result = checks.ecr_images(inputs, ecr)
    assert result.status == "fail" and "nvcr/nvidia/k8s-device-plugin:v0.20.0" in result.detail
    assert f"python -m infra images --stack {STACK} --script | bash" in result.detail
    ecr.delete_repository(repositoryName="quay/prometheus/prometheus", force=True)
    assert "quay/prometheus/prometheus:(chart tag)" in checks.ecr_images(inputs, ecr).detail


def test_images_before_the_first_deploy_are_skipped(inputs):
    result = checks.ecr_images(dataclasses.replace(inputs, first_deploy=True), ecr=None)
    assert result.status == "skip" and "mirror step" in result.detail
