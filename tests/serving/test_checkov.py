"""checkov over every Kubernetes object the serving layer renders, the engine Deployment as the
vllm-stack chart renders it for our values (Helm's library, chart_render.engine_deployment)
with our DeploymentPatch applied.

checkov's pins conflict with ours (3.3.x pins boto3 and packaging), so it runs from a virtualenv
of its own, created once under `.pytest-venvs/` (gitignored; ~25 s on a clean clone, reused
after). Every check that fails is listed in SKIPS with the reason it is accepted; a skip that
no longer fails is reported too, so the list stays true.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.core.paths import REPO_ROOT
from infra.program.serving import autoscaling, namespace_manifests, network, observability, vllm, warm_pool, weights_tier
from infra.program.serving.spec import ServingSpec

from . import chart_render
from .support import AUTOSCALER_ASSOCIATION, spec_for

CHECKOV_VERSION = "3.3.30"
VENV = REPO_ROOT / ".pytest-venvs" / f"checkov-{CHECKOV_VERSION}"

NO_DIGEST = ("the catalog pins the tag only (infra/core/catalog/charts.yaml: no registry is reachable where it is "
             "kept; the mirror step prints the digest to record, and image_ref/the chart values then carry it)")
IF_NOT_PRESENT = ("tags are pinned and the GPU nodes pre-pull the engine image (warm pool); Always would ask the "
                  "registry on every start and fail starts when it is unreachable")
# (kind, name) -> {check: why it is accepted}
SKIPS: dict[tuple[str, str], dict[str, str]] = {
    ("Deployment", "vllm-llama-3-3-70b-deployment-vllm"): {
        "CKV_K8S_43": NO_DIGEST,
        "CKV_K8S_15": IF_NOT_PRESENT,
        # vllm/vllm-openai declares no other user; it writes Triton / torch.compile caches under
        # /root/.cache and the Prometheus multiprocess files under /tmp (the chart's HF_HOME and
        # PROMETHEUS_MULTIPROC_DIR), so it runs as root with every capability dropped, no
        # privilege escalation and seccomp RuntimeDefault.
        "CKV_K8S_23": "vLLM's image runs as root (see above)",
        "CKV_K8S_40": "vLLM's image runs as root (see above)",
        "CKV_K8S_22": "vLLM writes its kernel and compile caches into the image's filesystem (see above)",
    },
    ("Deployment", "gpu-warm-placeholder"): {
        "CKV_K8S_43": NO_DIGEST,
        "CKV_K8S_15": IF_NOT_PRESENT,
        # `sleep infinity` holding a node: nothing to probe.
        "CKV_K8S_8": "the placeholder only sleeps: there is no service to probe",
        "CKV_K8S_9": "the placeholder only sleeps: there is no service to probe",
    },
    ("Job", autoscaling.CREDENTIALS_CHECK): {
        # It must run as the autoscaler's service account to prove that identity's credentials.
        "CKV_K8S_38": "the check exists to prove the service account's Pod Identity credentials",
    },
}


@pytest.fixture(scope="session")
def checkov() -> Path:
    exe = VENV / "bin" / "checkov"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"checkov=={CHECKOV_VERSION}"], check=True)
    return exe


def rendered_objects(spec: ServingSpec) -> list[dict]:
    """Every built-in Kubernetes object we author, and the chart's engine Deployment."""
    values, patch = vllm.vllm_stack_values(spec), vllm.deployment_patch(spec)
    release = spec.defaults.vllm_release
    return [
        *namespace_manifests(spec),
        chart_render.engine_deployment(values, patch, release, spec.namespace),
        *(o for o in chart_render.objects(values, release, spec.namespace) if o["kind"] != "Deployment"),
        vllm.serving_priority_class(spec), vllm.pod_disruption_budget(spec),
        warm_pool.placeholder_priority_class(spec), warm_pool.placeholder_deployment(spec),
        *weights_tier.hydrator_manifests(spec),
        autoscaling.credentials_check_job(spec, "cluster-autoscaler-role", AUTOSCALER_ASSOCIATION),
        observability.storage_class(spec), observability.dashboard_config_map(spec),
        *network.network_policies(spec),
    ]


def _failed(checkov: Path, tmp_path: Path, objects: list[dict]) -> dict[tuple[str, str], set[str]]:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    out = subprocess.run([str(checkov), "-f", str(path), "--framework", "kubernetes", "-o", "json", "--quiet",
                          "--compact", "--skip-download"], capture_output=True, text=True)
    report = json.loads(out.stdout)
    report = report[0] if isinstance(report, list) else report
    failed: dict[tuple[str, str], set[str]] = {}
    for check in report.get("results", {}).get("failed_checks", []):
        kind, namespace_name = check["resource"].split(".", 1)
        failed.setdefault((kind, namespace_name.rsplit(".", 1)[-1]), set()).add(check["check_id"])
    return failed


def test_checkov_passes_over_everything_we_render_with_justified_skips_only(checkov, tmp_path):
    failed = _failed(checkov, tmp_path, rendered_objects(spec_for("prod")))
    assert failed == {k: set(v) for k, v in SKIPS.items()}


def test_checkov_sees_a_regression(checkov, tmp_path):
    """The engine Deployment without our pod security (the chart's defaults) fails the checks
    we fixed."""
    spec = spec_for("prod")
    values = vllm.vllm_stack_values(spec)
    for key in ("securityContext", "containerSecurityContext"):
        values["servingEngineSpec"].pop(key)
    patch = vllm.deployment_patch(spec)
    patch["spec"]["template"]["spec"].pop("automountServiceAccountToken")
    engine = chart_render.engine_deployment(values, patch, spec.defaults.vllm_release, spec.namespace)
    failed = _failed(checkov, tmp_path, [engine])[("Deployment", engine["metadata"]["name"])]
    assert {"CKV_K8S_20", "CKV_K8S_28", "CKV_K8S_29", "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_38"} <= failed
