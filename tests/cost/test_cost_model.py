"""The cost model over whole documents: the real prod plan (its golden), both input formats,
the report's sums and shapes, and bad input. Each pricer's arithmetic is in test_pricers.py."""
import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from infra.core.catalog import HOURS_PER_MONTH as H
from infra.core.cost import (
    SCENARIOS,
    cents,
    cost_of_document,
    cost_of_plan,
    cost_of_preview,
    cost_of_resources,
    render_report_json,
    render_report_table,
)
from infra.core.errors import InputError, UserError
from infra.core.graph import NODE_GROUP, UNKNOWN, graph_of
from tests.cost import fixtures as F
from tests.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def prod():
    return F.offline_plan()


@pytest.fixture(scope="module")
def report(prod):
    return cost_of_plan(prod)


@pytest.mark.parametrize("name,render", [("prod_cost.json", render_report_json), ("prod_cost.txt", render_report_table)])
def test_prod_cost_golden(report, name, render):
    check_golden(GOLDEN / name, render(report))


def test_prod_costs_the_figure_the_project_quotes(report):
    # $724,642.22 a month expected, $724,940.56 worst case (README, docs): all priced, all in Decimal.
    assert [str(cents(report.total_month(s))) for s in ("expected", "worst")] == ["724642.22", "724940.56"]
    assert report.unpriced == ()
    assert all(isinstance(i.month(s), Decimal) for i in report.items for s in SCENARIOS)


def test_a_plan_graph_and_its_document_cost_the_same(prod, report):
    assert cost_of_document(graph_of(prod)).to_dict() == report.to_dict()


def test_per_az_and_per_component_both_add_up_to_the_total(report):
    for s in SCENARIOS:
        assert sum(report.by_az(s).values()) == report.total_month(s)
        assert sum(report.by_component(s).values()) == report.total_month(s)
    assert report.azs() == ["us-east-1a", "us-east-1b", "us-east-1c", "regional"]


def test_usd_per_million_output_tokens_uses_the_declared_load(prod, report):
    tokens = Decimal(str(prod["plan"]["load"]["output_tokens_per_s"]))
    millions_per_hour = tokens * 3600 / 1_000_000
    for s in SCENARIOS:
        assert report.usd_per_million_output_tokens(s) == report.total_month(s) / H / millions_per_hour
        assert report.usd_per_million_output_tokens(s, gpu_only=True) == report.gpu_month(s) / H / millions_per_hour
    no_load = copy.deepcopy(prod)
    no_load["plan"]["load"] = {}
    assert cost_of_plan(no_load).usd_per_million_output_tokens("expected") is None


def test_the_gpu_cost_is_the_sizing_price_times_the_plan_nodes(prod, report):
    plan = prod["plan"]
    assert [report.gpu[s].nodes for s in SCENARIOS] == [plan["azs"] * plan["nodes_per_az"][k]
                                                         for k in ("min", "desired", "max")]
    assert report.gpu_month("baseline") == Decimal(str(plan["cost"]["usd_per_hour_baseline"])) * H
    assert report.gpu_month("worst") == Decimal(str(plan["cost"]["usd_per_hour_max"])) * H


def test_a_plan_without_resources_falls_back_to_the_plan_node_counts(prod, report):
    derived = cost_of_plan({"stack": "prod", "region": "us-east-1", "plan": prod["plan"], "resources": []})
    for s in SCENARIOS:
        assert derived.gpu_month(s) == report.gpu_month(s)
        assert derived.gpu[s] == report.gpu[s]
    assert derived.notes[0].startswith("no node groups in the document: GPU node groups derived from plan.nodes_per_az")


def test_a_preview_costs_what_the_same_resources_cost_without_a_plan(prod):
    from_resources = cost_of_resources(prod["resources"], "us-east-1")
    from_preview = cost_of_preview(F.preview_document(prod["resources"]))
    assert (from_preview.stack, from_preview.region, from_preview.source) == ("prod", "us-east-1", "preview")
    assert from_preview.to_dict() == {**from_resources.to_dict(), "stack": "prod"}
    # Without the plan nothing says how big the weights are or how much is streamed.
    assert "declared load unknown: NLB priced at 1 NLCU" in from_preview.notes
    assert from_preview.component_month("s3-storage", "worst") == 0


def test_preview_steps_that_delete_are_not_costed_and_unknowns_do_not_crash(prod):
    digest = F.preview_document(prod["resources"])
    base = cost_of_preview(digest)
    gone = copy.deepcopy(next(s for s in digest["steps"] if s["newState"]["type"] == "aws:ec2/natGateway:NatGateway"))
    gone["op"] = "delete"
    gone["urn"] = gone["urn"] + "-old"
    digest["steps"].append(gone)
    cluster = next(s for s in digest["steps"] if s["newState"]["type"] == "aws:eks/cluster:Cluster")
    cluster["newState"]["inputs"]["vpcConfig"]["subnetIds"] = [UNKNOWN]
    assert cost_of_preview(digest).to_dict() == base.to_dict()


def test_integers_delivered_as_floats_are_counted(prod, report):
    floats = copy.deepcopy(prod)
    for r in floats["resources"]:
        if r["type"] == NODE_GROUP:
            r["inputs"]["scalingConfig"] = {k: float(v) for k, v in r["inputs"]["scalingConfig"].items()}
    assert cost_of_plan(floats).to_dict() == report.to_dict()


@pytest.mark.parametrize("doc", [[], {"neither": 1}, {"steps": "nope"}, {"plan": "x", "resources": []}])
def test_bad_documents_are_user_errors(doc):
    with pytest.raises(UserError):
        cost_of_plan(doc)


def test_a_document_without_a_region_names_what_is_missing(prod):
    digest = F.preview_document(prod["resources"])
    digest["config"] = {}
    digest["steps"] = [s for s in digest["steps"] if s["newState"]["type"] != "pulumi:providers:aws"]
    with pytest.raises(InputError, match="region"):
        cost_of_preview(digest)
    assert cost_of_preview(digest, assumptions={"region": "us-east-2"}).region == "us-east-2"


@pytest.mark.parametrize("assumptions,field", [
    ({"budget": 1}, "budget"),
    ({"usd_per_gpu_hour": -1}, "usd_per_gpu_hour"),
    ({"scale_events_per_month": "often"}, "scale_events_per_month"),
    ({"instance_usd_per_hour": 5}, "instance_usd_per_hour"),
])
def test_bad_cost_config_is_refused_naming_the_key(prod, assumptions, field):
    with pytest.raises(InputError, match=field):
        cost_of_plan(prod, assumptions=assumptions)


def test_to_dict_is_json_ready_with_money_as_strings(report):
    d = json.loads(json.dumps(report.to_dict()))
    assert d["scenarios"]["worst"]["usd_per_month"] == "724940.56" and d["hours_per_month"] == int(H)
    assert d["scenarios"]["worst"]["gpus"] == 144
    assert all(set(v) == set(SCENARIOS) for v in d["components_usd_per_month"].values())
