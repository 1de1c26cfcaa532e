"""Self-host or API (issue 16): the TCO arithmetic on a tiny synthetic catalog, the daily
profile's autoscaling against a hand-computed day, stale API prices under a fixed clock, the
Bedrock refresh, the `tco` command and its bad input, and the vs-API block of size and plan."""
import argparse
import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from infra.cli import main
from infra.core.catalog import HOURS_PER_MONTH
from infra.core.catalog import refresh as rf
from infra.core.catalog.api_prices import is_stale
from infra.core.catalog.prices import parse_price_document, render_price_document
from infra.core.clock import TODAY_ENV
from infra.core.config import TcoConfig
from infra.core.cost.report import EKS, GPU_NODES, REGIONAL, CostReport, GpuCount, LineItem
from infra.core.cost.tco import Fleet, day_of, render_tco_table, tco_of, tokens_text, vs_api_lines
from infra.core.errors import InputError
from infra.core.paths import REPO_ROOT
from tests.money_rule import assert_money_rule

CENT = Decimal("0.01")
TODAY = date(2026, 3, 1)


def row(**amounts):
    return {**amounts, "source": "test", "date": "2026-01-01", "confirmed": True}


# A tiny catalog: one API at $1 / $3 per 1M input / output tokens, a 20 % Savings Plan.
BOOK = parse_price_document({
    "api_models": {"test-api": {"provider": "Test", "model": "T", **row(usd_per_million_input_tokens="1.00",
                                                                        usd_per_million_output_tokens="3.00")},
                   "free-api": {"provider": "Test", "model": "F", **row(usd_per_million_input_tokens="0",
                                                                        usd_per_million_output_tokens="0")}},
    "reservations": {"savings-plan-1yr": row(discount_pct="20", applies_to="test")},
})

# A fleet over 2 AZs, 1 replica per node, 1-3 nodes per AZ, 2-6 replicas, KEDA at 10 in flight per
# replica, knee 6 req/s per replica; 300 in / 100 out; 20 in flight at 10 req/s (2 s latency).
PLAN = {
    "azs": 2, "replicas_per_node": 1, "warm_spares_per_az": 0, "nodes_per_az": {"min": 1, "desired": 1, "max": 3},
    "control": {"min_replicas": 2, "max_replicas": 6, "scale_threshold_per_replica": 10, "knee_rate_per_replica": 6.0},
    "load": {"concurrent_requests": 20, "burst_concurrent_requests": 40.0, "output_tokens_per_s": 1000.0,
             "input_tokens": 300, "output_tokens": 100, "arrival_rate_per_s": 10.0},
    "instance_type": "gpu.test", "cost": {"usd_per_node_hour": "10", "price_source": "test"},
}
# 8 idle hours, 8 at the declared load, 6 at 1.5x, 2 at 3.5x: 24 full-load hours a day.
PROFILE = (0.0,) * 8 + (1.0,) * 8 + (1.5,) * 6 + (3.5,) * 2


def report() -> CostReport:
    """GPU node groups of 2-6 nodes at $10/node-hour ($14,600 a month at 2) and an EKS control plane ($73)."""
    gpu = LineItem(GPU_NODES, "az-1", "gpu", "2-6 x gpu.test", (Decimal(14_600), Decimal(14_600), Decimal(43_800)))
    eks = LineItem(EKS, REGIONAL, "eks", "control plane", (Decimal(73),) * 3)
    return CostReport("test", "test-1", "plan", (gpu, eks),
                      {"baseline": GpuCount(2, 16), "expected": GpuCount(2, 16), "worst": GpuCount(6, 48)})


def tco(**config):
    cfg = TcoConfig(**{"daily_profile": PROFILE, "oncall_fte": 0.5, "usd_per_fte_year": Decimal(120_000),
                       "reservation": "savings-plan-1yr", "compare_with": ("test-api",), **config})
    return tco_of(report(), PLAN, cfg, declared_output_tokens_per_s=1000, prices=BOOK, today=TODAY)


