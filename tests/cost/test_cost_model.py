"""The cost model: scenarios, components, AZs, overrides, both input formats. Money in Decimal."""
import copy
from decimal import Decimal

import pytest

from infra.core.catalog import HOURS_PER_MONTH
from infra.core.catalog.prices import load_price_book
from infra.core.cost import SCENARIOS, cost_of_plan, cost_of_preview, cost_of_resources
from tests.cost import fixtures as F
from infra.core.cost.model import cents
from infra.core.errors import InputError, UserError

H = HOURS_PER_MONTH
BOOK = load_price_book()


def svc(key, region="us-east-1"):
    return BOOK.service(region, key).usd


def independent_month(doc, scenario):
    """The cost of a fixture document, recomputed line by line from the catalog (no infra.core.cost)."""
    region = doc["region"]
    total = Decimal(0)
    for r in doc["resources"]:
        t, i = r["type"], r["inputs"]
        if t == "aws:eks/nodeGroup:NodeGroup":
            sc = i["scalingConfig"]
            n = {"baseline": sc["minSize"], "expected": sc["desiredSize"], "worst": sc["maxSize"]}[scenario]
            wp = i.get("warmPoolConfig") or {}
            # EC2 Auto Scaling: the pool holds max(minSize, maxGroupPreparedCapacity - group size).
            pool = max(wp.get("minSize", 0), wp.get("maxGroupPreparedCapacity", sc["maxSize"]) - n) if wp else 0
            billed = pool if wp.get("poolState") == "RUNNING" else 0  # a STOPPED instance bills only EBS
            price = BOOK.instance(region, i["instanceTypes"][0]).usd
            disk = 200 if i["instanceTypes"][0].startswith("p5") else 50
            total += price * (n + billed) * H + svc("ebs_gp3_usd_per_gb_month", region) * disk * (n + pool)
        elif t == "aws:eks/cluster:Cluster":
            total += svc("eks_cluster_usd_per_hour", region) * H
        elif t == "aws:ec2/natGateway:NatGateway":
            total += svc("nat_gateway_usd_per_hour", region) * H
        elif t == "aws:ec2/eip:Eip":
            total += svc("public_ipv4_usd_per_hour", region) * H
        elif t == "aws:kms/key:Key":
            total += svc("kms_key_usd_per_month", region)
        elif t == "aws:s3/bucket:Bucket":
            gb = Decimal("8.46") * 8  # weights_gib_per_gpu x tensor_parallel
            total += svc("s3_standard_usd_per_gb_month", region) * gb
        elif t == "kubernetes:core/v1:Service":
            gb_per_hour = Decimal(5000) * 3600 * 256 / Decimal(10**9)  # 4.608 NLCU
            lcu = gb_per_hour * (Decimal(15) / Decimal(9) if scenario == "worst" else 1)
            total += (svc("nlb_usd_per_hour", region) + svc("nlb_lcu_usd_per_hour", region) * lcu) * H
            total += svc("public_ipv4_usd_per_hour", region) * 3 * H
    return total


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_prod_shape_costs_what_an_independent_arithmetic_says_to_the_cent(scenario):
    doc = F.plan_document()
    report = cost_of_plan(doc)
    assert cents(report.total_month(scenario)) == cents(independent_month(doc, scenario))


def test_gpu_nodes_and_warm_pool_by_scenario():
    report = cost_of_plan(F.plan_document())
    node = Decimal("55.04") * H
    # Plan: 3 AZs x 3/3/5 nodes, one warm spare included, all in service; the STOPPED warm pool
    # (burst headroom) bills no instance hours.
    assert report.component_month("gpu-nodes", "baseline") == 9 * node
    assert report.component_month("gpu-nodes", "worst") == 15 * node
    assert all(report.component_month("gpu-warm-pool", s) == 0 for s in SCENARIOS)
    assert [report.gpu[s].nodes for s in SCENARIOS] == [9, 9, 15]
    assert [report.gpu[s].gpus for s in SCENARIOS] == [72, 72, 120]
    assert all(isinstance(i.month(s), Decimal) for i in report.items for s in SCENARIOS)


