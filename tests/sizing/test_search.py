"""The SLO search: N+1 across AZs, whole instances, monotone in load and SLOs, cheapest wins.

The seed plan is the verified one (the resolver's memo: simulated once per session); the
monotonicity and arithmetic properties of the closed-form pre-filter use `simulate=False`.
"""
import math

import pytest
import yaml

from infra.core import metrics
from infra.core.errors import InfeasibleError, InputError
from infra.core.sizing.load import steady_state
from infra.core.resolve import sized
from infra.core.sizing.search import size
from tests.sizing.conftest import make_spec


@pytest.fixture(scope="module")
def seed_plan():
    return sized(make_spec())[0]


def prefilter(spec):
    """The closed-form pre-filter's plan (no simulation)."""
    return size(spec, simulate=False)


def test_seed_example_file_is_the_seed_brief(seed_doc):
    doc = yaml.safe_load(open("examples/seed-004.yaml"))
    assert doc == seed_doc


def test_seed_plan_meets_every_slo_with_one_az_lost(seed_plan):
    p = seed_plan
    assert p.predicted.ttft_p95_ms <= 600 and p.predicted.tpot_p95_ms <= 40 and p.predicted.e2e_p95_ms <= 4000
    # (azs - 1) AZs carry the whole load: concurrency and output rate.
    surviving = p.replicas_per_az * (p.azs - 1)
    assert surviving >= p.replicas_sustained
    assert p.predicted.concurrency_per_replica == math.ceil(200 / surviving)
    assert surviving * p.predicted.output_tokens_per_s_per_replica >= 5000
    # ... and so does the fleet simulator: the simulated arrival rate over the surviving
    # replicas stays under the simulated knee.
    assert p.load["arrival_rate_per_s"] <= surviving * p.control.knee_rate_per_replica


def test_seed_plan_passes_all_three_simulated_scenarios(seed_plan):
    names = [v.name for v in seed_plan.verification]
    assert names == ["sustained", "az-loss", "burst"]
    for v in seed_plan.verification:
        assert v.passed and not v.why, v
        assert v.ttft_p95_ms <= 600 and v.tpot_p95_ms <= 40 and v.e2e_p95_ms <= 4000
        assert v.requests > 1000 and 0 <= v.rejected < 0.05 * v.requests
    az = seed_plan.verification[1]
    assert az.replicas_min == seed_plan.replicas_per_az * (seed_plan.azs - 1)  # one AZ's replicas gone


def test_seed_plan_packs_whole_instances(seed_plan):
    p = seed_plan
    assert p.replicas_per_node == p.gpus_per_node // p.tensor_parallel
    assert p.replicas_per_az % p.replicas_per_node == 0
    assert p.nodes_per_az.min == p.replicas_per_az // p.replicas_per_node + p.warm_spares_per_az
    assert p.nodes_per_az.min <= p.nodes_per_az.desired <= p.nodes_per_az.max
    assert p.vllm.tensor_parallel_size == p.tensor_parallel
    assert p.instance_type.startswith("p5")


def test_seed_plan_cost_arithmetic(seed_plan):
    p = seed_plan
    # $/hour are rounded to cents.
    assert p.cost.usd_per_hour_baseline == pytest.approx(p.cost.usd_per_node_hour * p.nodes_per_az.desired * p.azs, abs=0.005)
    assert p.cost.usd_per_hour_max == pytest.approx(p.cost.usd_per_node_hour * p.nodes_per_az.max * p.azs, abs=0.005)
    per_million = p.cost.usd_per_hour_baseline / (5000 * 3600 / 1e6)
    assert p.cost.usd_per_million_output_tokens == pytest.approx(per_million, rel=1e-4)


def test_seed_plan_burst_capacity_absorbs_the_burst(seed_plan):
    p = seed_plan
    assert p.replicas_max == (p.nodes_per_az.max - p.warm_spares_per_az) * p.replicas_per_node * p.azs
    # At the burst every replica stays within the per-replica concurrency the SLOs allow.
    per_replica = math.ceil(800 / p.replicas_max)
    assert per_replica <= p.max_concurrency_per_replica


