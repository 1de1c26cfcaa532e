"""The prod stack's real offline plan (the Pulumi program under mocks): its cost to the cent,
what doubling the users does, and the spend cap. Skipped, with the reason, if the program
cannot run here (it belongs to another module)."""
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from infra.core.catalog import HOURS_PER_MONTH as H
from infra.core.catalog import load_catalog
from infra.core.catalog.prices import load_price_book
from infra.core.cost import SCENARIOS, cost_of_plan, diff_reports, render_diff
from infra.core.cost.model import cents
from policies import evaluate, has_mandatory, load_pack_config

ROOT = Path(__file__).resolve().parents[2]
BOOK = load_price_book()
CATALOG = load_catalog()


def offline_plan(stack="prod", project_dir=ROOT):
    from infra.program.offline import plan_stack

    return json.loads(json.dumps(plan_stack(stack, Path(project_dir)).to_json(), default=str))


@pytest.fixture(scope="module")
def prod():
    return offline_plan()


def independent_month(doc, scenario):
    """Recompute from the catalog, resource by resource, with nothing from infra.core.cost."""
    region = doc["region"]

    def svc(key):
        return BOOK.service(region, key).usd

    resources = doc["resources"]
    templates = {r["parent"]: r for r in resources if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate"}
    total = Decimal(0)
    for r in resources:
        t, i = r["type"], r["inputs"]
        if t == "aws:eks/nodeGroup:NodeGroup":
            sc = i["scalingConfig"]
            n = int({"baseline": sc["minSize"], "expected": sc["desiredSize"], "worst": sc["maxSize"]}[scenario])
            wp = i.get("warmPoolConfig") or {}
            pool = int(wp.get("minSize", 0))
            if wp:  # the program prepares the burst headroom: up to maxSize, never below the spares
                assert int(wp["maxGroupPreparedCapacity"]) == int(sc["maxSize"])
                pool = max(pool, int(sc["maxSize"]) - n)
            billed_pool = pool if wp.get("poolState") == "RUNNING" else 0
            itype = i["instanceTypes"][0]
            price = CATALOG.instance_price(region, itype).usd_per_hour if itype in CATALOG.instances \
                else BOOK.instance(region, itype).usd
            disk = sum(int(b["ebs"]["volumeSize"]) for b in templates[r["parent"]]["inputs"]["blockDeviceMappings"])
            total += price * (n + billed_pool) * H + svc("ebs_gp3_usd_per_gb_month") * disk * (n + pool)
        elif t == "aws:eks/cluster:Cluster":
            total += svc("eks_cluster_usd_per_hour") * H
        elif t == "aws:ec2/natGateway:NatGateway":
            total += svc("nat_gateway_usd_per_hour") * H
        elif t == "aws:ec2/eip:Eip":
            total += svc("public_ipv4_usd_per_hour") * H
        elif t == "aws:kms/key:Key":
            total += svc("kms_key_usd_per_month")
        elif t == "aws:s3/bucket:Bucket":
            gb = Decimal(str(doc["plan"]["weights_gib_per_gpu"])) * doc["plan"]["tensor_parallel"]
            total += svc("s3_standard_usd_per_gb_month") * gb
        elif t == "kubernetes:core/v1:Service" and (i.get("spec") or {}).get("type") == "LoadBalancer":
            pytest.fail("the graph now has its own NLB Service: extend the independent arithmetic")
        elif t == "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy":
            # Envoy Gateway's NLB: hourly + NLCUs (streamed bytes at 256 B/token, 1 GB per NLCU-hour,
            # scaled with the GPU fleet at the burst) + one public IPv4 per AZ.
            plan = doc["plan"]
            nlcu = Decimal(str(plan["load"]["output_tokens_per_s"])) * 3600 * 256 / Decimal(10**9)
            if scenario == "worst":
                nlcu *= Decimal(plan["nodes_per_az"]["max"]) / Decimal(plan["nodes_per_az"]["desired"])
            total += (svc("nlb_usd_per_hour") + svc("nlb_lcu_usd_per_hour") * nlcu) * H
            total += svc("public_ipv4_usd_per_hour") * plan["azs"] * H
    assert any(r["type"] == "aws:ec2/vpcEndpoint:VpcEndpoint" for r in resources)  # hydration is free
    return total


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_prod_plan_cost_equals_an_independent_arithmetic_from_the_catalog_to_the_cent(prod, scenario):
    report = cost_of_plan(prod)
    assert report.unpriced == ()
    assert cents(report.total_month(scenario)) == cents(independent_month(prod, scenario))


def test_prod_gpu_cost_matches_the_sizing_price(prod):
    report = cost_of_plan(prod)
    plan = prod["plan"]
    node = Decimal(str(plan["cost"]["usd_per_node_hour"]))
    expected_nodes = plan["azs"] * plan["nodes_per_az"]["desired"]  # warm spares included
    assert report.gpu["expected"].nodes == expected_nodes
    assert report.gpu_month("expected") == node * expected_nodes * H
    assert report.gpu_month("baseline") == Decimal(str(plan["cost"]["usd_per_hour_baseline"])) * H
    assert report.gpu_month("worst") == Decimal(str(plan["cost"]["usd_per_hour_max"])) * H


def project_with(tmp_path, edit):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    edit(doc["config"])
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_doubling_the_users_of_prod_shows_more_gpu_nodes_and_dollars(prod, tmp_path):
    def double(cfg):
        cfg["llm-fleet:workload"]["concurrent_requests"] *= 2
        cfg["llm-fleet:workload"]["output_tokens_per_s"] *= 2

    head = offline_plan("prod", project_with(tmp_path, double))
    diff = diff_reports({"prod": cost_of_plan(prod)}, {"prod": cost_of_plan(head)})
    d = diff.stacks[0]
    assert d.gpus("expected", "after")[0] > d.gpus("expected", "before")[0]
    assert d.delta("expected") > 0 and d.delta("worst") > 0
    text = render_diff(diff, "markdown")
    assert text.index("GPU changes") < text.index("| stack |")


def test_a_budget_below_the_worst_case_trips_gpu_spend_cap(prod):
    worst = cost_of_plan(prod).total_month("worst")
    cfg = load_pack_config(ROOT / "policies" / "config.prod.json")
    for section in ("gpu-spend-cap", "gpu-spend-cap-stack"):
        cfg[section]["monthly_budget_usd"] = float(worst) - 1
    violations = evaluate(prod["resources"], cfg, plan=prod["plan"], region=prod["region"])
    assert has_mandatory(violations) and "gpu-spend-cap-stack" in {v.policy_name for v in violations}
    cfg["gpu-spend-cap"]["monthly_budget_usd"] = cfg["gpu-spend-cap-stack"]["monthly_budget_usd"] = float(worst) + 1
    assert not [v for v in evaluate(prod["resources"], cfg, plan=prod["plan"]) if v.policy_name.startswith("gpu-spend")]


def test_plan_exits_3_naming_gpu_spend_cap_when_the_budget_is_below_the_worst_case(tmp_path, capsys):
    from infra.cli import main

    def tiny_budget(cfg):
        cfg["llm-fleet:budget"]["monthly_usd"] = 1000

    project = project_with(tmp_path, tiny_budget)
    out_json = tmp_path / "out.json"
    code = main(["plan", "--stack", "prod", "--project-dir", str(project), "--json", str(out_json)])
    out = capsys.readouterr()
    assert code == 3 and "gpu-spend-cap" in out.out + out.err
    # The JSON is written even on a violation: the PR workflow diffs it.
    doc = json.loads(out_json.read_text())
    assert doc["policy"]["passed"] is False and doc["policy"]["mandatory"] >= 1
    assert any(v["policy"].startswith("gpu-spend-cap") for v in doc["policy"]["violations"])


def test_prod_plan_passes_its_policies_within_budget(tmp_path, capsys):
    from infra.cli import main

    out_json = tmp_path / "prod.json"
    assert main(["plan", "--stack", "prod", "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["policy"]["passed"] is True and doc["policy"]["violations"] == []
    assert {"cost", "policy", "plan", "resources"} <= set(doc)
    assert "policy: no violations" in capsys.readouterr().out


def test_readme_quotes_the_prod_cost(prod):
    from infra.core.cost.model import cents

    report = cost_of_plan(prod)
    readme = (ROOT / "README.md").read_text()
    assert f"${cents(report.total_month('expected')):,} a\nmonth expected" in readme or \
        f"${cents(report.total_month('expected')):,} a month expected" in readme
    assert f"${cents(report.total_month('worst')):,} worst case" in readme