def test_running_warm_pool_is_billed_in_every_scenario_and_stopped_keeps_its_ebs():
    doc = F.plan_document()
    for r in doc["resources"]:
        if "warmPoolConfig" in r["inputs"]:
            r["inputs"]["warmPoolConfig"]["poolState"] = "RUNNING"
    running = cost_of_plan(doc)
    node = Decimal("55.04") * H
    # At baseline each group runs 3 of max 5: the pool prepares the 2 missing, in 3 AZs.
    assert running.component_month("gpu-warm-pool", "baseline") == 6 * node
    # At the top of a burst the pool is back at its floor: the one spare per AZ.
    assert running.component_month("gpu-warm-pool", "worst") == 3 * node
    stopped = cost_of_plan(F.plan_document())
    # Stopped instances keep their EBS volumes: the same storage as when running.
    assert stopped.component_month("node-storage", "baseline") == running.component_month("node-storage", "baseline")


def test_per_az_and_per_component_both_add_up_to_the_total():
    report = cost_of_plan(F.plan_document())
    for s in SCENARIOS:
        assert sum(report.by_az(s).values()) == report.total_month(s)
        assert sum(report.by_component(s).values()) == report.total_month(s)
    assert {"us-east-1a", "us-east-1b", "us-east-1c", "regional"} == set(report.azs())
    assert report.by_az("baseline")["us-east-1a"] > 100_000


def test_usd_per_million_output_tokens_uses_the_declared_load():
    report = cost_of_plan(F.plan_document())
    per_hour = report.total_month("expected") / H
    assert report.usd_per_million_output_tokens("expected") == per_hour / Decimal("18")  # 5,000 tok/s = 18M/h
    gpu_only = report.usd_per_million_output_tokens("baseline", gpu_only=True)
    assert cents(gpu_only) == cents(9 * Decimal("55.04") / 18)
    no_load = copy.deepcopy(F.plan_document())
    no_load["plan"]["load"] = {}
    assert cost_of_plan(no_load).usd_per_million_output_tokens("expected") is None


def test_hydration_goes_through_nat_without_an_s3_gateway_endpoint():
    plan = F.fleet_plan()
    doc = F.plan_document(plan, F.stack_resources(plan, s3_endpoint=False))
    report = cost_of_plan(doc, assumptions={"scale_events_per_month": 10})
    gb = Decimal("8.46") * 8 * 2 * 10  # weights x (max 4 - min 2) nodes x 10 scale-ups, per AZ
    assert report.component_month("hydration-transfer", "worst") == 3 * gb * svc("nat_gateway_usd_per_gb")
    assert report.component_month("hydration-transfer", "expected") == 0
    assert any("NAT" in n for n in report.notes)
    with_endpoint = cost_of_plan(F.plan_document())
    assert with_endpoint.component_month("hydration-transfer", "worst") == 0


def test_a_capacity_block_price_in_the_plan_wins_over_the_catalog():
    plan = F.fleet_plan(cost__usd_per_gpu_hour=4.916, cost__usd_per_node_hour=39.328,
                        cost__price_source="fleet.price_usd_per_gpu_hour (override)")
    report = cost_of_plan(F.plan_document(plan))
    assert report.component_month("gpu-nodes", "baseline") == 9 * Decimal("39.328") * H
    assert any("wins over the catalog" in n for n in report.notes)
    gpu_items = [i for i in report.items if i.component == "gpu-nodes"]
    assert all(i.price_source == "fleet.price_usd_per_gpu_hour (override)" for i in gpu_items)


@pytest.mark.parametrize("override,price", [
    ({"usd_per_gpu_hour": "3.00"}, Decimal("24.00")),
    ({"instance_usd_per_hour": {"p5.48xlarge": "40"}}, Decimal("40")),
])
def test_cost_config_overrides_win_over_plan_and_catalog(override, price):
    report = cost_of_plan(F.plan_document(), assumptions=override)
    assert report.component_month("gpu-nodes", "expected") == 9 * price * H