def test_seed_plan_control_block_is_set_at_the_knee(seed_plan):
    p, c = seed_plan, seed_plan.control
    assert p.vllm.max_num_seqs == c.max_num_seqs
    # The scale signal fires before the knee and not at sustained load (all AZs up).
    sustained = p.load["concurrent_requests"] / p.replicas_baseline
    assert sustained * 1.1 < c.scale_threshold_per_replica <= c.knee_concurrency_per_replica
    # Admission lets a replica fill its running slots and queue a little, never less.
    assert c.admission_limit_per_replica > c.max_num_seqs
    assert (c.min_replicas, c.max_replicas) == (p.replicas_baseline, p.replicas_max)
    assert c.scale_query == metrics.in_flight(p.served_name)
    assert c.scale_metrics == ("vllm:num_requests_running", "vllm:num_requests_waiting")


def test_chosen_plan_is_cheapest_verified_alternative(seed_plan):
    verified = [a for a in seed_plan.alternatives if a.verification and a.feasible]
    assert all(a.usd_per_hour_baseline >= seed_plan.cost.usd_per_hour_baseline for a in verified)
    assert all(a.why for a in seed_plan.alternatives)
    assert any("breaks end-to-end p95" in a.why for a in seed_plan.alternatives)


@pytest.mark.parametrize("users", [50, 100, 200, 400, 800, 1600])
def test_more_users_never_needs_fewer_gpus(users):
    smaller = prefilter(make_spec(workload__concurrent_requests=users, workload__output_tokens_per_s=None))
    larger = prefilter(make_spec(workload__concurrent_requests=users * 2, workload__output_tokens_per_s=None))
    assert larger.gpus_baseline >= smaller.gpus_baseline
    assert larger.cost.usd_per_hour_baseline >= smaller.cost.usd_per_hour_baseline


@pytest.mark.parametrize(
    "field, loose, tight",
    [("workload__ttft_p95_ms", 2000, 120), ("workload__tpot_p95_ms", 60, 18), ("workload__e2e_p95_ms", 8000, 3500)],
)
def test_a_tighter_slo_never_costs_less(field, loose, tight):
    a = prefilter(make_spec(**{field: loose}))
    b = prefilter(make_spec(**{field: tight}))
    assert b.cost.usd_per_hour_baseline >= a.cost.usd_per_hour_baseline


def test_two_azs_need_more_per_az_capacity_than_three():
    three = prefilter(make_spec(fleet__warm_spares_per_az=0))
    two = prefilter(make_spec(fleet__azs=2, fleet__warm_spares_per_az=0))
    # With 2 AZs the surviving AZ alone carries everything.
    assert two.replicas_per_az >= two.replicas_sustained
    assert two.replicas_per_az >= three.replicas_per_az


def test_without_az_loss_the_fleet_is_smaller():
    n1 = prefilter(make_spec())
    flat = prefilter(make_spec(workload__availability_pct=99.0, fleet__survive_az_loss=False))
    assert flat.gpus_baseline <= n1.gpus_baseline


def test_price_override_is_per_instance_type_and_enables_p5e():
    p = prefilter(make_spec(fleet__instance_types=["p5e.48xlarge", "p5.48xlarge"],
                            fleet__instance_usd_per_hour={"p5e.48xlarge": "24.00"}))
    assert p.instance_type == "p5e.48xlarge"
    assert p.cost.usd_per_node_hour == pytest.approx(24.0) and p.cost.usd_per_gpu_hour == pytest.approx(3.0)
    assert "fleet.instance_usd_per_hour (override" in p.cost.price_source
    # The other type keeps its catalog price: one override no longer reprices every type.
    p5 = [a for a in p.alternatives if a.instance_type == "p5.48xlarge" and a.feasible]
    assert p5 and all(a.usd_per_hour_baseline % 55.04 == pytest.approx(0, abs=1e-6) for a in p5)


def test_unpriced_instance_without_override_fails_clearly():
    with pytest.raises(InfeasibleError, match=r"no on-demand price for p5e.48xlarge .*fleet.instance_usd_per_hour"):
        size(make_spec(fleet__instance_types=["p5e.48xlarge"]))


@pytest.mark.parametrize("capacity_type", ["on-demand", "capacity-block", "reservation"])
def test_the_search_prices_the_capacity_type_the_stack_buys(capacity_type):
    from infra.core.catalog.prices import load_price_book

    row = load_price_book().capacity_price("us-east-1", "p5.48xlarge", capacity_type)
    p = prefilter(make_spec(fleet__instance_types=["p5.48xlarge"], fleet__capacity_type=capacity_type))
    assert p.cost.usd_per_node_hour == pytest.approx(float(row.usd))
    assert p.cost.price_source.endswith(f"{capacity_type} us-east-1")
    assert p.cost.usd_per_hour_baseline == pytest.approx(float(row.usd) * p.nodes_per_az.desired * p.azs, abs=0.005)


