"""The rollout plan model, the region-share sizing, and the environment's stack files."""
from __future__ import annotations

import copy
import math
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.core.config import SizingSpec, load_stack_config
from infra.core.errors import UserError
from infra.core.rollout.environment import check_environment, environment_problems
from infra.core.resolve import resolve
from infra.core.rollout.regions import regional_spec, share_of, sizing_share_pct
from infra.core.rollout.spec import RegionShare, load_rollout_plan, parse_rollout_plan
from rollout_support import REPO, plan_doc

PROD_PLAN = REPO / "stacks" / "prod.yaml"

SPEC = SizingSpec.model_validate({
    "workload": {"concurrent_requests": 200, "burst_factor": 4, "input_tokens": 500, "output_tokens": 200,
                 "ttft_p95_ms": 600, "tpot_p95_ms": 40, "e2e_p95_ms": 4000, "output_tokens_per_s": 5000},
    "model": {"name": "llama-3.3-70b"},
    "fleet": {"region": "us-east-1", "azs": 3},
})


# --- the plan model ----------------------------------------------------------------------


def test_prod_plan_loads_and_lists_both_region_stacks():
    plan = load_rollout_plan(PROD_PLAN)
    assert [r.stack for r in plan.regions] == ["prod-us-west-2", "prod"]
    assert len(plan.waves[0].stacks) == 1  # canary first
    assert plan.gates.health is not None and plan.gates.health.queries
    assert sum(r.traffic_share_pct for r in plan.regions) == 100


