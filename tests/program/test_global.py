"""The global project (global/Pulumi.yaml): one hostname over every region, health-checked records,
latency or weighted, under mocks with each region's outputs from its own offline plan; and what the
resolver refuses (names, sizing against routing)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli import main
from infra.core.config import LISTENER_PORT
from infra.core.deploy import OUT_GATEWAY_DNS_NAME, OUT_GATEWAY_ZONE_ID
from infra.core.errors import EXIT_USAGE, UserError
from infra.core.global_stack import ROUTE53_REGION, resolve_global
from infra.core.graph import ROUTE53_HEALTH_CHECK, ROUTE53_RECORD, graph_of
from infra.core.labels import GLOBAL_PROJECT, WORKLOADS_PROJECT
from infra.core.paths import REPO_ROOT
from infra.core.resolve import resolve
from infra.program.global_endpoint import global_endpoint
from infra.program.offline import plan_global, plan_stack, run_global
from infra.program.serving import ingress
from infra.program.serving.spec import ServingSpec
from infra.program.serving.vllm import HEALTH_PATH
from policies import check_plan, config_for_global
from tests.golden import check_golden

REGIONS = ("prod-us-west-2", "prod")
GOLDEN = Path(__file__).parent / "golden" / "global_prod_plan.txt"


@pytest.fixture(scope="module")
def region_runs():
    """Each region stack's own offline plan: what answers the global stack's references."""
    return {s: plan_stack(s) for s in REGIONS}


def project_with(tmp_path: Path, change) -> Path:
    """A copy of the repository's stack files with stacks/prod.yaml changed by `change(doc)`."""
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.prod-us-west-2.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "policies", tmp_path / "policies", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "stacks").mkdir()
    doc = yaml.safe_load((REPO_ROOT / "stacks" / "prod.yaml").read_text())
    change(doc)
    (tmp_path / "stacks" / "prod.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path


def set_routing(routing: str):
    def change(doc: dict[str, Any]) -> None:
        doc["global"]["routing"] = routing
        for wave in doc["waves"]:
            wave.pop("traffic", None)  # latency records take no canary weight

    return change


def composed(g, region_runs):
    """The global composition on a stack resolved from a changed copy (the program file resolves
    the repository's own stacks/prod.yaml)."""
    return run_global(g, region_runs, body=lambda: global_endpoint(g))


def by_name(run, typ: str) -> dict[str, Any]:
    return {n.name: n for n in run.of_type(typ)}


@pytest.mark.parametrize("routing", ["weighted", "latency"])
def test_one_health_checked_record_per_region_latency_or_weighted(routing, region_runs, tmp_path):
    """What proves it: the offline plan has one record per region under the hostname, each with a
    health check on /health, latency-based or weighted as configured."""
    g = resolve_global("prod", project_with(tmp_path, set_routing(routing)))
    run = composed(g, region_runs)
    checks, records = by_name(run, ROUTE53_HEALTH_CHECK), by_name(run, ROUTE53_RECORD)
    assert sorted(n for n in records if n.startswith("global-")) == sorted(f"global-{s}" for s in REGIONS)
    for r in g.regions:
        outputs = region_runs[r.stack].project(WORKLOADS_PROJECT).outputs
        check, record = checks[f"health-{r.stack}"], records[f"global-{r.stack}"].inputs
        assert check.inputs["type"] == "HTTPS" and check.inputs["resourcePath"] == HEALTH_PATH == "/health"
        assert check.inputs["fqdn"] == r.config.regional_hostname and check.inputs["port"] == LISTENER_PORT
        assert (check.inputs["requestInterval"], check.inputs["failureThreshold"]) == (30, 3)
        assert check.inputs["enableSni"] is True
        assert record["healthCheckId"] == check.id and record["name"] == "llm.example.com"
        assert record["setIdentifier"] == r.stack and record["type"] == "A"
        assert record["aliases"] == [{"evaluateTargetHealth": True, "name": outputs[OUT_GATEWAY_DNS_NAME],
                                      "zoneId": outputs[OUT_GATEWAY_ZONE_ID]}]
        if routing == "weighted":
            assert record["weightedRoutingPolicies"] == [{"weight": int(r.share.traffic_share_pct)}]
            assert "latencyRoutingPolicies" not in record
        else:
            assert record["latencyRoutingPolicies"] == [{"region": r.region}]
            assert "weightedRoutingPolicies" not in record
        # What the health check resolves: the regional hostname, aliased to the same NLB.
        assert records[f"regional-{r.stack}"].inputs["name"] == r.config.regional_hostname
        assert records[f"regional-{r.stack}"].inputs["aliases"] == record["aliases"]
    assert run.outputs["routing"] == routing and run.outputs["hostname"] == "llm.example.com"


def test_a_traffic_step_s_weights_reach_the_records_and_a_drain_under_latency_leaves_dns(region_runs, tmp_path):
    weighted = run_global(resolve_global("prod", entries={"llm-fleet-global:weights": {"prod-us-west-2": 10, "prod": 90}}),
                          region_runs)
    weights = {n: r.inputs["weightedRoutingPolicies"][0]["weight"] for n, r in by_name(weighted, ROUTE53_RECORD).items()
               if n.startswith("global-")}
    assert weights == {"global-prod-us-west-2": 10, "global-prod": 90} and weighted.outputs["weights"]["prod"] == 90
    latency = resolve_global("prod", project_with(tmp_path, set_routing("latency")),
                             entries={"llm-fleet-global:weights": {"prod-us-west-2": 0}})
    run = composed(latency, region_runs)
    assert "global-prod-us-west-2" not in by_name(run, ROUTE53_RECORD)  # out of DNS
    assert "health-prod-us-west-2" in by_name(run, ROUTE53_HEALTH_CHECK)  # still watched
    assert run.outputs["in_dns"] == ["prod"]


def test_every_region_serves_the_global_hostname_so_its_certificate_covers_it():
    """TLS, from the config: the global hostname is every region's `ingress.hostname`; each region's
    gateway listens for it and for the region's own name, the two names its certificate covers
    (docs/program.md, DNS and TLS), and its /health answers on both."""
    g = resolve_global("prod")
    assert g.hostname == "llm.example.com"
    for r in g.regions:
        resolved = resolve(r.stack)
        spec = ServingSpec(plan=resolved.plan, config=resolved.config, weights_bucket="b")
        listeners = {listener["hostname"] for listener in ingress.gateway(spec)["spec"]["listeners"]}
        assert listeners == {g.hostname, r.config.regional_hostname}
        assert set(ingress.health_route(spec)["spec"]["hostnames"]) == listeners
        assert r.config.ingress.tls_certificate_arn.split(":")[3] == r.region  # a certificate of its region


@pytest.mark.parametrize("change,message", [
    (lambda d: d["global"].update(zone_name="example.org"),
     "ingress.hostname: 'llm.example.com' (Pulumi.prod-us-west-2.yaml) is not allowed; it must lie in global.zone_name"),
    (lambda d: [d.pop("global")] + [w.pop("traffic") for w in d["waves"]], "stacks/prod.yaml has no global section"),
    (lambda d: d["regions"][0].update(absorb_region_failure=False),
     "prod-us-west-2 would serve 100% of the environment's traffic (weighted routing: weight 40 of 40 in DNS), "
     "but it is sized for 40%"),
])
def test_the_resolver_refuses_records_the_regions_cannot_carry(change, message, tmp_path):
    with pytest.raises(UserError) as exc:
        resolve_global("prod", project_with(tmp_path, change))
    assert message in str(exc.value)


def test_regions_that_disagree_on_the_hostname_are_refused(tmp_path):
    project = project_with(tmp_path, lambda d: None)
    path = project / "Pulumi.prod-us-west-2.yaml"
    path.write_text(path.read_text().replace("hostname: llm.example.com", "hostname: api.example.com"))
    with pytest.raises(UserError, match="Pulumi.prod.yaml serves 'llm.example.com' but|serves 'api.example.com' but"):
        resolve_global("prod", project)


def test_an_unknown_environment_names_the_ones_there_are():
    with pytest.raises(UserError, match=r"--stack: 'prod-us-west-2' .*\(prod\)"):
        resolve_global("prod-us-west-2")


def test_the_global_plan_passes_its_pack_and_a_record_without_a_health_check_fails_it(region_runs):
    doc = run_global(resolve_global("prod"), region_runs).to_json()
    pack = config_for_global("prod")
    assert check_plan(doc, pack).exit_code == 0
    for r in doc["resources"]:
        if r["type"] == ROUTE53_RECORD and r["name"] == "global-prod":
            del r["inputs"]["healthCheckId"]
    check = check_plan(doc, pack)
    assert check.exit_code == 3
    [v] = check.violations
    assert v.policy_name == "route53-record-health-check" and "llm.example.com (prod) must have a health check" in v.message


def test_the_global_stack_costs_its_health_checks_and_its_alias_queries_are_free(region_runs):
    report = check_plan(run_global(resolve_global("prod"), region_runs).to_json(), config_for_global("prod")).report
    by_component = {c: sum(i.usd_per_month[2] for i in report.items if i.component == c)
                    for c in {i.component for i in report.items}}
    assert {c: str(v) for c, v in by_component.items()} == {"dns-health-checks": "3.00", "dns-queries": "0"}
    assert report.stack == f"{GLOBAL_PROJECT}/prod" and report.region == ROUTE53_REGION


def test_plan_project_global_json_lists_the_regions_and_their_records(tmp_path, capsys):
    out = tmp_path / "global.json"
    assert main(["plan", "--stack", "prod", "--project", "global", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert (doc["stack"], doc["project"], doc["routing"], doc["hostname"]) == ("prod", GLOBAL_PROJECT, "weighted",
                                                                            "llm.example.com")
    assert [(r["stack"], r["weight"], r["sized_for_pct"]) for r in doc["regions"]] == [("prod-us-west-2", 40, 100),
                                                                                     ("prod", 60, 100)]
    graph = graph_of(doc)
    assert graph.projects == (GLOBAL_PROJECT,) and len(graph.of_type(ROUTE53_HEALTH_CHECK)) == 2
    assert doc["policy"]["passed"] is True and doc["cost"]["scenarios"]["worst"]["usd_per_month"] == "3.00"
    text = capsys.readouterr().out
    assert "Endpoint: llm.example.com in zone example.com, weighted routing" in text
    check_golden(GOLDEN, text.replace(str(out), "GLOBAL.json"))  # UPDATE_GOLDEN=1 regenerates it


def test_a_share_beyond_what_a_region_is_sized_for_exits_2_naming_both_numbers(tmp_path, capsys):
    """What proves it: a change to stacks/prod.yaml that routes a region more than its sizing
    share fails `plan --project global` and the rollout (dry run too) with exit 2."""
    project = project_with(tmp_path, lambda d: d["regions"][0].update(absorb_region_failure=False))
    out = tmp_path / "failed.json"
    assert main(["plan", "--stack", "prod", "--project", "global", "--project-dir", str(project),
                 "--json", str(out)]) == EXIT_USAGE
    failed = json.loads(out.read_text())
    assert failed["project"] == GLOBAL_PROJECT and failed["exit_code"] == EXIT_USAGE
    assert "would serve 100% of the environment's traffic" in failed["error"] and "sized for 40%" in failed["error"]
    code = main(["rollout", str(project / "stacks" / "prod.yaml"), "--dry-run", "--project-dir", str(project),
                 "--state-dir", str(tmp_path / "state")])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "would serve 100%" in err and "sized for 40%" in err


def test_the_region_plans_answer_the_references_with_what_the_workloads_export(region_runs):
    run = plan_global("prod")
    refs = {n.inputs["name"] for n in run.of_type("pulumi:pulumi:StackReference")}
    assert refs == {f"organization/{WORKLOADS_PROJECT}/{s}" for s in REGIONS}
    for s in REGIONS:
        outputs = region_runs[s].project(WORKLOADS_PROJECT).outputs
        assert outputs[OUT_GATEWAY_DNS_NAME].endswith(f".elb.{outputs['region']}.amazonaws.com")
        assert outputs["health_path"] == HEALTH_PATH and outputs[OUT_GATEWAY_ZONE_ID].startswith("Z")


def test_the_rollouts_global_workspace_runs_the_global_project_with_its_own_pack_config(tmp_path):
    from infra.cli import adapters

    ws = adapters.global_workspace(REPO_ROOT)
    assert ws.work_dir == REPO_ROOT / "global" and ws.repo_dir == REPO_ROOT and ws.up_policy_packs == ("policies",)
    assert ws.pack_config_for("prod") == str(REPO_ROOT / "policies" / "global" / "config.prod.json")
    stale = project_with(tmp_path, lambda d: d["global"].update(budget_monthly_usd=5))
    with pytest.raises(UserError, match=r"policies/global/config.prod.json is out of date with stacks/prod.yaml "
                                        r"\(differs in gpu-spend-cap, gpu-spend-cap-stack\)"):
        adapters.global_workspace(stale).pack_config_for("prod")


def test_a_region_closed_to_the_internet_is_warned_its_health_checkers_must_get_in(tmp_path):
    project = project_with(tmp_path, lambda d: None)
    path = project / "Pulumi.prod-us-west-2.yaml"
    path.write_text(path.read_text().replace("allowed_source_cidrs: [0.0.0.0/0]", "allowed_source_cidrs: [203.0.113.0/24]"))
    [warning] = resolve_global("prod", project).warnings
    assert "Pulumi.prod-us-west-2.yaml" in warning and "ROUTE53_HEALTHCHECKS" in warning
    assert resolve_global("prod").warnings == []


@pytest.mark.parametrize("routing", ["weighted", "latency"])
def test_the_records_and_checks_are_what_route53_accepts(routing, region_runs, tmp_path):
    """Mocks accept anything; Route 53 does not. From the Route 53 API reference
    (ChangeResourceRecordSets, ResourceRecordSet; CreateHealthCheck, HealthCheckConfig): a record
    with a weighted or latency policy needs a SetIdentifier unique for its name and type; an alias
    record takes no TTL and no ResourceRecords; Weight is an integer 0-255; RequestInterval is 10
    or 30; FailureThreshold 1-10; an HTTPS check names its FullyQualifiedDomainName (or an IP), its
    port and its ResourcePath, which starts with '/'."""
    g = resolve_global("prod", project_with(tmp_path, set_routing(routing)))
    run = composed(g, region_runs)
    global_records = [n.inputs for n in run.of_type(ROUTE53_RECORD) if n.name.startswith("global-")]
    identifiers = [(r["name"], r["type"], r["setIdentifier"]) for r in global_records]
    assert len(set(identifiers)) == len(identifiers) == len(g.regions)
    for record in (n.inputs for n in run.of_type(ROUTE53_RECORD)):
        assert "ttl" not in record and "records" not in record and len(record["aliases"]) == 1
        for policy in record.get("weightedRoutingPolicies", []):
            assert isinstance(policy["weight"], int) and 0 <= policy["weight"] <= 255
    for check in (n.inputs for n in run.of_type(ROUTE53_HEALTH_CHECK)):
        assert check["requestInterval"] in (10, 30) and 1 <= check["failureThreshold"] <= 10
        assert check["fqdn"] and 1 <= check["port"] <= 65535 and check["resourcePath"].startswith("/")
