"""Regenerate kubernetes-v1.33-bench-strict.json (not run by tests): the serving schemas' vendor
script (tests/serving/schemas/vendor_kubernetes.py) with the kinds the bench gate authors.

    pip download kubernetes-validate==1.37.0 --no-deps -d /tmp/kv
    python tests/bench/schemas/vendor_kubernetes_bench.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.serving.schemas import vendor_kubernetes  # noqa: E402

vendor_kubernetes.ROOTS = (
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.networking.v1.NetworkPolicy",
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.core.v1.Secret",
)
vendor_kubernetes.OUT = Path(__file__).resolve().parent / "kubernetes-v1.33-bench-strict.json"

if __name__ == "__main__":
    vendor_kubernetes.main(sys.argv[1])
