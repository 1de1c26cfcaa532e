"""Images come from the stack's own ECR registry: pull-through cache rules for the upstreams ECR
supports, mirrored repositories for nvcr.io, credentials where ECR requires them, and the mirror
step that fills and warms them."""
from __future__ import annotations

import json
import os
import stat
import subprocess


from infra.cli import main
from infra.core.catalog.charts import load_chart_catalog
from infra.core.config import load_stack_config
from infra.core.images import stack_images
from infra.core.paths import REPO_ROOT

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
# Kubernetes objects written in files another change owns, still naming an upstream image.
STILL_UPSTREAM = {
    "serving-warm-pool-placeholders": "infra/program/serving/warm_pool.py uses image('vllm').ref; ServingSpec.image_ref routes it",
}


def test_pull_through_rules_for_the_supported_upstreams_we_use(prod_run):
    """Amazon ECR user guide, "Sync an upstream registry with an Amazon ECR private registry":
    ECR Public, Docker Hub, GitHub Container Registry, Quay and registry.k8s.io (among others)
    are pull-through upstreams; Docker Hub and GitHub Container Registry need credentials in a
    Secrets Manager secret whose name begins with `ecr-pullthroughcache/`; nvcr.io is not one."""
    rules = {r.inputs["ecrRepositoryPrefix"]: r for r in prod_run.of_type(RULE)}
    assert {p: r.inputs["upstreamRegistryUrl"] for p, r in rules.items()} == {
        "docker-hub": "registry-1.docker.io", "ghcr": "ghcr.io", "quay": "quay.io", "k8s": "registry.k8s.io",
        "ecr-public": "public.ecr.aws"}
    secrets = {r.name: r.inputs for r in prod_run.of_type("aws:secretsmanager/secret:Secret")}
    assert {s["namePrefix"] for s in secrets.values()} == {
        "ecr-pullthroughcache/llm-fleet-prod-docker-hub-", "ecr-pullthroughcache/llm-fleet-prod-ghcr-"}
    assert all("secretString" not in s for s in secrets.values())  # values set out of band
    for prefix in ("docker-hub", "ghcr"):
        assert any(u.endswith(f"images-{prefix}-credentials") for u in rules[prefix].depends_on), prefix
    assert all("credentialArn" not in rules[p].inputs for p in ("quay", "k8s", "ecr-public"))


def test_nvcr_images_are_mirrored_into_immutable_private_repositories(prod_run):
    repos = {r.inputs["name"]: r.inputs for r in prod_run.of_type("aws:ecr/repository:Repository")}
    assert set(repos) == {"nvcr/nvidia/k8s-device-plugin", "nvcr/nvidia/k8s/dcgm-exporter"}
    for inputs in repos.values():
        assert inputs["imageTagMutability"] == "IMMUTABLE" and inputs["imageScanningConfiguration"] == {"scanOnPush": True}


def test_nodes_may_fill_the_cache_under_our_prefixes_only(prod_run):
    policy = json.loads(prod_run.one("aws:iam/rolePolicy:RolePolicy", "images-node-pull-through").inputs["policy"])
    (stmt,) = policy["Statement"]
    assert stmt["Action"] == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
    assert stmt["Resource"] == [f"arn:aws:ecr:us-east-1:123456789012:repository/{p}/*"
                                for p in ("docker-hub", "ecr-public", "ghcr", "k8s", "quay")]
    assert prod_run.outputs["image_registry"] == REGISTRY


