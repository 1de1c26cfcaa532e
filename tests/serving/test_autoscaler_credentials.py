"""The Cluster Autoscaler starts only once its Pod Identity association is effective.

EKS user guide, "Learn how EKS Pod Identity grants pods access to AWS services": associations are
eventually consistent, and the credential variables are injected when a pod is admitted, so a
pod admitted before the association is visible never gets credentials. The gate is a Job whose
every attempt is a new pod, running as the autoscaler's service account; the chart is installed
only after it succeeds.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.program.serving import autoscaling
from tests.serving.support import AUTOSCALER_ASSOCIATION
from infra.program.serving.spec import ServingSpec


def test_the_check_job_runs_as_the_autoscaler_and_retries_in_new_pods(prod_spec: ServingSpec):
    job = autoscaling.credentials_check_job(prod_spec, "ca-role-123", "a-42")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["metadata"]["namespace"] == prod_spec.defaults.autoscaler_namespace
    assert pod["serviceAccountName"] == prod_spec.defaults.autoscaler_service_account
    assert pod["restartPolicy"] == "Never" and spec["backoffLimit"] >= 3  # new pods, admitted afresh
    assert job["spec"]["template"]["metadata"]["annotations"] == {autoscaling.ASSOCIATION_ANNOTATION: "a-42"}
    (c,) = pod["containers"]
    assert c["image"] == prod_spec.hydrator.image  # Python + boto3, already pinned and pulled
    assert {"name": "EXPECTED_ROLE", "value": "ca-role-123"} in c["env"]


def test_the_check_job_is_a_valid_kubernetes_job(prod_spec: ServingSpec):
    from tests.serving.schema_check import validate_k8s

    job = autoscaling.credentials_check_job(prod_spec, "ca-role-123", "a-42")
    assert validate_k8s(job["spec"]["template"], "io.k8s.api.core.v1.PodTemplateSpec") == []


@pytest.mark.parametrize("env, ok", [
    ({}, False),  # admitted before the association was visible: no variables injected
    ({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}, True),
])
def test_the_check_script_fails_without_injected_credentials(env, ok, tmp_path):
    """The script itself, with boto3's STS call replaced by a stub module (no network)."""
    stub = tmp_path / "boto3.py"
    stub.write_text("class _C:\n    def get_caller_identity(self):\n"
                    "        return {'Arn': 'arn:aws:sts::123456789012:assumed-role/ca-role-123/eks-session'}\n"
                    "def client(name):\n    return _C()\n")
    proc = subprocess.run([sys.executable, "-c", autoscaling.CREDENTIALS_CHECK_SCRIPT], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path), "EXPECTED_ROLE": "ca-role-123",
                               **env}, timeout=60)
    assert (proc.returncode == 0) is ok, proc.stderr
    if not ok:
        assert "not effective yet" in proc.stderr


def test_the_chart_waits_for_the_check(serving_run):
    rels = serving_run.releases()
    ca = rels["cluster-autoscaler"]
    (job,) = serving_run.of_type("kubernetes:batch/v1:Job")
    sa = serving_run.one("kubernetes:core/v1:ServiceAccount", "-ca-sa")
    # The association itself is the base project's (identities.py), done before this project runs.
    assert serving_run.depends_on(ca, job) and serving_run.depends_on(job, sa)
    annotation_value = job.inputs["spec"]["template"]["metadata"]["annotations"][autoscaling.ASSOCIATION_ANNOTATION]
    assert annotation_value == AUTOSCALER_ASSOCIATION
    assert ca.inputs["values"]["rbac"]["serviceAccount"]["create"] is False
    annotation = autoscaling.ASSOCIATION_ANNOTATION
    assert job.inputs["spec"]["template"]["metadata"]["annotations"][annotation] == \
        ca.inputs["values"]["podAnnotations"][annotation]
