"""vLLM values, probes, drain, spread and PDB follow the fleet plan and the config."""
from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.core.catalog.charts import chart, image
from infra.core.labels import gpu_taint_eks
from infra.core.sizing import time_to_serve
GPU_TAINT = gpu_taint_eks()
from infra.program.serving import vllm
from infra.program.serving.spec import GPU_NODE_SELECTOR, ZONE_KEY, ServingSpec
from infra.program.serving.hydrator import CONTAINER_MODELS_DIR, MODELS_VOLUME

from . import chart_render, schema_check
from .support import spec_for


def _model(values: dict) -> dict:
    (model,) = values["servingEngineSpec"]["modelSpec"]
    return model


def _without_nulls(node):
    if isinstance(node, dict):
        return {k: _without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_nulls(v) for v in node]
    return node


def _flag(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} appears {args.count(flag)} times in {args}"
    return args[args.index(flag) + 1]


def test_engine_settings_are_the_plans(any_spec: ServingSpec):
    plan, v = any_spec.plan, any_spec.plan.vllm
    model = _model(vllm.vllm_stack_values(any_spec))
    cfg = model["vllmConfig"]
    assert cfg["tensorParallelSize"] == v.tensor_parallel_size == plan.tensor_parallel
    assert cfg["maxNumSeqs"] == v.max_num_seqs
    assert cfg["maxModelLen"] == v.max_model_len
    assert cfg["gpuMemoryUtilization"] == v.gpu_memory_utilization
    assert cfg["enablePrefixCaching"] is v.enable_prefix_caching
    assert cfg["enableChunkedPrefill"] is v.enable_chunked_prefill
    args = cfg["extraArgs"]
    assert _flag(args, "--max-num-batched-tokens") == str(v.max_num_batched_tokens)
    assert _flag(args, "--kv-cache-dtype") == v.kv_cache_dtype
    assert _flag(args, "--served-model-name") == plan.served_name
    if v.quantization:
        assert _flag(args, "--quantization") == v.quantization
    else:
        assert "--quantization" not in args
    # GPUs requested = TP; the replica count is the HPA's alone (test_charts.py).
    assert model["requestGPU"] == plan.tensor_parallel
    assert "replicaCount" not in model and model["keda"]["enabled"] is True


def test_model_is_read_from_the_node_local_nvme_copy(any_spec: ServingSpec):
    model = _model(vllm.vllm_stack_values(any_spec))
    cfg = any_spec.config
    host = {v["name"]: v for v in model["extraVolumes"]}[MODELS_VOLUME]["hostPath"]["path"]
    assert host == f"{cfg.weights.nvme_mount_path}/models"
    assert model["modelURL"] == f"{CONTAINER_MODELS_DIR}/{any_spec.plan.model}/{cfg.weights.revision}"
    (mount,) = model["extraVolumeMounts"]
    assert mount == {"name": MODELS_VOLUME, "mountPath": CONTAINER_MODELS_DIR, "readOnly": True}
    init = model["initContainer"]
    assert init["args"][0] == "wait" and _flag(init["args"], "--dest") == model["modelURL"]
    assert init["image"] == cfg.weights.hydrator_image
    assert {e["name"]: e["value"] for e in model["env"]}["HF_HUB_OFFLINE"] == "1"


def test_pinned_image_and_runtime_class(any_spec: ServingSpec):
    values = vllm.vllm_stack_values(any_spec)
    model = _model(values)
    img = image("vllm")
    assert (model["repository"], model["tag"]) == (img.repository, img.tag)
    assert img.tag not in ("latest", "") and img.tag.startswith("v")
    # No RuntimeClass: the chart's default "nvidia" exists only with the GPU Operator.
    assert values["servingEngineSpec"]["runtimeClassName"] == ""
    assert values["routerSpec"] == {"enableRouter": False}


