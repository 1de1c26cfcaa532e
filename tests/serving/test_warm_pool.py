"""Placeholders hold the plan's warm spares; time-to-serve and cost figures match the docs."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from infra.core.catalog import HOURS_PER_MONTH
from infra.core.catalog.charts import image
from infra.core.sizing import time_to_serve
from infra.program.serving import vllm, warm_pool
from infra.program.serving.spec import GPU_NODE_SELECTOR, ZONE_KEY, ServingSpec, gpu_toleration

from .support import PROJECT, spec_for

DOCS = PROJECT / "docs" / "serving.md"


def test_placeholders_hold_whole_nodes_spread_per_az(any_spec: ServingSpec):
    dep = warm_pool.placeholder_deployment(any_spec)
    plan = any_spec.plan
    assert dep["spec"]["replicas"] == plan.warm_spares_per_az * plan.azs
    pod = dep["spec"]["template"]["spec"]
    (hold,) = pod["containers"]
    gpus = hold["resources"]["requests"]["nvidia.com/gpu"]
    assert gpus == hold["resources"]["limits"]["nvidia.com/gpu"] == plan.gpus_per_node
    (spread,) = pod["topologySpreadConstraints"]
    # Soft, as the engines': with an AZ lost the spares stay schedulable in the others.
    assert (spread["maxSkew"], spread["topologyKey"], spread["whenUnsatisfiable"]) == (1, ZONE_KEY, "ScheduleAnyway")
    assert "minDomains" not in spread
    assert pod["nodeSelector"] == GPU_NODE_SELECTOR and pod["tolerations"] == [gpu_toleration()]
    assert hold["image"] == image("vllm").ref  # keeps the engine image on the warm node
    assert pod["initContainers"][0]["name"] == "wait-for-weights"  # Running = weights on NVMe
    assert pod["terminationGracePeriodSeconds"] == 0


def test_priorities_order_preemption(prod_spec: ServingSpec):
    placeholder = warm_pool.placeholder_priority_class(prod_spec)
    serving = vllm.serving_priority_class(prod_spec)
    assert placeholder["value"] < 0 < serving["value"]
    assert placeholder["value"] > prod_spec.defaults.ca_expendable_pods_priority_cutoff
    assert placeholder["preemptionPolicy"] == "Never"
    assert placeholder["globalDefault"] is False and serving["globalDefault"] is False
    pod = warm_pool.placeholder_deployment(prod_spec)["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == placeholder["metadata"]["name"]
    (model,) = vllm.vllm_stack_values(prod_spec)["servingEngineSpec"]["modelSpec"]
    assert model["priorityClassName"] == serving["metadata"]["name"]


def test_time_to_serve_orders_the_paths(prod_spec: ServingSpec):
    paths = {k: warm_pool.total_s(v) for k, v in warm_pool.time_to_serve(prod_spec).items()}
    assert paths["placeholder"] < paths["warm_reused"] < paths["warm_node"] < paths["cold"]
    cold = warm_pool.time_to_serve(prod_spec)["cold"]
    # Hydration and load move the checkpoint on disk (BF16 for online FP8), not the FP8 weights in HBM.
    assert prod_spec.checkpoint_gib == pytest.approx(2 * prod_spec.weights_gib, rel=0.05)
    assert round(cold["S3 hydration of the weights"], 1) == round(prod_spec.checkpoint_gib / 1.0, 1)
    assert cold["vLLM load from NVMe + engine init"] == time_to_serve.expected_load_s(prod_spec.checkpoint_gib)


def test_cost_is_spares_times_node_price_times_hours_plus_stopped_pool_ebs():
    spec = spec_for("prod")
    cost = warm_pool.warm_pool_cost(spec)
    plan = spec.plan
    expected = Decimal(plan.warm_spares_per_az * plan.azs) * Decimal(str(plan.cost.usd_per_node_hour)) * HOURS_PER_MONTH
    assert cost["usd_per_month_placeholders"] == expected.quantize(Decimal("0.01"))
    assert cost["usd_per_month_placeholders"] == Decimal("0.00")  # the verified prod plan keeps no spares
    # STOPPED pool: the burst headroom (max - min per AZ) at 200 GiB of gp3 ($0.08/GB-month) each.
    headroom = (plan.nodes_per_az.max - plan.nodes_per_az.min) * plan.azs
    assert cost["stopped_pool_instances"] == headroom
    assert cost["usd_per_month_stopped_pool"] == (Decimal(headroom) * 200 * Decimal("0.08")).quantize(Decimal("0.01"))
    assert spec_for("8b-tp1").placeholders == 0 and warm_pool.warm_pool_cost(spec_for("8b-tp1"))["usd_per_month_placeholders"] == 0


def _doc_minutes(path: str) -> str:
    return f"{warm_pool.total_s(warm_pool.time_to_serve(spec_for('prod'))[path]) / 60:.1f} min"


def test_docs_quote_the_computed_figures():
    text = DOCS.read_text()
    for path in ("cold", "warm_node", "warm_reused", "placeholder"):
        assert re.search(rf"`{path}`.*{re.escape(_doc_minutes(path))}", text), f"{path}: {_doc_minutes(path)} not in docs"
    cost = warm_pool.warm_pool_cost(spec_for("prod"))
    assert f"${cost['usd_per_month_placeholders']:,}" in text
    assert f"${cost['usd_per_month_stopped_pool']:,}" in text
