"""The parts of vllm-stack 0.1.12's templates our values reach, rendered from the vendored
templates (schemas/charts/vllm-stack/). No helm binary exists here and `helm-python-sdk`
(Helm's library through a shared object) was not used: every rule below is read from the
vendored template text (the keys a template copies, the guard around `replicas`, the labels a
define emits), so a template that changes upstream changes what is rendered here.

Helm's values merge (chartutil.CoalesceValues): user maps merge over the chart's defaults key
by key, and a user `null` deletes the default key.
"""
from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from . import schema_check

CHART = "vllm-stack"
# The guards that decide which engine objects the chart renders (verbatim template lines).
DEPLOYMENT_GUARD = ("templates/deployment-vllm-multi.yaml",
                    '{{- if not (and (hasKey $modelSpec "raySpec") $modelSpec.raySpec.enabled) }}')
REPLICA_GUARD = ("templates/deployment-vllm-multi.yaml",
                 "{{- if not (and $modelSpec.keda $modelSpec.keda.enabled) }}\n  replicas: {{ $modelSpec.replicaCount }}")
SCALED_OBJECT_GUARD = ("templates/scaledobject-vllm.yaml",
                       '{{- if and (hasKey $modelSpec "keda") $modelSpec.keda.enabled }}\n'
                       '{{- if not (hasKey $modelSpec "raySpec") }}')
RAY_GUARD = ("templates/ray-cluster.yaml", '{{- if and (hasKey $modelSpec "raySpec") $modelSpec.raySpec.enabled }}')


def template(path: str) -> str:
    return schema_check.chart_file(CHART, path)


def chart_defaults() -> dict:
    return yaml.safe_load(template("values.yaml"))


def coalesce(user: Any, default: Any) -> Any:
    """Helm's merge of user values over chart defaults (nulls delete)."""
    if isinstance(user, dict) and isinstance(default, dict):
        out = copy.deepcopy(default)
        for key, value in user.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = coalesce(value, default.get(key))
        return out
    return copy.deepcopy(user)


def merged_values(values: dict) -> dict:
    return coalesce(values, chart_defaults())


def _guard(guard: tuple[str, str]) -> None:
    path, text = guard
    assert text in template(path), f"{path}: the guard {text!r} changed upstream"


def _truthy(node: dict, key: str) -> bool:
    return bool((node.get(key) or {}).get("enabled"))


def engine_objects(model_spec: dict) -> dict[str, bool]:
    """Which of the engine's objects the chart renders for one modelSpec entry, and whether
    the Deployment carries `replicas`."""
    for guard in (DEPLOYMENT_GUARD, REPLICA_GUARD, SCALED_OBJECT_GUARD, RAY_GUARD):
        _guard(guard)
    ray = "raySpec" in model_spec
    return {
        "Deployment": not (ray and _truthy(model_spec, "raySpec")),
        "replicas": not _truthy(model_spec, "keda"),
        "ScaledObject": "keda" in model_spec and _truthy(model_spec, "keda") and not ray,
        "RayCluster": ray and _truthy(model_spec, "raySpec"),
    }


def upgrade_replicas(model_spec: dict, live_replicas: int) -> int:
    """The replica count after `helm upgrade` with these values while the HPA holds
    `live_replicas`: a rendered count is applied by Helm's three-way merge (the live value
    differs from the new manifest), an absent one is left to its owner."""
    # `replicas: {{ .replicaCount }}` with no value renders null: the API server defaults it to 1.
    return (model_spec.get("replicaCount") or 1) if engine_objects(model_spec)["replicas"] else live_replicas


def _define_labels(name: str, **context: str) -> list[tuple[str, str]]:
    """The `key: value` lines a label define of _helpers.tpl emits (includes followed)."""
    text = template("templates/_helpers.tpl")
    body = re.search(r'{{- define "' + re.escape(name) + r'" -}}\n(.*?)\n{{- end -}}', text, re.S).group(1)
    pairs: list[tuple[str, str]] = []
    for line in body.splitlines():
        inc = re.search(r'include "([\w.]+)"', line)
        if inc:
            pairs += _define_labels(inc.group(1), **context)
            continue
        key, _, value = line.partition(": ")
        value = re.sub(r"{{ \.(\w+) }}", lambda m: context[m.group(1)], value.strip())
        pairs.append((key.strip(), value))
    return pairs


def selector_labels(values: dict, release: str) -> list[tuple[str, str]]:
    """The engine Deployment's selector, in render order (a key twice is a duplicate)."""
    v = merged_values(values)["servingEngineSpec"]
    (model,) = v["modelSpec"]
    pairs = [("model", model["name"]), ("helm-release-name", release)]
    pairs += _define_labels("chart.engineStandardLabels", releaseName=release, modelName=model["name"],
                            chartName=CHART)
    pairs += [(k, str(val)) for k, val in (v.get("labels") or {}).items()]  # chart.engineLabels
    return pairs