def test_gpu_placement_uses_the_node_groups_taint_and_label(any_spec: ServingSpec):
    values = vllm.vllm_stack_values(any_spec)
    (tol,) = values["servingEngineSpec"]["tolerations"]
    assert (tol["key"], tol["value"], tol["effect"]) == (GPU_TAINT["key"], GPU_TAINT["value"], "NoSchedule")
    (term,) = _model(values)["nodeSelectorTerms"]
    assert {e["key"]: e["values"] for e in term["matchExpressions"]} == {k: [v] for k, v in GPU_NODE_SELECTOR.items()}


def test_resources_are_proportional_to_the_gpus(any_spec: ServingSpec):
    model = _model(vllm.vllm_stack_values(any_spec))
    inst, tp = any_spec.instance, any_spec.plan.tensor_parallel
    share = any_spec.defaults.host_share_fraction * tp / inst.gpu_count
    assert model["requestCPU"] == int(inst.vcpu * share) and model["limitCPU"] == str(model["requestCPU"])
    assert model["requestMemory"] == model["limitMemory"] == f"{int(inst.ram_gib * share)}Gi"
    # Guaranteed QoS and room left on the node for daemons.
    assert model["requestCPU"] < inst.vcpu * tp / inst.gpu_count


def test_the_startup_budget_reads_the_checkpoint_on_nvme():
    """Online FP8 (`--quantization fp8`) loads the BF16 checkpoint the hydrator copied: a 70B
    model reads ~131 GiB from NVMe, twice its FP8 weights in HBM."""
    spec = spec_for("prod")
    assert spec.plan.precision == "fp8" and spec.plan.vllm.quantization == "fp8"
    assert 128 < spec.checkpoint_gib < 134
    assert spec.checkpoint_gib > 1.9 * spec.weights_gib
    assert spec_for("8b-tp1").checkpoint_gib == pytest.approx(spec_for("8b-tp1").weights_gib, rel=0.01)


def test_probes_size_the_startup_for_the_model_load(any_spec: ServingSpec):
    p = vllm.probes(any_spec)
    d = any_spec.defaults
    tts = time_to_serve.ASSUMPTIONS
    load_s = any_spec.checkpoint_gib / tts.nvme_load_gib_per_s + tts.engine_init_s
    startup = p["startupProbe"]
    budget_s = startup["periodSeconds"] * startup["failureThreshold"]
    assert load_s * d.startup_safety_factor <= budget_s < load_s * d.startup_safety_factor + startup["periodSeconds"]
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert p[name]["httpGet"] == {"path": "/health", "port": d.vllm_container_port}
    # Liveness tolerates a busy engine longer than readiness does.
    assert (p["livenessProbe"]["periodSeconds"] * p["livenessProbe"]["failureThreshold"]
            > p["readinessProbe"]["periodSeconds"] * p["readinessProbe"]["failureThreshold"])
    assert vllm.vllm_stack_values(any_spec)["servingEngineSpec"]["startupProbe"] == startup
    # The chart renders a delay of 0 as 15 (`| default 15`): every delay is one that survives.
    helpers = chart_render.template("templates/_helpers.tpl")
    assert "initialDelaySeconds: {{ .initialDelaySeconds | default 15 }}" in helpers
    assert all(p[name]["initialDelaySeconds"] == vllm.PROBE_INITIAL_DELAY_S > 0 for name in p)