def test_the_daily_profile_runs_the_node_hours_computed_by_hand():
    # in flight = rate x 2 s; replicas = ceil(in flight / 10) within 2-6; nodes per AZ = ceil(replicas / 2).
    day = day_of(Fleet.of(PLAN, 1000), PROFILE)
    assert day.replicas == (2,) * 8 + (2,) * 8 + (3,) * 6 + (6,) * 2  # 0 -> min 2; 20 -> 2; 30 -> 3; 70 -> max 6
    assert day.nodes == (2,) * 8 + (2,) * 8 + (4,) * 6 + (6,) * 2
    assert day.node_hours == 68


def test_tco_arithmetic_to_the_cent():
    t = tco()
    # GPU: 68 node-hours a day x $10 x 730/24 days; staffing 0.5 x 120,000 / 12; the Savings Plan
    # commits the 2 nodes that run every hour: 2 x 730 h x $10 x 20 %.
    assert t.usd_per_node_hour == 10 and t.reserved_nodes == 2
    assert t.costs.gpu.quantize(CENT) == Decimal("20683.33")
    assert (t.costs.fixed, t.costs.staffing, t.costs.reservation_savings) == (73, 5000, 2920)
    assert t.costs.total.quantize(CENT) == Decimal("22836.33")
    # Demand: 1,000 output tok/s x 3,600 s x 24 full-load hours x 4 tokens per output token.
    assert t.tokens_per_day_at_demand == 345_600_000
    assert t.usd_per_million_tokens("demand").quantize(Decimal("0.0001")) == Decimal("2.1724")  # 22,836.33 / 10,512
    # Capacity: knee 6 req/s x 2 baseline replicas x 100 tokens, around the clock on 2 nodes.
    assert t.capacity_output_tokens_per_s == 1200 and t.capacity_costs.total == Decimal("16753")
    assert t.tokens_per_day_at_capacity == 414_720_000
    assert t.usd_per_million_tokens("capacity").quantize(Decimal("0.0001")) == Decimal("1.3281")
    api = next(a for a in t.apis if a.price.key == "test-api")
    assert api.usd_per_million_tokens == Decimal("1.5")  # (300 x $1 + 100 x $3) / 400
    assert api.bill_usd_per_month.quantize(CENT) == Decimal("15768.00")  # 345.6M x 730/24 x $1.50 / 1M
    assert t.scenarios["baseline"] == 14_600 + 73 + 5000 - 2920


def test_break_even_counts_the_node_hours_the_volume_needs():
    """At volume V the profile scales to V: 96 node-hours a day (checked by hand at 1.99x), so the
    API's bill catches up at $31,353 a month, beyond what this fleet can carry in that shape."""
    t = tco()
    api = next(a for a in t.apis if a.price.key == "test-api")
    assert (api.break_even_tokens_per_day * Decimal("1.5") * HOURS_PER_MONTH / 24 / 1_000_000).quantize(CENT) == \
        Decimal("31353.00")
    assert api.break_even_tokens_per_day.quantize(Decimal(1)) == Decimal("687189041")
    assert t.capacity_tokens_per_day_in_shape.quantize(Decimal(1)) == Decimal("355474286")  # 6 x 6 x 100 x 3,600 x 24 / 3.5 x 4
    assert not api.within_capacity
    free = next(a for a in t.apis if a.price.key == "free-api")
    assert free.break_even_tokens_per_day is None and not free.within_capacity


def test_the_priced_node_groups_bound_the_fleet():
    """A document whose node groups hold 4-6 nodes (a change the plan does not know) runs at least 4."""
    base = report()
    doubled = CostReport(base.stack, base.region, base.source, base.items,
                         {"baseline": GpuCount(4, 32), "expected": GpuCount(4, 32), "worst": GpuCount(6, 48)})
    t = tco_of(doubled, PLAN, TcoConfig(daily_profile=PROFILE, compare_with=("test-api",)),
               declared_output_tokens_per_s=1000, prices=BOOK, today=TODAY)
    assert t.day.nodes == (4,) * 22 + (6,) * 2


