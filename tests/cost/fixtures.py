"""Stack documents for the cost and policy tests.

`offline_plan(stack, **changes)` is the real offline plan document (`{"stack", "region", "plan",
"resources"}`: the Pulumi program under mocks, as `python -m infra plan --json` writes it before
adding cost and policy), computed once per session and change set; each call returns a fresh
copy the test may mutate. `preview_document()` prints the same resources as
`pulumi preview --json` steps. The policy rule tests keep small fabricated resources
(`gpu_node_group_inputs`, `launch_template_inputs`; DESIGN habit 9).
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any, Iterable, Mapping

TAGS = {"environment": "prod", "cost-center": "ml-platform", "owner": "sre-llm@example.com"}


@lru_cache(maxsize=None)
def _plan_json(stack: str, changes: tuple[tuple[str, Any], ...]) -> str:
    from infra.program.offline import run_program, stack_entries

    entries = copy.deepcopy(stack_entries(stack))
    for key, value in changes:
        section, _, field = key.partition("__")
        entries[f"llm-fleet:{section}"][field] = value
    return json.dumps(run_program(entries, stack=stack).to_json(), default=str)


def offline_plan(stack: str = "prod", **changes: Any) -> dict[str, Any]:
    """The real offline plan of `stack`, with config changes `section__field=value`
    (`workload__concurrent_requests=400` sets `llm-fleet:workload.concurrent_requests`)."""
    return json.loads(_plan_json(stack, tuple(sorted(changes.items()))))


def stack_config(stack: str = "prod") -> dict[str, Any]:
    """The stack's config entries (Pulumi.yaml defaults + Pulumi.<stack>.yaml), a fresh copy."""
    from infra.program.offline import stack_entries

    return copy.deepcopy(stack_entries(stack))


def preview_document(resources: Iterable[Mapping[str, Any]], *, region: str = "us-east-1", op: str = "create") -> dict[str, Any]:
    """The resources as `pulumi preview --json` would print them (newState is apitype.ResourceV3)."""
    steps = []
    for r in resources:
        state = {"urn": r["urn"], "type": r["type"], "inputs": copy.deepcopy(r["inputs"]),
                 "parent": r.get("parent") or "", "custom": True}
        if r.get("id"):
            state["id"] = r["id"]
        if r.get("propertyDependencies"):
            state["propertyDependencies"] = copy.deepcopy(r["propertyDependencies"])
        steps.append({"op": op, "urn": r["urn"], "provider": "", "newState": state})
    return {"config": {"aws:region": region}, "steps": steps, "diagnostics": [], "duration": 1,
            "changeSummary": {op: len(steps)}}


def find(resources: list[dict], name: str) -> dict:
    """The resource called `name` (tests mutate its inputs)."""
    for r in resources:
        if r["name"] == name:
            return r
    raise KeyError(name)


# --- small fabricated resources for the policy rule tests -------------------------------------


def launch_template_inputs(volume_gb: int = 200) -> dict[str, Any]:
    return {
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1,
                            "instanceMetadataTags": "disabled"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": volume_gb, "volumeType": "gp3",
                                                                    "encrypted": "true", "deleteOnTermination": "true"}}],
        "networkInterfaces": [{"deviceIndex": 0, "interfaceType": "efa", "associatePublicIpAddress": "false"}],
        "tags": dict(TAGS),
    }


def gpu_node_group_inputs(instance_type: str, az: str, nodes: Mapping[str, int], spares: int,
                          pool_state: str = "STOPPED") -> dict[str, Any]:
    """A GPU node group shaped as the program builds one for an AZ: `nodes` in service (warm
    spares included), a warm pool preparing the burst headroom up to max, never under `spares`."""
    inputs: dict[str, Any] = {
        "clusterName": "llm-fleet-prod",
        "nodeGroupName": f"llm-fleet-prod-gpu-{az}",
        "instanceTypes": [instance_type],
        "capacityType": "ON_DEMAND",
        "scalingConfig": {"minSize": nodes["min"], "desiredSize": nodes["desired"], "maxSize": nodes["max"]},
        "launchTemplate": {"id": f"lt-{az}", "version": "1"},
        "labels": {"llm-fleet/role": "gpu", "llm-fleet/az": az},
        "tags": {**TAGS, "llm-fleet:az": az},
    }
    if nodes["max"] > nodes["min"] or spares:
        inputs["warmPoolConfig"] = {"minSize": spares, "maxGroupPreparedCapacity": nodes["max"],
                                    "poolState": pool_state, "reuseOnScaleIn": True}
    return inputs
