"""Copy the upstream schemas listed in SOURCES verbatim and record each file's sha256 in
MANIFEST.json (not run by tests; tests/serving/test_schemas.py re-hashes every file).

    python tests/serving/schemas/vendor.py            # from the local git mirrors and PyPI wheel

Git sources are read with `git -C <mirror> show <tag>:<path>` (the mirrors are bare clones with
tags, /work/.mirror/<owner>+<name>/repo); the Kubernetes OpenAPI comes from the
kubernetes-validate wheel on PyPI (`pip download kubernetes-validate==1.37.0 --no-deps`).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIRRORS = Path("/work/.mirror")
WHEEL_DIR = Path("/tmp/kv")

# local path -> (repository, tag, upstream path, why we vendor it)
SOURCES: dict[str, tuple[str, str, str, str]] = {
    "kubernetes/_definitions.json": (
        "pypi:kubernetes-validate", "1.37.0", "kubernetes_validate/kubernetes-json-schema/v1.35.0-local-strict/_definitions.json",
        "built-in kinds, Kubernetes 1.35 (the prod cluster's version), strict (additionalProperties: false)"),
    "crds/keda/crd-scaledobjects.yaml": (
        "kedacore/charts", "v2.20.2", "keda/templates/crds/crd-scaledobjects.yaml",
        "ScaledObject, as the keda 2.20.2 chart installs it (a Helm template: the loader skips `{{ }}` lines)"),
    **{f"crds/gateway-api/gateway.networking.k8s.io_{k}.yaml": (
        "kubernetes-sigs/gateway-api", "v1.6.1", f"config/crd/experimental/gateway.networking.k8s.io_{k}.yaml",
        "Gateway API v1.6.1 experimental channel: what gateway-helm v1.9.0 bundles "
        "(charts/gateway-helm/charts/crds/crds/gatewayapi-crds.yaml, bundle-version v1.6.1)")
       for k in ("gatewayclasses", "gateways", "httproutes")},
    **{f"crds/envoy-gateway/gateway.envoyproxy.io_{k}.yaml": (
        "envoyproxy/gateway", "v1.9.0", f"charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_{k}.yaml",
        "Envoy Gateway's CRDs as gateway-helm v1.9.0 installs them")
       for k in ("envoyproxies", "securitypolicies", "backendtrafficpolicies", "clienttrafficpolicies")},
    **{f"crds/prometheus-operator/crd-{k}.yaml": (
        "prometheus-community/helm-charts", "kube-prometheus-stack-82.14.1",
        f"charts/kube-prometheus-stack/charts/crds/crds/crd-{k}.yaml",
        "the CRDs kube-prometheus-stack 82.14.1 installs (its appVersion: prometheus-operator v0.89.0)")
       for k in ("podmonitors", "servicemonitors", "prometheusrules")},
}
# Whole charts (every file of the chart directory but its own unit tests): rendered by the tests
# with Helm's library (helm-python-sdk).
CHARTS: dict[str, tuple[str, str, str]] = {
    "charts/vllm-stack": ("vllm-project/production-stack", "vllm-stack-0.1.12", "helm"),
}


def chart_sources() -> dict[str, tuple[str, str, str, str]]:
    out = {}
    for local, (repo, ref, root) in CHARTS.items():
        mirror = MIRRORS / repo.replace("/", "+") / "repo"
        names = subprocess.run(["git", "-C", str(mirror), "ls-tree", "-r", "--name-only", ref, root + "/"],
                               check=True, capture_output=True, text=True).stdout.split()
        for name in names:
            if not name.startswith(f"{root}/tests/"):
                out[f"{local}/{name[len(root) + 1:]}"] = (repo, ref, name, f"the {ref} chart, rendered by the tests")
    return out


def fetch(repo: str, ref: str, path: str) -> bytes:
    if repo.startswith("pypi:"):
        name = repo.split(":", 1)[1]
        wheel = next(WHEEL_DIR.glob(f"{name.replace('-', '_')}-{ref}-*.whl"))
        return zipfile.ZipFile(wheel).read(path)
    mirror = MIRRORS / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(mirror), "show", f"{ref}:{path}"], check=True, capture_output=True).stdout


def commit_of(repo: str, ref: str) -> str | None:
    if repo.startswith("pypi:"):
        return None
    mirror = MIRRORS / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(mirror), "rev-parse", f"{ref}^{{commit}}"], check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    manifest = []
    for local, (repo, ref, path, why) in {**SOURCES, **chart_sources()}.items():
        data = fetch(repo, ref, path)
        out = HERE / local
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        manifest.append({"file": local, "repository": repo, "ref": ref, "commit": commit_of(repo, ref), "path": path,
                         "sha256": hashlib.sha256(data).hexdigest(), "why": why})
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"vendored {len(manifest)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