def test_capacity_blocks_are_priced_below_on_demand_and_unknown_blocks_are_refused():
    block = prefilter(make_spec(fleet__instance_types=["p5.48xlarge"], fleet__capacity_type="capacity-block"))
    assert block.cost.usd_per_node_hour < 55.04
    with pytest.raises(InfeasibleError, match=r"no capacity-block price for p5.4xlarge in us-east-1; set fleet.instance_usd_per_hour"):
        size(make_spec(fleet__instance_types=["p5.4xlarge"], fleet__capacity_type="capacity-block",
                       workload__e2e_p95_ms=None, workload__tpot_p95_ms=200, workload__ttft_p95_ms=5000))


# A 32k-context brief that used to get a p5.4xlarge plan whose KV pool (13,616 tokens) cannot hold
# one 32,768-token request: vLLM refuses to start such an engine.
LONG_CONTEXT = dict(model__max_model_len=32768, workload__concurrent_requests=8, workload__burst_factor=1,
                    workload__input_tokens=2000, workload__output_tokens=300, workload__ttft_p95_ms=3000,
                    workload__tpot_p95_ms=80, workload__e2e_p95_ms=None, workload__output_tokens_per_s=None)


def test_a_kv_pool_that_cannot_hold_one_max_model_len_request_is_infeasible():
    p = prefilter(make_spec(**LONG_CONTEXT))
    assert p.kv_cache_tokens_per_replica >= 32768
    [single] = [a for a in p.alternatives if a.instance_type == "p5.4xlarge"]
    assert not single.feasible
    assert single.why.startswith("KV pool holds 13,616 tokens, less than one model.max_model_len 32,768-token request")
    assert "vLLM refuses to start" in single.why


def test_when_no_kv_pool_holds_max_model_len_the_error_says_so():
    with pytest.raises(InfeasibleError, match=r"model.max_model_len 32768 is too long .* holds 13,616 tokens.*refuses to start"):
        size(make_spec(**LONG_CONTEXT, fleet__instance_types=["p5.4xlarge"]))


SMALL_TYPES = ["g6e.xlarge", "g6e.2xlarge", "g6.xlarge", "g6.2xlarge", "g5.xlarge", "g5.2xlarge"]


def test_an_8b_chatbot_lands_on_a_single_gpu_type_cheaper_than_p5():
    chatbot = dict(model__name="llama-3.1-8b", workload__concurrent_requests=64, workload__burst_factor=2,
                   workload__output_tokens_per_s=None, workload__ttft_p95_ms=800, workload__tpot_p95_ms=50,
                   workload__e2e_p95_ms=12000, fleet__precisions=["fp8", "bf16"])
    p5 = prefilter(make_spec(**chatbot, fleet__instance_types=["p5.48xlarge", "p5.4xlarge"]))
    p = prefilter(make_spec(**chatbot, fleet__instance_types=["p5.48xlarge", "p5.4xlarge", *SMALL_TYPES]))
    assert p.instance_type in SMALL_TYPES and p.gpus_per_node == 1
    assert p.cost.usd_per_hour_baseline < p5.cost.usd_per_hour_baseline / 2


def test_trtllm_is_allowed_for_the_sizing_library():
    p = prefilter(make_spec(fleet__engine="trtllm"))
    assert p.engine == "trtllm"


def test_infeasible_tpot_names_the_slo_and_best_achievable():
    with pytest.raises(InfeasibleError) as exc:
        size(make_spec(workload__tpot_p95_ms=2))
    msg = str(exc.value)
    assert msg.startswith("TPOT p95 2 ms is not achievable for llama-3.3-70b (fp8); best achievable")
    assert "TP=8" in msg


def test_infeasible_ttft_names_the_best_value_and_where():
    with pytest.raises(InfeasibleError, match=r"TTFT p95 5 ms is not achievable .* best achievable [\d.]+ ms on p5"):
        size(make_spec(workload__ttft_p95_ms=5))


def test_context_longer_than_max_model_len_is_rejected():
    with pytest.raises(InputError, match="model.max_model_len"):
        size(make_spec(workload__input_tokens=9000))