@pytest.mark.parametrize(
    "change, message",
    [
        ({"gates__cost__max_monthly_increse_usd": 5}, "gates.cost.max_monthly_increse_usd: unknown key"),
        ({"waves__0__bake_minuts": 5}, "waves.0.bake_minuts: unknown key"),
        ({"regions__0__traffic_share_pct": 50}, "shares total 110 is not allowed; they must add up to 100"),
        ({"regions__1__stack": "west"}, "regions.1.stack: 'west' is not allowed; each stack is listed once"),
        ({"waves__0__stacks": ["west", "east"]}, "the first wave is the canary and holds exactly one stack"),
        ({"waves__1__stacks": ["east", "nope"]}, "waves.1.stacks.1: 'nope' is not allowed; waves list region stacks"),
        ({"waves__1__stacks": ["east", "west"]}, "waves.1.stacks.1: 'west' is not allowed; it is already in wave 'canary'"),
        ({"waves__1__stacks": ["east"]}, "region stacks ['east2'] are in no wave"),
        ({"waves__0__bake_minutes": -1}, "waves.0.bake_minutes: -1 is not allowed"),
        ({"regions__0__region": "mars-1"}, "regions.0.region: 'mars-1' is not allowed"),
        ({"gates__health__queries": [{"name": "x", "query": "up"}]}, "set max_value, min_value or both"),
        ({"gates__health__prometheus_url": None}, "queries need prometheus_url"),
        ({"gates__health__http": [{"name": "h", "url": "https://x/{zone}"}]}, "placeholder {zone} is unknown"),
        ({"on_failure__rollback": "everything"}, "on_failure.rollback: 'everything' is not allowed"),
    ],
)
def test_plan_errors_name_the_key_path(change, message):
    with pytest.raises(UserError) as info:
        parse_rollout_plan(plan_doc(**change), source="stacks/x.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("stacks/x.yaml: ")


def test_missing_gates_is_reported():
    doc = plan_doc()
    del doc["gates"]
    with pytest.raises(UserError, match="gates: required key is missing"):
        parse_rollout_plan(doc)


def test_absorbing_needs_two_regions():
    doc = plan_doc(regions=[{"stack": "west", "region": "us-west-2", "traffic_share_pct": 100,
                             "absorb_region_failure": True}],
                   waves=[{"name": "canary", "stacks": ["west"], "bake_minutes": 1}])
    with pytest.raises(UserError, match="absorb_region_failure: true is not allowed; it needs at least two regions"):
        parse_rollout_plan(doc)


# --- region shares ------------------------------------------------------------------------


def _shares(*pcts, absorb=False):
    return tuple(RegionShare(stack=f"s{i}", region=f"us-east-{i + 1}", traffic_share_pct=Decimal(p),
                             absorb_region_failure=absorb) for i, p in enumerate(pcts))


def test_share_scales_load_and_keeps_the_request_shape():
    east, west = _shares(60, 40)
    spec = regional_spec(SPEC, west, (east, west))
    assert spec.workload.concurrent_requests == 80
    assert spec.workload.output_tokens_per_s == 2000
    for same in ("input_tokens", "output_tokens", "ttft_p95_ms", "tpot_p95_ms", "burst_factor", "e2e_p95_ms"):
        assert getattr(spec.workload, same) == getattr(SPEC.workload, same)
    assert spec.model == SPEC.model and spec.fleet == SPEC.fleet


def test_absorbing_a_failure_adds_the_largest_other_share():
    a, b, c = _shares(40, 30, 30, absorb=True)
    assert sizing_share_pct(a, (a, b, c)) == 70
    assert sizing_share_pct(b, (a, b, c)) == 70
    assert regional_spec(SPEC, b, (a, b, c)).workload.concurrent_requests == 140
    east, west = _shares(60, 40, absorb=True)
    assert sizing_share_pct(east, (east, west)) == sizing_share_pct(west, (east, west)) == 100


def test_rounding_never_loses_a_request():
    (one, two, three) = _shares(Decimal("33.33"), Decimal("33.33"), Decimal("33.34"))
    total = sum(regional_spec(SPEC, s, (one, two, three)).workload.concurrent_requests for s in (one, two, three))
    assert total >= SPEC.workload.concurrent_requests


@settings(max_examples=60, deadline=None)
@given(
    concurrent=st.integers(min_value=1, max_value=100_000),
    share=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2),
    other=st.decimals(min_value=Decimal("0"), max_value=Decimal("100"), places=2),
    absorb=st.booleans(),
)
def test_regional_load_is_between_the_share_and_the_whole(concurrent, share, other, absorb):
    spec = SPEC.model_copy(update={"workload": SPEC.workload.model_copy(update={"concurrent_requests": concurrent})})
    mine = RegionShare(stack="a", region="us-east-1", traffic_share_pct=share, absorb_region_failure=absorb)
    regions_ = (mine,) + ((RegionShare(stack="b", region="us-west-2", traffic_share_pct=other),) if other > 0 else ())
    got = regional_spec(spec, mine, regions_).workload.concurrent_requests
    assert got >= max(1, math.ceil(concurrent * share / 100))
    assert got <= concurrent
    if absorb and other > 0:
        assert got >= min(concurrent, math.ceil(concurrent * min(share + other, Decimal(100)) / 100))


def test_the_resolver_reads_the_share_from_the_rollout_plan():
    cfg = load_stack_config("prod-us-west-2", REPO)
    west = resolve("prod-us-west-2", REPO)
    assert west.share.traffic_share_pct == 40 and west.sizing_share_pct == 100  # 40 % + 60 % absorbed
    assert west.spec.workload.concurrent_requests == cfg.workload.concurrent_requests
    assert west.environment_path == PROD_PLAN