def test_drain_sequence_fits_in_the_grace_period(any_spec: ServingSpec):
    patch = vllm.deployment_patch(any_spec)
    pod = patch["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_s = int(_flag(_model(vllm.vllm_stack_values(any_spec))["vllmConfig"]["extraArgs"], "--shutdown-timeout"))
    assert container["name"] == vllm.CONTAINER_NAME
    # The requests in flight at SIGTERM finish: the drain covers the plan's simulated e2e p99.
    p99_ms = max(v.e2e_p99_ms for v in any_spec.plan.verification if v.e2e_p99_ms is not None)
    assert drain_s == vllm.drain_timeout_s(any_spec) == math.ceil(p99_ms / 1000)
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + drain_s


def test_a_plan_without_simulated_scenarios_has_no_drain_window(prod_spec):
    spec = ServingSpec(plan=dataclasses.replace(prod_spec.plan, verification=()), config=prod_spec.config,
                       weights_bucket=prod_spec.weights_bucket)
    with pytest.raises(Exception, match="plan.verification"):
        vllm.drain_timeout_s(spec)


def test_every_engine_flag_exists_in_the_pinned_vllm(any_spec: ServingSpec):
    """Every flag of the engine's command as the chart renders it for our values, against the
    CLI of the vLLM the image runs (schemas/vllm/flags-<tag>.json, from the release's sdist).
    vLLM's parser reads `_` in a flag as `-` (vllm/utils/argparse_utils.py)."""
    import json

    known = json.loads((schema_check.SCHEMAS / "vllm" / f"flags-{image('vllm').tag.lstrip('v')}.json").read_text())
    deployment = chart_render.engine_deployment(vllm.vllm_stack_values(any_spec), vllm.deployment_patch(any_spec),
                                                any_spec.defaults.vllm_release, any_spec.namespace)
    (engine,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == vllm.CONTAINER_NAME]
    assert engine["command"][:2] == ["vllm", "serve"]
    used = {a.split("=", 1)[0].replace("_", "-") for a in engine["command"] if a.startswith("--")}
    assert used - set(known["flags"]) == set()
    assert {"--shutdown-timeout", "--served-model-name", "--max-num-seqs", "--tensor-parallel-size"} <= used
    assert _flag(engine["command"], "--shutdown-timeout") == str(vllm.drain_timeout_s(any_spec))


def test_zone_spread_and_patch_target(any_spec: ServingSpec):
    patch = vllm.deployment_patch(any_spec)
    assert patch["metadata"]["name"] == any_spec.deployment_name
    assert patch["metadata"]["name"] == f"vllm-{_model(vllm.vllm_stack_values(any_spec))['name']}-deployment-vllm"
    (spread,) = patch["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["maxSkew"] == 1 and spread["topologyKey"] == ZONE_KEY
    # Soft: a lost AZ never leaves planned replicas pending (test_placement.py).
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and "minDomains" not in spread
    assert spread["labelSelector"]["matchLabels"] == any_spec.vllm_pod_labels
    assert patch["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_engine_pod_security(any_spec: ServingSpec):
    engine = vllm.vllm_stack_values(any_spec)["servingEngineSpec"]
    assert engine["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    c = engine["containerSecurityContext"]
    assert c["allowPrivilegeEscalation"] is False and c["capabilities"] == {"drop": ["ALL"]}
    assert c["privileged"] is False
    # The chart copies both (test_charts.py renders them), the container one onto the init container too.


def test_the_engine_pod_is_guaranteed_qos(any_spec: ServingSpec):
    """Guaranteed: every container, init containers included, has CPU and memory requests equal
    to its limits (Kubernetes docs, "Configure Quality of Service for Pods")."""
    model = _model(vllm.vllm_stack_values(any_spec))
    init = model["initContainer"]["resources"]
    assert init["requests"] == init["limits"] and set(init["limits"]) == {"cpu", "memory"}
    assert str(model["requestCPU"]) == model["limitCPU"] and model["requestMemory"] == model["limitMemory"]


def test_pdb_covers_the_engine_pods(any_spec: ServingSpec):
    pdb = vllm.pod_disruption_budget(any_spec)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == {"model": any_spec.model_key, "helm-release-name": "vllm"}
    assert pdb["metadata"]["namespace"] == any_spec.namespace == any_spec.config.weights.hydrator_namespace


def test_rolling_update_surges_onto_the_warm_pool(any_spec: ServingSpec):
    strategy = vllm.vllm_stack_values(any_spec)["servingEngineSpec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": max(1, any_spec.placeholders), "maxUnavailable": 0}


def test_registered_release_carries_the_values(serving_run, prod_spec):
    rel = serving_run.releases()["vllm"]
    ref = chart("vllm-stack")
    assert (rel.inputs["chart"], rel.inputs["version"]) == (ref.chart, ref.version)
    assert rel.inputs["repositoryOpts"]["repo"] == ref.repository
    assert rel.inputs["namespace"] == prod_spec.namespace
    # The mocks drop nulls; the release keeps them (allowNullValues), which Helm reads as deletions.
    assert rel.inputs["values"] == _without_nulls(vllm.vllm_stack_values(prod_spec))
    assert rel.inputs["allowNullValues"] is True
    assert rel.inputs["skipAwait"] is True
    patch = serving_run.one("kubernetes:apps/v1:DeploymentPatch")
    assert patch.inputs["spec"] == vllm.deployment_patch(prod_spec)["spec"]
    assert serving_run.depends_on(patch, rel)  # the patch targets what the release rendered


@settings(max_examples=40, deadline=None)
@given(tp=st.sampled_from([1, 2, 4, 8]), replicas_per_az=st.integers(1, 6), extra=st.integers(0, 12),
       spares=st.integers(0, 3), threshold=st.integers(1, 64), seqs=st.integers(8, 512))
def test_any_plan_maps_consistently(prod_spec, tp, replicas_per_az, extra, spares, threshold, seqs):
    """For any plan shape: GPUs per pod = TP, replicas and thresholds pass through unchanged."""
    plan = prod_spec.plan
    control = dataclasses.replace(plan.control, scale_threshold_per_replica=threshold, max_num_seqs=seqs,
                                  min_replicas=replicas_per_az * plan.azs, max_replicas=replicas_per_az * plan.azs + extra)
    new = dataclasses.replace(
        plan, tensor_parallel=tp, replicas_per_az=replicas_per_az,
        replicas_max=replicas_per_az * plan.azs + extra, warm_spares_per_az=spares, control=control,
        vllm=dataclasses.replace(plan.vllm, tensor_parallel_size=tp, max_num_seqs=seqs),
    )
    spec = ServingSpec(plan=new, config=prod_spec.config, weights_bucket=prod_spec.weights_bucket)
    model = _model(vllm.vllm_stack_values(spec))
    assert model["requestGPU"] == model["vllmConfig"]["tensorParallelSize"] == tp
    assert model["vllmConfig"]["maxNumSeqs"] == seqs

    from infra.program.serving import autoscaling, warm_pool

    so = autoscaling.scaled_object(spec)["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (replicas_per_az * plan.azs, new.replicas_max)
    assert so["triggers"][0]["metadata"]["threshold"] == str(threshold)
    assert warm_pool.placeholder_deployment(spec)["spec"]["replicas"] == spares * plan.azs


@pytest.mark.parametrize("field", ["min_replicas", "max_replicas", "max_num_seqs"])
def test_a_control_block_that_disagrees_with_its_plan_is_refused(prod_spec, field):
    plan = prod_spec.plan
    control = dataclasses.replace(plan.control, **{field: getattr(plan.control, field) + 1})
    with pytest.raises(Exception, match=f"plan.control.{field}"):
        ServingSpec(plan=dataclasses.replace(plan, control=control), config=prod_spec.config,
                    weights_bucket=prod_spec.weights_bucket)


def test_tp_larger_than_a_node_is_refused(prod_spec):
    plan = dataclasses.replace(prod_spec.plan, tensor_parallel=16,
                               vllm=dataclasses.replace(prod_spec.plan.vllm, tensor_parallel_size=16))
    with pytest.raises(Exception, match="at most the 8 GPUs"):
        ServingSpec(plan=plan, config=prod_spec.config, weights_bucket=prod_spec.weights_bucket)