def _probe(p: dict) -> dict:
    """chart.templateProbe: its defaults (`| default 15` etc.), then what is set."""
    out = {"initialDelaySeconds": p.get("initialDelaySeconds") or 15, "periodSeconds": p.get("periodSeconds") or 10,
           "failureThreshold": p.get("failureThreshold") or 3}
    out.update({k: p[k] for k in ("timeoutSeconds", "successThreshold") if p.get(k)})
    http = p.get("httpGet") or {}
    out["httpGet"] = {"path": http.get("path") or "/health", "port": http.get("port") or 8000}
    return out


def _resources(model: dict) -> dict:
    """chart.resources (requests always, limits for the keys set)."""
    gpu = "nvidia.com/gpu"
    out = {"requests": {"memory": str(model["requestMemory"]), "cpu": str(model["requestCPU"])}}
    if int(model.get("requestGPU") or 0) > 0:
        out["requests"][gpu] = str(model["requestGPU"])
    limits = {k: str(model[v]) for k, v in (("memory", "limitMemory"), ("cpu", "limitCPU")) if v in model}
    if limits:
        if int(model.get("requestGPU") or 0) > 0:
            limits[gpu] = str(model["requestGPU"])
        out["limits"] = limits
    return out


def _merge_patch(base: Any, patch: Any) -> Any:
    """Server-side apply of our DeploymentPatch: maps merge, containers merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge_patch(base.get(key), value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        by_name = {x["name"]: x for x in base}
        for x in patch:
            by_name[x["name"]] = _merge_patch(by_name.get(x["name"], {}), x)
        return list(by_name.values())
    return patch


def engine_deployment(values: dict, patch: dict, release: str, namespace: str) -> dict:
    """The engine Deployment as deployment-vllm-multi.yaml renders it for our values (the keys
    our values reach; LMCache, LoRA, Ray and PVC branches are off), with our DeploymentPatch
    applied. An emulation of the template, read line by line from the vendored copy."""
    v = merged_values(values)["servingEngineSpec"]
    (model,) = v["modelSpec"]
    cfg = model.get("vllmConfig") or {}
    port = v.get("containerPort", 8000)
    labels = dict(selector_labels(values, release))
    csc = v.get("containerSecurityContext")
    init = model.get("initContainer")
    flags = ["--enable-chunked-prefill" if cfg.get("enableChunkedPrefill") else "--no-enable-chunked-prefill",
             "--enable-prefix-caching" if cfg.get("enablePrefixCaching") else "--no-enable-prefix-caching"]
    for key, flag in (("maxModelLen", "--max-model-len"), ("tensorParallelSize", "--tensor-parallel-size"),
                      ("maxNumSeqs", "--max-num-seqs"), ("gpuMemoryUtilization", "--gpu_memory_utilization")):
        if key in cfg:
            flags += [flag, str(cfg[key])]
    container = {
        "name": "vllm",
        "image": f"{model['repository']}:{model['tag']}",
        **({"securityContext": csc} if csc else {}),
        "command": ["vllm", "serve", model["modelURL"], "--host", "0.0.0.0", "--port", str(port), *flags,
                    *cfg.get("extraArgs", [])],
        "imagePullPolicy": v["imagePullPolicy"],
        "env": [{"name": "PYTHONHASHSEED", "value": "123"}, {"name": "HF_HOME", "value": "/tmp"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/tmp"}, *(v.get("env") or []), *(model.get("env") or [])],
        "ports": [{"name": "container-port", "containerPort": port}, {"name": "zmq-port", "containerPort": 55555},
                  {"name": "ucx-port", "containerPort": 9999}],
        **{p: _probe(v[p]) for p in ("startupProbe", "livenessProbe", "readinessProbe") if v.get(p)},
        "resources": _resources(model),
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}, *model.get("extraVolumeMounts", [])],
    }
    pod: dict = {
        **({"priorityClassName": model["priorityClassName"]} if model.get("priorityClassName") else {}),
        **({"initContainers": [{
            "name": init["name"], "image": init["image"], "command": init.get("command"), "args": init.get("args"),
            "env": [{"name": "RELEASE_NAME", "value": release}, *(init.get("env") or [])],
            **({"resources": init["resources"]} if init.get("resources") else {}),
            **({"volumeMounts": init["extraVolumeMounts"]} if init.get("extraVolumeMounts") else {}),
            **({"securityContext": csc} if csc else {}),
        }]} if init else {}),
        **({"securityContext": v["securityContext"]} if v.get("securityContext") else {}),
        "containers": [container],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": model.get("shmSize", "20Gi")}},
                    *model.get("extraVolumes", [])],
        **({"runtimeClassName": v["runtimeClassName"]} if v.get("runtimeClassName") else {}),
        "tolerations": v.get("tolerations", []),
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": model["nodeSelectorTerms"]}}},
    }
    spec: dict = {
        **({} if not engine_objects(model)["replicas"] else {"replicas": model.get("replicaCount") or 1}),
        "strategy": v.get("strategy") or {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
        "selector": {"matchLabels": labels},
        "progressDeadlineSeconds": 1200,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": f"{release}-{model['name']}-deployment-vllm", "namespace": namespace,
                               "labels": labels},
                  "spec": spec}
    return _merge_patch(deployment, {"spec": patch["spec"]})