def _project(tmp_path: Path, absorb: bool = True, copies: int = 1) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "stacks").mkdir()
    doc = yaml.safe_load(PROD_PLAN.read_text())
    for r in doc["regions"]:
        r["absorb_region_failure"] = absorb
    for i in range(copies):
        (tmp_path / "stacks" / f"prod{'-copy' * i}.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_the_resolver_scales_a_stack_without_absorb(tmp_path):
    resolved = resolve("prod", _project(tmp_path, absorb=False))
    assert resolved.spec.workload.concurrent_requests == 120 and resolved.spec.workload.output_tokens_per_s == 3000
    assert resolved.plan.load["concurrent_requests"] == 120  # the plan is sized for the share


def test_a_stack_no_environment_lists_is_sized_for_the_whole_workload(tmp_path):
    resolved = resolve("prod", _project(tmp_path, copies=0))
    assert resolved.share is None and resolved.sizing_share_pct == 100
    assert resolved.spec == resolved.config.sizing_spec()


def test_a_stack_in_two_environments_is_refused(tmp_path):
    project = _project(tmp_path, copies=2)
    with pytest.raises(UserError, match="listed as a region by more than one rollout plan"):
        share_of("prod", project)


def test_plans_are_memoised_by_what_they_depend_on(tmp_path):
    a = resolve("prod", REPO)
    b = resolve("prod", REPO)
    assert a.plan is b.plan and a.digest == b.digest
    scaled = resolve("prod", _project(tmp_path, absorb=False))
    assert scaled.digest != a.digest and scaled.plan is not a.plan


# --- the environment's stack files ----------------------------------------------------------


def test_prod_stacks_declare_identical_workload_and_model_blocks():
    plan = load_rollout_plan(PROD_PLAN)
    docs = {r.stack: yaml.safe_load((REPO / f"Pulumi.{r.stack}.yaml").read_text())["config"] for r in plan.regions}
    for key in ("llm-fleet:workload", "llm-fleet:model"):
        blocks = [d[key] for d in docs.values()]
        assert all(b == blocks[0] for b in blocks), key
    for r in plan.regions:
        assert docs[r.stack]["aws:region"] == r.region
    assert environment_problems(plan, REPO) == []


def _project_copy(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.prod-us-west-2.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def test_a_drifted_workload_block_is_refused(tmp_path):
    project = _project_copy(tmp_path)
    path = project / "Pulumi.prod-us-west-2.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["llm-fleet:workload"]["concurrent_requests"] = 80  # someone "pre-scaled" it
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match="llm-fleet:workload: Pulumi.prod.yaml differs from Pulumi.prod-us-west-2.yaml"):
        check_environment(load_rollout_plan(PROD_PLAN), project)


def test_a_region_mismatch_is_refused(tmp_path):
    project = _project_copy(tmp_path)
    plan = load_rollout_plan(PROD_PLAN)
    doc = copy.deepcopy(plan.model_dump(mode="json"))
    doc["regions"][0]["region"] = "us-east-2"
    problems = environment_problems(parse_rollout_plan(doc), project)
    assert any("has region 'us-east-2' in the plan but Pulumi.prod-us-west-2.yaml deploys to 'us-west-2'" in p
               for p in problems)


# --- health queries that name an SLO ---------------------------------------------------------


@pytest.mark.parametrize("slo, metric, target_s", [
    ("ttft_p95", "vllm:time_to_first_token_seconds", 0.6),
    ("tpot_p95", "vllm:inter_token_latency_seconds", 0.04),
    ("e2e_p95", "vllm:e2e_request_latency_seconds", 4.0),
])
def test_an_slo_query_is_bound_to_the_stacks_model_and_target(slo, metric, target_s):
    plan = load_rollout_plan(PROD_PLAN)
    query = next(q for q in plan.gates.health.queries if q.slo == slo)
    resolved = resolve("prod", REPO)
    bound = query.bind(resolved.plan.served_name, resolved.config.workload)
    assert bound.query == (f'histogram_quantile(0.95, sum by (le) (rate({metric}_bucket'
                           f'{{model_name="llama-3.3-70b-instruct"}}[5m])))')
    assert bound.max_value == pytest.approx(target_s) and bound.min_value is None


def test_the_alert_rules_and_the_gate_build_the_same_promql():
    from infra.core import metrics

    assert metrics.slo_query("ttft_p95", "m", "5m") == metrics.ttft_p95("m", "5m")
    assert metrics.slo_query("tpot_p95", "m", "5m") == metrics.tpot_p95("m", "5m")


@pytest.mark.parametrize("query, message", [
    ({"name": "x", "slo": "ttft_p95", "max_value": 1}, "takes its PromQL and bound from the stack"),
    ({"name": "x"}, "set `slo`"),
    ({"name": "x", "slo": "p99"}, "'p99'"),
])
def test_bad_slo_queries_are_refused(query, message):
    with pytest.raises(UserError, match=message):
        parse_rollout_plan(plan_doc(gates__health__queries=[query]))
