"""The in-cluster hydrator manifests: placement, paths, pinning, and CLI agreement."""
from __future__ import annotations

import dataclasses
import json
import posixpath

import pytest
import yaml

from infra.core.errors import InputError
from infra.program.serving import hydrator as k8s
from infra.cli.weights import parse_args
from infra.core.weights_layout import MARKER_NAME

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-fleet-hydrator:0.1.0"


def _params(**kw) -> k8s.HydratorParams:
    from infra.core.config import WeightsConfig

    defaults = {name: f.default for name, f in WeightsConfig.model_fields.items()}
    base = dict(image=IMAGE, bucket="llm-fleet-weights-prod", model="meta-llama/Llama-3.1-8B-Instruct",
                revision="0e9e39f", region="us-east-1", namespace=defaults["hydrator_namespace"],
                service_account_name=defaults["hydrator_service_account"],
                host_models_dir=f"{defaults['nvme_mount_path']}/models")
    return k8s.HydratorParams(**{**base, **kw})


def _pod(ds: dict) -> dict:
    return ds["spec"]["template"]["spec"]


def _all_containers(ds: dict) -> list[dict]:
    return _pod(ds)["initContainers"] + _pod(ds)["containers"]


def test_daemonset_targets_gpu_nodes_and_tolerates_their_taint():
    ds = k8s.hydrator_daemonset(_params())
    assert (ds["apiVersion"], ds["kind"]) == ("apps/v1", "DaemonSet")
    pod = _pod(ds)
    assert pod["nodeSelector"] == dict(k8s.GPU_NODE_LABELS)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    for c in _all_containers(ds):  # the hydrator never asks for a GPU
        assert "nvidia.com/gpu" not in json.dumps(c["resources"])


def test_hydrate_container_runs_the_real_cli_with_the_configured_model():
    params = _params(concurrency=24, part_size_mib=128)
    ds = k8s.hydrator_daemonset(params)
    hydrate = _pod(ds)["initContainers"][0]
    assert hydrate["command"] == ["python", "-m", "infra.cli.weights"]
    args = parse_args(hydrate["args"])  # the exact argv the container will run parses
    assert args.weights_command == "hydrate"
    assert (args.model, args.revision, args.bucket, args.region) == (
        params.model, params.revision, params.bucket, params.region)
    assert (args.concurrency, args.part_size_mib, args.json) == (24, 128, "-")  # JSON on stdout
    assert args.dest == k8s.container_model_dir(params)
    assert args.func.__name__ == "_hydrate"


def test_marker_path_is_one_fact_for_hydrator_probe_and_vllm_wait():
    params = _params()
    ds = k8s.hydrator_daemonset(params)
    hydrate = _pod(ds)["initContainers"][0]
    hold = _pod(ds)["containers"][0]
    wait = k8s.wait_for_weights_init_container(params)
    hydrate_dest = parse_args(hydrate["args"]).dest
    wait_args = parse_args(wait["args"])
    assert wait_args.weights_command == "wait"
    assert (wait_args.model, wait_args.revision) == (params.model, params.revision)
    marker = posixpath.join(hydrate_dest, MARKER_NAME)
    assert marker == posixpath.join(wait_args.dest, MARKER_NAME) == k8s.container_marker_path(params)
    assert hold["readinessProbe"]["exec"]["command"] == ["test", "-f", marker]
    # Both pods mount the same host directory at the same place.
    assert k8s.models_volume(params) in _pod(ds)["volumes"]
    assert {"name": k8s.MODELS_VOLUME, "mountPath": k8s.CONTAINER_MODELS_DIR, "readOnly": True} in wait["volumeMounts"]
    assert {"name": k8s.MODELS_VOLUME, "mountPath": k8s.CONTAINER_MODELS_DIR, "readOnly": False} in hydrate["volumeMounts"]
    # And the container path maps onto the RAID0 host path.
    rel = posixpath.relpath(hydrate_dest, k8s.CONTAINER_MODELS_DIR)
    assert posixpath.join(params.host_models_dir, rel) == k8s.host_model_dir(params)
    assert k8s.host_model_dir(params).startswith("/mnt/k8s-disks/")