def test_staffing_and_reservation_can_be_zero():
    t = tco(oncall_fte=0, reservation="none")
    assert t.costs.staffing == 0 and t.costs.reservation_savings == 0 and t.reserved_nodes == 0
    assert t.costs.total == t.costs.gpu + 73


@pytest.mark.parametrize("output_tokens_per_s, knee, said, not_said", [
    (1000, 6.0, [], ["declared demand"]),  # capacity 1,200 tok/s: within 1.5x of the demand
    (1500, 6.0, [], ["declared demand"]),  # 1.25x the other way
    (400, 6.0, ["3.0x the declared demand", "demand understated"], ["over-provisioned"]),  # 20 in flight make 1,000
    (1000, 20.0, ["4.0x the declared demand", "over-provisioned"], ["demand understated"]),  # capacity 4,000
    (3000, 6.0, ["under-provisioned"], ["over-provisioned"]),
])
def test_demand_and_capacity_far_apart_say_which_side_is_wrong(output_tokens_per_s, knee, said, not_said):
    plan = {**PLAN, "control": {**PLAN["control"], "knee_rate_per_replica": knee}}
    t = tco_of(report(), plan, TcoConfig(compare_with=("test-api",)), declared_output_tokens_per_s=output_tokens_per_s,
               prices=BOOK, today=TODAY)
    text = " ".join(t.notes)
    assert all(w in text for w in said) and not any(w in text for w in not_said), text


def test_a_region_serves_its_traffic_share_of_what_it_is_sized_for():
    """A region sized to absorb another serves only its own share: half the tokens, the same fleet."""
    half = tco_of(report(), PLAN, TcoConfig(daily_profile=PROFILE, compare_with=("test-api",)),
                  declared_output_tokens_per_s=1000, served_share=Decimal("0.5"), prices=BOOK, today=TODAY)
    assert half.fleet.demand_output_tokens_per_s == 500 and half.tokens_per_day_at_demand == 172_800_000
    assert half.capacity_output_tokens_per_s == 1200 and "traffic share" in half.fleet.demand_text


def test_undeclared_rate_takes_the_concurrency_at_the_simulated_latency():
    t = tco_of(report(), PLAN, TcoConfig(compare_with=("test-api",)), declared_output_tokens_per_s=None, prices=BOOK,
               today=TODAY)
    assert t.fleet.demand_output_tokens_per_s == 1000 and t.fleet.demand_from == "workload.concurrent_requests"


@pytest.mark.parametrize("today, stale", [(date(2026, 6, 30), False), (date(2026, 7, 1), True)])
def test_a_row_older_than_the_set_age_is_stale(today, stale):
    assert is_stale("2026-01-01", today, 180) is stale  # 180 days later: not yet; 181: stale
    t = tco_of(report(), PLAN, TcoConfig(compare_with=("test-api",)), declared_output_tokens_per_s=1000, prices=BOOK,
               today=today)
    assert all(a.stale is stale for a in t.apis)
    assert any("stale API prices" in n for n in t.to_dict()["notes"]) is stale


def test_the_injected_clock_judges_staleness(monkeypatch):
    monkeypatch.setenv(TODAY_ENV, "2027-01-01")
    t = tco_of(report(), PLAN, TcoConfig(compare_with=("test-api",)), declared_output_tokens_per_s=1000, prices=BOOK)
    assert t.today == date(2027, 1, 1) and all(a.stale for a in t.apis)
    assert "[stale]" in "\n".join(vs_api_lines(t)) and "stale API prices" in render_tco_table(t)


def test_the_json_follows_the_money_rule():
    doc = tco().to_dict()
    assert_money_rule(doc)
    assert doc["usd_per_month"]["at_demand"]["total"] == "22836.33"
    assert doc["fleet"]["node_hours_per_day"] == 68 and doc["apis"][1]["in_short_block"]


