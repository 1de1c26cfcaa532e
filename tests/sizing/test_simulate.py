"""The replica simulator against hand-computed cases, and the fleet simulator's accounting.

Scheduler cases use a real replica (Llama-3.1-8B on one H100) with a small token budget, so
each step's content is easy to compute by hand.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from infra.core.catalog import load_catalog
from infra.core.resolve import resolve
from infra.core.sizing.perf import ReplicaModel, engine_params
from infra.core.sizing.simulate.engine import DECODE, DONE, PREFILL, REJECTED, WAITING, Engine, Requests
from infra.core.sizing.simulate.fleet import _Hpa
from infra.core.sizing.simulate.replica import run_closed, run_open
from infra.core.sizing.simulate import scenarios
from infra.core.sizing.simulate.scenarios import run_scenario, verify
from infra.core.sizing.simulate.stats import SLO_QUANTILE_PCT, Latencies
from infra.core.sizing.simulate.workload import Lengths, RateProfile, fixed_count, poisson_arrivals

BUDGET = 256


def replica(max_num_seqs: int = 64, budget: int = BUDGET) -> ReplicaModel:
    cat = load_catalog()
    return ReplicaModel(cat.model("llama-3.1-8b"), cat.gpu("H100-SXM-80GB"), 1, "bf16", "auto", engine_params("vllm"),
                        max_num_seqs=max_num_seqs, max_num_batched_tokens=budget)


def engine_with(requests: list[tuple[int, int]], **kw) -> tuple[Engine, Requests]:
    R = Requests()
    eng = Engine(replica(**kw), R, record_steps=True)
    for prompt, output in requests:
        eng.waiting.append(R.add(0.0, prompt, output))
    return eng, R


def test_a_prompt_of_three_budgets_gets_its_first_token_at_the_end_of_the_third_step():
    eng, R = engine_with([(3 * BUDGET, 4)])
    for step in range(3):
        assert R.first_t[0] < 0, f"first token before step {step + 1}"
        eng.step()
        assert R.done[0] == (step + 1) * BUDGET  # one budget-sized chunk per step, never spread
    assert R.first_t[0] == pytest.approx(sum(eng.step_dt[:3]))
    assert R.state[0] == DECODE and R.gen[0] == 1


def test_decode_tokens_are_scheduled_before_prompt_chunks():
    eng, R = engine_with([(16, 100)] * 4)
    eng.step()  # four short prompts in one step
    assert all(R.state[i] == DECODE for i in range(4))
    late = R.add(eng.t, 1000, 10)
    eng.waiting.append(late)
    eng.step()
    # The four decoding requests take a token each; the prompt gets what is left of the budget.
    assert eng.step_dec[-1] == 4
    assert R.done[late] == BUDGET - 4 and R.state[late] == PREFILL
    assert eng.n_dec == 4  # nobody decoding was left out for the prompt


def test_max_num_seqs_caps_the_running_set_and_the_rest_wait():
    eng, R = engine_with([(16, 50)] * 5, max_num_seqs=3)
    eng.step()
    assert [R.state[i] for i in range(5)] == [DECODE] * 3 + [WAITING] * 2
    while eng.busy:
        eng.step()
    assert all(s == DONE for s in R.state)


def test_the_newest_request_is_preempted_when_the_kv_pool_runs_out_and_all_finish():
    # Three requests of 32 + 96 tokens need 8 blocks each at the end; a pool of 12 holds 1.5 of them.
    eng, R = engine_with([(32, 96)] * 3)
    eng.pool = 12
    preempted_first = None
    while eng.busy:
        before = eng.preemptions
        eng.step()
        if preempted_first is None and eng.preemptions > before:
            preempted_first = next(i for i in range(3) if R.state[i] == WAITING)
    assert eng.preemptions > 0
    assert preempted_first == 2  # the newest running request goes back to the queue
    assert all(s == DONE for s in R.state) and eng.blocks_used == 0
    # Recompute: the preempted request resumed where it was (its first token is not re-sent).
    assert R.first_t[2] < R.finish_t[2] and R.finish_t[2] == max(R.finish_t)


def test_kv_blocks_are_all_returned_and_never_exceed_the_pool():
    eng, R = engine_with([(100 + 13 * i, 37 + 5 * i) for i in range(20)])
    peak = 0
    while eng.busy:
        eng.step()
        peak = max(peak, eng.blocks_used)
    assert peak <= eng.pool and eng.blocks_used == 0
    assert all(R.state[i] == DONE for i in range(20))


def test_prefix_cache_hits_skip_whole_blocks_of_each_prompt():
    R = Requests()
    eng = Engine(replica(), R, record_steps=True)
    from infra.core.sizing.simulate.engine import cached_tokens

    rid = R.add(0.0, 200, 2, cached_tokens(200, 0.5))
    eng.waiting.append(rid)
    eng.step()
    assert R.cached[rid] == 96 and R.state[rid] == DECODE  # 100 tokens -> 6 whole blocks of 16
    assert R.done[rid] == 200


@pytest.mark.parametrize("runner", ["closed", "open"])
def test_runs_are_deterministic_by_seed(runner):
    rm = replica(budget=2048)
    lengths = Lengths(300, 40, "lognormal")

    def run(seed: int):
        if runner == "closed":
            return run_closed(rm, lengths, 8, 120, seed=seed)
        return run_open(rm, fixed_count(np.random.default_rng(seed), lengths, 20.0, 200))

    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a.latencies.e2e_s, b.latencies.e2e_s) and a.to_dict() == b.to_dict()
    assert not np.array_equal(a.latencies.e2e_s, c.latencies.e2e_s)


def test_poisson_arrivals_follow_a_ramp_profile():
    rng = np.random.default_rng(0)
    t = poisson_arrivals(rng, 10.0, 300.0, RateProfile.burst(100.0, 100.0, 100.0, 4.0))
    assert abs(np.sum(t < 100) - 1000) < 120  # 1x
    assert abs(np.sum(t >= 200) - 4000) < 250  # 4x, held
    assert np.all(np.diff(t) >= 0)


def test_attainment_and_p95_count_rejected_requests_as_misses():
    ok = np.full(90, 0.1)
    lat = Latencies(np.concatenate([ok, np.full(10, np.inf)]), np.concatenate([ok / 10, np.full(10, np.inf)]),
                    np.concatenate([ok * 10, np.full(10, np.inf)]))
    targets = {"ttft": 200.0, "tpot": 40.0, "e2e": 2000.0}
    assert lat.attainment_pct(targets) == pytest.approx(90.0)
    assert lat.p95_ms("ttft") == np.inf  # 10 % missed: the p95 is a miss
    assert [m for m, _, _ in lat.broken(targets)] == ["ttft", "tpot", "e2e"]
    few = Latencies(lat.ttft_s[:94], lat.tpot_s[:94], lat.e2e_s[:94])  # 4 of 94 missed: under 5 %
    assert few.p95_ms("ttft") == pytest.approx(100.0) and not few.broken(targets)


def test_hpa_follows_the_average_value_rule_tolerance_and_policies():
    plan = resolve("prod").plan
    c = dataclasses.replace(plan.control, scale_threshold_per_replica=10, min_replicas=4, max_replicas=40,
                            hpa=dataclasses.replace(plan.control.hpa, scale_up_pods=2))
    hpa = _Hpa(c)
    assert hpa.desired(0, 4, 42.0) == 4  # 42 / (10 x 4) = 1.05: within the 10 % tolerance
    assert hpa.desired(15, 4, 100.0) == 8  # ceil(100 / 10) = 10, but +100 % of 4 per minute at most
    assert hpa.desired(30, 8, 400.0) == 8  # still in the same minute: 4 added already
    assert hpa.desired(80, 8, 400.0) == 16  # a new period: doubling again
    assert hpa.desired(95, 16, 10.0) == 16  # scale-down waits for its stabilization window


@pytest.fixture(scope="module")
def prod():
    return resolve("prod")


def test_admission_sheds_beyond_the_limit_and_the_shed_requests_are_misses(prod):
    plan = prod.plan
    tight = dataclasses.replace(plan, control=dataclasses.replace(plan.control, admission_limit_per_replica=2))
    w = prod.spec.workload
    run = run_scenario(tight, w, "sustained", lengths=Lengths(w.input_tokens, w.output_tokens),
                       rate_per_s=plan.load["arrival_rate_per_s"])
    r = run.result
    states = np.asarray(run.fleet.requests.state)[run.measured]
    assert r.rejected == int((states == REJECTED).sum()) > 0.05 * r.requests
    assert r.attainment_pct <= 100.0 * (1 - r.rejected / r.requests) + 0.01  # rounded to 2 decimals
    assert not r.passed and "sustained: " in r.why


def test_a_verdict_is_simulated_once_per_inputs_and_again_when_an_input_changes(prod, monkeypatch):
    """Runs are deterministic, so equal inputs share one simulation (prod and its second region,
    which differ only in region, verify once); any input the fleet reads starts a new one."""
    seeds = []
    simulate = scenarios.simulate_fleet
    monkeypatch.setattr(scenarios, "simulate_fleet", lambda *a, **kw: seeds.append(kw["seed"]) or simulate(*a, **kw))
    plan, w = prod.plan, prod.spec.workload
    plan = dataclasses.replace(plan, control=dataclasses.replace(plan.control, admission_limit_per_replica=3))
    kw = dict(lengths=Lengths(w.input_tokens, w.output_tokens), rate_per_s=10.0, names=("sustained",))
    first = verify(plan, w, seed=7, **kw)
    assert verify(dataclasses.replace(plan, region="us-west-2"), w, seed=7, **kw) is first
    assert seeds == [7]
    verify(plan, w, seed=8, **kw)
    verify(dataclasses.replace(plan, control=dataclasses.replace(plan.control, admission_limit_per_replica=4)), w,
           seed=7, **kw)
    assert seeds == [7, 8, 7]


def test_in_a_burst_the_fleet_scales_out_before_attainment_falls_below_target(prod):
    """The control loop, as deployed: with room to grow (3 serving nodes per AZ, up to 6) and a
    ramp slower than the node tier's time to serve, replicas rise above the baseline before any
    interval's joint attainment drops under the target."""
    plan, w = prod.plan, prod.spec.workload
    baseline = 3 * plan.replicas_per_node * plan.azs
    grow = dataclasses.replace(
        plan, nodes_per_az=dataclasses.replace(plan.nodes_per_az, min=3, desired=3),
        control=dataclasses.replace(plan.control, min_replicas=baseline))
    slow = w.model_copy(update={"burst_factor": 2.0, "burst_ramp_s": 900.0, "burst_hold_s": 60.0})
    run = run_scenario(grow, slow, "burst", lengths=Lengths(w.input_tokens, w.output_tokens),
                       rate_per_s=plan.load["arrival_rate_per_s"])
    rows = run.timeline(scenarios.targets_ms(slow))
    target = SLO_QUANTILE_PCT
    rose = next(i for i, r in enumerate(rows) if r["replicas_ready"] > baseline)
    fell = next((i for i, r in enumerate(rows) if r["attainment_pct"] is not None and r["attainment_pct"] < target),
                len(rows))
    assert rows[0]["replicas_ready"] == baseline and run.result.replicas_max > baseline
    assert rose < fell