def _images(value, path=""):
    """(where, reference) of every image a manifest or chart values name: `image: ref`, or a
    `{registry, repository}` / `{repository}` mapping."""
    if isinstance(value, dict):
        if isinstance(value.get("repository"), str):
            reg = value.get("registry")
            yield path, f"{reg}/{value['repository']}" if reg else value["repository"]
        for k, v in value.items():
            if k == "image" and isinstance(v, str):
                yield f"{path}.{k}", v
            elif isinstance(v, (dict, list)):
                yield from _images(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _images(v, f"{path}[{i}]")


def test_every_image_the_cluster_pulls_comes_through_ecr(prod_run):
    found = 0
    for r in prod_run.resources:
        if not r.type.startswith("kubernetes:") or r.name in STILL_UPSTREAM:
            continue
        for where, ref in _images(r.inputs):
            found += 1
            assert ref.startswith(REGISTRY + "/"), f"{r.name}{where}: {ref}"
    assert found >= 15
    # Every catalog image a chart we configure renders is set (the others are listed as not routed).
    routed = {i.key for i in stack_images(load_stack_config("prod", REPO_ROOT)) if i.routed}
    assert {"vllm", "cluster-autoscaler", "nvidia-device-plugin", "dcgm-exporter", "prometheus", "grafana",
            "hydrator"} <= routed


def test_every_catalog_image_is_pinned_or_says_why_not_and_has_a_registry():
    cat = load_chart_catalog()
    prefixes = [u.ecr_prefix for u in cat.registries.values()]
    assert len(set(prefixes)) == len(prefixes)
    for ref in cat.images.values():
        assert ref.digest or ref.unpinned, ref.key
        assert ref.host in cat.registries, ref.key
        assert ref.routed or ref.why_not_routed, ref.key
    assert cat.registries["nvcr.io"].mirrored and not cat.registries["docker.io"].mirrored


def test_images_command_lists_them(capsys):
    assert main(["images", "--stack", "prod", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_key = {i["key"]: i for i in doc["images"]}
    assert by_key["nvidia-device-plugin"]["served_by"] == "mirror"
    assert by_key["vllm"]["ecr_repository"] == "docker-hub/vllm/vllm-openai"
    assert by_key["hydrator"]["digest"].startswith("sha256:")
    assert by_key["keda"]["served_by"] == "UPSTREAM" and by_key["keda"]["note"]


STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
[[ "$(basename "$0") $1" == "crane auth" ]] && cat > /dev/null
case "$(basename "$0") $1" in
  "aws sts") echo 123456789012 ;;
  "aws ecr") echo token ;;
  "crane digest") echo sha256:0000000000000000000000000000000000000000000000000000000000000000 ;;
  "helm show") printf 'name: x\\nappVersion: "4.4.1-4.6.0-ubuntu22.04"\\n' ;;
  "helm template") printf '        image: "quay.io/prometheus/prometheus:v3.5.0"\\n        image: docker.io/grafana/grafana:12.1.0\\n' ;;
esac
"""


def test_the_mirror_step_copies_nvcr_and_warms_the_cache(tmp_path, capsys):
    """Run the generated script against stub aws/crane/helm (no network): what it would call."""
    assert main(["images", "--stack", "prod", "--script"]) == 0
    script = tmp_path / "mirror.sh"
    script.write_text(capsys.readouterr().out)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("aws", "crane", "helm"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(stat.S_IRWXU)
    calls = tmp_path / "calls"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)})
    assert proc.returncode == 0, proc.stderr
    log = calls.read_text().splitlines()
    assert f"crane copy nvcr.io/nvidia/k8s-device-plugin:v0.20.0 {REGISTRY}/nvcr/nvidia/k8s-device-plugin:v0.20.0" in log
    assert (f"crane copy nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubuntu22.04 "
            f"{REGISTRY}/nvcr/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubuntu22.04") in log
    assert f"crane digest {REGISTRY}/docker-hub/vllm/vllm-openai:v0.18.0" in log
    assert f"crane digest {REGISTRY}/quay/prometheus/prometheus:v3.5.0" in log
    assert f"crane digest {REGISTRY}/docker-hub/grafana/grafana:12.1.0" in log
    assert "docker.io/vllm/vllm-openai:v0.18.0 sha256:" in proc.stdout  # the digest to pin