@pytest.mark.parametrize("config, field", [
    ({"compare_with": ("no-such-api",)}, "tco.compare_with"),
    ({"reservation": "capacity-block"}, "tco.reservation"),  # no block rate for gpu.test in the tiny book
])
def test_unknown_api_or_reservation_rate_names_the_field(config, field):
    with pytest.raises(InputError) as exc:
        tco(**config)
    assert field in str(exc.value)


@pytest.mark.parametrize("n, expected", [(Decimal(950), "950"), (Decimal(812_000_000), "812M"),
                                         (Decimal(33_849_720_975), "33.8B"), (None, "n/a")])
def test_tokens_text(n, expected):
    assert tokens_text(n) == expected


# --- the price book's API rows -------------------------------------------------------------------


def test_the_packaged_api_rows_carry_source_date_and_flag():
    from infra.core.catalog.prices import load_price_book

    book = load_price_book()
    assert {"bedrock-llama-3.3-70b", "bedrock-claude-3-haiku", "bedrock-claude-sonnet-4.5", "openai-gpt-4o",
            "openai-gpt-4o-mini", "anthropic-claude-sonnet-4.5"} <= set(book.api_models)
    for r in book.api_models.values():
        assert r.source and date.fromisoformat(r.date) and isinstance(r.confirmed, bool)
        assert bool(r.region) == r.provider.startswith("Amazon Bedrock") == bool(r.price_list_model)
    assert ("api_models", "", "openai-gpt-4o") in book.unconfirmed()  # recalled, not checked here
    assert parse_price_document(yaml.safe_load(render_price_document(BOOK))) == BOOK


@pytest.mark.parametrize("doc, field", [
    ({"api_models": {"x": {"provider": "p", "model": "m", "usd_per_million_input_tokens": "1", "source": "s",
                           "date": "d"}}}, "usd_per_million_output_tokens"),
    ({"api_models": {"x": {"provider": "p", "model": "m", "usd_per_million_input_tokens": "-1",
                           "usd_per_million_output_tokens": "1", "source": "s", "date": "d"}}}, "usd_per_million_input_tokens"),
    ({"reservations": {"sp": {"discount_pct": "120", "applies_to": "a", "source": "s", "date": "d"}}}, "discount_pct"),
])
def test_bad_api_rows_name_the_field(doc, field):
    with pytest.raises(InputError) as exc:
        parse_price_document(doc)
    assert field in str(exc.value)


class FakePricing:
    """A Price List client answering AmazonBedrock with fabricated products (one page)."""

    def __init__(self, products):
        self.products, self.calls = products, []

    def get_products(self, **kwargs):
        self.calls.append(kwargs)
        return {"PriceList": [json.dumps(p) for p in self.products]}