def test_plan_predictions_are_reproducible_from_the_model(seed_plan):
    from infra.core.catalog import load_catalog
    from infra.core.sizing.perf import ReplicaModel, engine_params

    cat = load_catalog()
    inst = cat.instance(seed_plan.instance_type)
    e = engine_params("vllm")
    rm = ReplicaModel(cat.model("llama-3.3-70b"), cat.gpu(inst.gpu), seed_plan.tensor_parallel, "fp8", "fp8", e,
                      gpu_memory_utilization=0.9, max_num_seqs=seed_plan.vllm.max_num_seqs,
                      max_num_batched_tokens=seed_plan.vllm.max_num_batched_tokens)
    r = steady_state(rm, 500, 200, concurrency=seed_plan.predicted.concurrency_per_replica,
                     request_overhead_ms=e.request_overhead_ms)
    assert seed_plan.predicted.e2e_p95_ms == pytest.approx(r.e2e_ms_p95, abs=0.1)


def test_plan_json_has_the_contract_keys(seed_plan):
    d = seed_plan.to_dict()
    for key in ["instance_type", "gpu", "tensor_parallel", "precision", "azs", "replicas_sustained",
                "replicas_per_az", "replicas_per_node", "nodes_per_az", "warm_spares_per_az", "replicas_max",
                "control", "verification", "vllm", "predicted", "cost", "alternatives"]:
        assert key in d
    assert set(d["nodes_per_az"]) == {"min", "desired", "max"}
    assert {"max_num_seqs", "max_num_batched_tokens", "max_model_len", "gpu_memory_utilization",
            "kv_cache_dtype", "quantization"} <= set(d["vllm"])
    assert {"ttft_p95_ms", "tpot_p95_ms", "e2e_p95_ms", "output_tokens_per_s_per_replica"} <= set(d["predicted"])
    assert {"usd_per_hour_baseline", "usd_per_hour_max", "usd_per_million_output_tokens"} <= set(d["cost"])
    assert {"scale_query", "scale_threshold_per_replica", "admission_limit_per_replica", "max_num_seqs",
            "polling_interval_s", "min_replicas", "max_replicas", "hpa"} <= set(d["control"])
    assert {"name", "passed", "attainment_pct", "ttft_p95_ms", "tpot_p95_ms", "e2e_p95_ms"} <= set(d["verification"][0])


def test_max_nodes_per_az_caps_the_search_and_names_the_key():
    with pytest.raises(InfeasibleError, match="fleet.max_nodes_per_az: 1 is too low"):
        size(make_spec(workload__concurrent_requests=2000, workload__output_tokens_per_s=None,
                       fleet__max_nodes_per_az=1))


def test_max_nodes_per_az_caps_the_prefilter_burst_with_a_note():
    p = prefilter(make_spec(workload__burst_factor=20, fleet__max_nodes_per_az=4))
    assert p.nodes_per_az.max <= 4
    assert any("caps the burst" in n for n in p.notes)


def test_a_burst_the_node_ceiling_cannot_carry_fails_in_simulation_naming_the_scenario():
    with pytest.raises(InfeasibleError, match=r"burst leaves \d+% of its requests beyond .*fleet.max_nodes_per_az 4"):
        size(make_spec(workload__burst_factor=20, fleet__max_nodes_per_az=4, fleet__instance_types=["p5.48xlarge"]))


def test_high_availability_requires_surviving_an_az_loss():
    with pytest.raises(InputError, match="fleet.survive_az_loss"):
        size(make_spec(fleet__survive_az_loss=False))


def test_explicit_warm_spares_are_used():
    p = prefilter(make_spec(fleet__warm_spares_per_az=0))
    assert p.warm_spares_per_az == 0 and p.nodes_per_az.min == p.replicas_per_az // p.replicas_per_node


def test_rag_8k_plan_passes_its_own_simulation_and_is_larger_than_the_closed_forms():
    """Long prompts are where the closed form is optimistic (a step carries one budget-sized
    chunk or none): the verified plan needs more GPUs than the pre-filter's."""
    from infra.core.config import load_sizing_spec

    spec = load_sizing_spec("examples/rag-8k.yaml")
    verified = sized(spec)[0]
    assert [v.name for v in verified.verification if v.passed] == ["sustained", "az-loss", "burst"]
    assert verified.gpus_baseline > prefilter(spec).gpus_baseline