def test_preview_digest_and_plan_document_cost_the_same_resources_the_same():
    plan = F.fleet_plan()
    resources = F.stack_resources(plan)
    from_plan = cost_of_resources(resources, "us-east-1")  # no plan: same knowledge as a preview
    from_preview = cost_of_preview(F.preview_document(resources), assumptions={"weights_gb": 0})
    assert from_preview.stack == "prod" and from_preview.region == "us-east-1" and from_preview.source == "preview"
    for s in SCENARIOS:
        assert from_preview.total_month(s) == from_plan.total_month(s)


def test_preview_steps_that_delete_are_not_costed_and_unknowns_do_not_crash():
    resources = F.stack_resources()
    digest = F.preview_document(resources)
    gone = copy.deepcopy(digest["steps"][-1])
    gone["op"] = "delete"
    gone["urn"] = gone["urn"].replace("ingress-gateway", "old-gateway")
    digest["steps"].append(gone)
    digest["steps"][2]["newState"]["inputs"]["vpcConfig"]["subnetIds"] = ["04da6b54-80e4-46f7-96ec-b56ff0331ba9"]
    report = cost_of_preview(digest)
    assert sum(1 for i in report.items if i.component == "load-balancer") == 1


def test_integers_delivered_as_floats_are_counted():
    doc = F.plan_document()
    for r in doc["resources"]:
        sc = r["inputs"].get("scalingConfig")
        if sc:
            r["inputs"]["scalingConfig"] = {k: float(v) for k, v in sc.items()}
    assert cost_of_plan(doc).total_month("worst") == cost_of_plan(F.plan_document()).total_month("worst")


def test_an_unpriced_gpu_type_is_reported_not_silently_zero():
    plan = F.fleet_plan(region="eu-west-1", instance_type="p5.48xlarge", cost={})
    doc = F.plan_document(plan, F.stack_resources(plan, region="eu-west-1"), region="eu-west-1")
    report = cost_of_plan(doc)
    assert sum("p5.48xlarge in eu-west-1" in u for u in report.unpriced) == 3
    assert report.component_month("gpu-nodes", "worst") == 0
    assert any(n.startswith("NOT PRICED") for n in report.notes)


def test_plan_without_resources_falls_back_to_the_plan_node_counts():
    report = cost_of_plan({"stack": "prod", "region": "us-east-1", "plan": F.fleet_plan(), "resources": []})
    assert report.component_month("gpu-nodes", "worst") == 15 * Decimal("55.04") * H
    assert report.gpu["baseline"].nodes == 9  # nodes_per_az.min counts the spare
    assert report.gpu_month("worst") == cost_of_plan(F.plan_document()).gpu_month("worst")


@pytest.mark.parametrize("doc", [
    [],
    {"neither": 1},
    {"steps": "nope"},
    {"plan": "x", "resources": []},
])
def test_bad_documents_are_user_errors(doc):
    with pytest.raises(UserError):
        cost_of_plan(doc)


def test_a_document_without_a_region_names_what_is_missing():
    digest = F.preview_document(F.stack_resources())
    digest["config"] = {}
    digest["steps"] = [s for s in digest["steps"] if s["newState"]["type"] != "pulumi:providers:aws"]
    with pytest.raises(InputError, match="region"):
        cost_of_preview(digest)
    assert cost_of_preview(digest, assumptions={"region": "us-east-2"}).region == "us-east-2"


def test_unknown_cost_config_keys_are_refused():
    with pytest.raises(InputError, match="budget"):
        cost_of_plan(F.plan_document(), assumptions={"budget": 1})


def test_to_dict_is_json_ready_with_money_as_strings():
    import json

    d = cost_of_plan(F.plan_document()).to_dict()
    json.dumps(d)
    assert d["scenarios"]["baseline"]["usd_per_month"] == str(cents(cost_of_plan(F.plan_document()).total_month("baseline")))
    assert d["scenarios"]["worst"]["gpus"] == 120
    assert set(d["components"]["gpu-nodes"]) == set(SCENARIOS)
    assert d["hours_per_month"] == "730"