def product(model, kind, usd, unit="1K tokens"):
    return {"product": {"attributes": {"model": model, "inferenceType": kind, "regionCode": "us-east-1"}},
            "terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"unit": unit, "pricePerUnit": {"USD": usd}}}}}}}


def test_refresh_rereads_bedrock_rows_and_leaves_the_others_to_a_hand_update():
    from infra.core.catalog.prices import load_price_book

    client = FakePricing([product("Llama 3.3 70B Instruct", "Input tokens", "0.00071"),
                          product("Llama 3.3 70B Instruct", "Output tokens", "0.00071"),
                          product("Llama 3.3 70B Instruct", "Batch input tokens", "0.00036"),  # not on-demand
                          product("Claude 3 Haiku", "Input tokens", "0.25", unit="1M tokens")])  # no output row
    result = rf.refresh_api_models(client, load_price_book(), today="2026-12-01")
    llama = result.book.api_models["bedrock-llama-3.3-70b"]
    assert (llama.usd_per_million_input_tokens, llama.usd_per_million_output_tokens) == (Decimal("0.71"), Decimal("0.71"))
    assert llama.confirmed and llama.date == "2026-12-01" and "Price List API" in llama.source
    assert not result.book.api_models["bedrock-claude-3-haiku"].confirmed  # half an answer: kept
    assert any("openai-gpt-4o: no price API" in c for c in result.changes)
    assert {c["ServiceCode"] for c in client.calls} == {"AmazonBedrock"}


def test_prices_refresh_api_models_writes_the_book(tmp_path):
    from infra.cli import cost as cost_cli
    from infra.core.catalog.prices import PRICES_PATH, load_price_book

    target = tmp_path / "prices.yaml"
    shutil.copy(PRICES_PATH, target)
    client = FakePricing([product("Llama 3.3 70B Instruct", k, "0.0007") for k in ("Input tokens", "Output tokens")])
    args = argparse.Namespace(prices=str(target), region=None, no_services=False, api_models=True, dry_run=False,
                              json=None)
    assert cost_cli.cmd_prices_refresh(args, client=client) == 0
    assert load_price_book(target).api_models["bedrock-llama-3.3-70b"].usd_per_million_input_tokens == Decimal("0.7")


# --- the commands ---------------------------------------------------------------------------------


def test_tco_command_for_prod(capsys, tmp_path):
    target = tmp_path / "tco.json"
    assert main(["tco", "--stack", "prod", "--json", str(target)]) == 0
    out = capsys.readouterr().out  # the table stays on stdout
    assert "at the declared demand" in out and "GPU nodes " in out and "break-even tokens/day" in out
    assert "demand x" in out and "node-hours a day" in out and "stale API prices" in out  # judged on the suite's day
    doc = json.loads(target.read_text())
    assert_money_rule(doc)
    assert doc["stack"] == "prod" and doc["assumptions"]["demand_from"] == "workload.output_tokens_per_s"
    assert doc["assumptions"]["served_share"] == 0.6  # 60 % of prod's traffic, sized for 100 % (stacks/prod.yaml)
    assert doc["tokens"]["demand_output_tokens_per_s"] == 3000
    assert Decimal(doc["usd_per_month"]["at_demand"]["fixed_infrastructure"]) > 0  # the whole stack is priced
    by = {a["key"]: a for a in doc["apis"]}
    assert by["bedrock-llama-3.3-70b"]["break_even_tokens_per_day"] > 0 and by["openai-gpt-4o"]["in_short_block"]
    # prod's capacity within SLO is far above its declared 5,000 output tokens/s: the note says which side is wrong
    assert doc["tokens"]["capacity_to_demand"] > 1.5 and any("demand understated" in n for n in doc["notes"])


def _stack_dir(tmp_path: Path, tco_section: dict) -> Path:
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    stack["config"]["llm-fleet:tco"] = tco_section
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    return tmp_path


@pytest.mark.parametrize("section, words", [
    ({"daily_profile": [1.0] * 23}, ["llm-fleet:tco.daily_profile", "23 multipliers given", "exactly 24"]),
    ({"daily_profile": [1.0] * 23 + [-0.5]}, ["llm-fleet:tco.daily_profile", "hour 23: -0.5", "[0, 100]"]),
    ({"daily_profile": [0] * 24}, ["llm-fleet:tco.daily_profile", "at least one hour"]),
    ({"daily_profile": [True] * 24}, ["llm-fleet:tco.daily_profile", "hour 0: a boolean is not a number"]),
    ({"oncall_fte": -1}, ["llm-fleet:tco.oncall_fte", "-1", "greater than or equal to 0"]),
    ({"reservation": "savings-plan-5yr"}, ["llm-fleet:tco.reservation", "savings-plan-5yr", "savings-plan-3yr"]),
])
def test_bad_tco_config_exits_2_naming_field_value_and_allowed(tmp_path, capsys, section, words):
    assert main(["tco", "--stack", "prod", "--project-dir", str(_stack_dir(tmp_path, section))]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "Traceback" not in err


def test_size_shows_the_vs_api_block(capsys):
    assert main(["size", "--stack", "prod"]) == 0
    out = capsys.readouterr().out
    block = out.split("vs API", 1)[1]
    assert "bedrock-llama-3.3-70b" in block and "break-even tokens/day" in block
    assert "fixed infrastructure not counted" in block  # size prices the GPU nodes alone
