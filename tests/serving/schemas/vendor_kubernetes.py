"""Regenerate kubernetes-v1.33-strict.json from the kubernetes-validate wheel (not run by tests).

    pip download kubernetes-validate==1.37.0 --no-deps -d /tmp/kv
    python tests/serving/schemas/vendor_kubernetes.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl

Keeps the `$defs` closure of the kinds the serving layer authors, descriptions dropped.
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

ROOTS = (
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
    "io.k8s.api.scheduling.v1.PriorityClass",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.ServiceAccount",
)
SOURCE = "kubernetes_validate/kubernetes-json-schema/v1.33.0-local-strict/_definitions.json"
OUT = Path(__file__).resolve().parent / "kubernetes-v1.33-strict.json"


def main(wheel: str) -> None:
    defs = json.loads(zipfile.ZipFile(wheel).read(SOURCE))["$defs"]
    seen: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    name = value.split("/")[-1]
                    if name not in seen:
                        seen.add(name)
                        walk(defs[name])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for root in ROOTS:
        seen.add(root)
        walk(defs[root])

    def strip(node: object, names: bool = False) -> object:
        """Drop documentation; under `properties` the keys are field names, kept as they are."""
        if isinstance(node, dict):
            return {k: strip(v, names=(k == "properties" and not names))
                    for k, v in node.items() if names or k != "description"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Kubernetes v1.33.0 OpenAPI, strict (additionalProperties: false), from {SOURCE} "
                    f"in kubernetes-validate 1.37.0; $defs closure of {', '.join(ROOTS)}.",
        "$defs": {k: strip(defs[k]) for k in sorted(seen)},
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(seen)} definitions)")


if __name__ == "__main__":
    main(sys.argv[1])