def test_host_path_is_configurable_and_must_be_on_the_instance_store():
    ds = k8s.hydrator_daemonset(_params(host_models_dir="/mnt/k8s-disks/1/weights"))
    vol = next(v for v in _pod(ds)["volumes"] if v["name"] == k8s.MODELS_VOLUME)
    assert vol["hostPath"] == {"path": "/mnt/k8s-disks/1/weights", "type": "DirectoryOrCreate"}
    assert k8s.hydrator_daemonset(_params(host_models_dir="/mnt/nvme/models"))  # another /mnt mount
    for bad in ("/var/lib/models", "relative/models", "/mnt/k8s-disks/../etc", "/mnt", "/mnt/x", "/"):
        with pytest.raises(InputError, match="host_models_dir"):
            _params(host_models_dir=bad)


def test_every_container_has_requests_limits_and_a_locked_down_security_context():
    params = _params()
    containers = _all_containers(k8s.hydrator_daemonset(params)) + [k8s.wait_for_weights_init_container(params)]
    for c in containers:
        for kind in ("requests", "limits"):
            assert set(c["resources"][kind]) == {"cpu", "memory"}, c["name"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert c["image"] == params.image
    hold = _pod(k8s.hydrator_daemonset(params))["containers"][0]
    assert "livenessProbe" in hold and "readinessProbe" in hold
    # Only the writer of the hostPath runs as root.
    roots = [c["name"] for c in containers if c["securityContext"]["runAsUser"] == 0]
    assert roots == ["hydrate"]


def test_service_account_matches_and_carries_the_role_for_irsa():
    params = _params(service_account_name="weights-reader")
    arn = "arn:aws:iam::123456789012:role/llm-fleet-weights-read"
    sa, ds = k8s.manifests(params, role_arn=arn)
    assert sa["kind"] == "ServiceAccount" and sa["metadata"]["name"] == "weights-reader"
    assert _pod(ds)["serviceAccountName"] == "weights-reader"
    assert sa["metadata"]["namespace"] == ds["metadata"]["namespace"] == params.namespace
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
    assert "annotations" not in k8s.hydrator_service_account(params)["metadata"]  # Pod Identity
    with pytest.raises(InputError, match="role_arn"):
        k8s.hydrator_service_account(params, role_arn="arn:aws:iam::*:role/x")


@pytest.mark.parametrize("image", [
    "registry.example.com/llm-fleet-hydrator:0.1.0",
    "registry.example.com:5000/team/hydrator:2026.01.31-abc123",
    "registry.example.com/hydrator@sha256:" + "a" * 64,
    "registry.example.com/hydrator:0.1.0@sha256:" + "b" * 64,
])
def test_pinned_images_are_accepted(image):
    ds = k8s.hydrator_daemonset(_params(image=image))
    assert {c["image"] for c in _all_containers(ds)} == {image}


@pytest.mark.parametrize("image", [
    "registry.example.com/llm-fleet-hydrator",
    "registry.example.com/llm-fleet-hydrator:latest",
    "registry.example.com:5000/hydrator",
    "hydrator@sha256:short",
    "",
])
def test_unpinned_images_are_refused(image):
    with pytest.raises(InputError, match="image"):
        _params(image=image)


@pytest.mark.parametrize("field, value", [
    ("concurrency", 0), ("model", "../x"), ("revision", "a/b"), ("namespace", "Bad_NS"),
    ("region", "mars"), ("bucket", "UPPER"), ("wait_timeout_s", 0), ("part_size_mib", 0),
])
def test_invalid_parameters_name_the_field(field, value):
    with pytest.raises(InputError, match=field):
        _params(**{field: value})


def test_manifests_serialise_to_yaml_and_json_unchanged():
    docs = k8s.manifests(_params(priority_class_name="system-node-critical"))
    assert list(yaml.safe_load_all(yaml.safe_dump_all(docs))) == docs
    assert json.loads(json.dumps(docs)) == docs
    assert _pod(docs[1])["priorityClassName"] == "system-node-critical"


def test_params_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _params().image = "x:latest"  # type: ignore[misc]


def test_the_hydrator_tolerates_the_gpu_node_groups_taint():
    from infra.core.labels import gpu_taint_eks

    taint = gpu_taint_eks()
    toleration = _pod(k8s.hydrator_daemonset(_params()))["tolerations"][0]
    assert toleration["key"] == taint["key"] and toleration["operator"] == "Exists"
    assert toleration["effect"] == {"NO_SCHEDULE": "NoSchedule"}[taint["effect"]]