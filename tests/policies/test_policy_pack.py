"""The pack as a whole: importable without the server, offline evaluation, config, docs."""
import ast
import copy
from decimal import Decimal
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from infra.core.graph import UNKNOWN, graph_of
from policies import MIRRORS, POLICIES, config_for_stack, evaluate, has_mandatory, pack_config, render_violations, verdict_dict
from policies.offline import policy_config
from tests.cost import fixtures as F

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policies"


@pytest.fixture(scope="module")
def prod():
    return F.offline_plan()


def with_budget(budget, **sections):
    """prod's pack config with another budget (both spend caps) and sections replaced."""
    cfg = config_for_stack("prod")
    for section in ("gpu-spend-cap", "gpu-spend-cap-stack"):
        cfg[section]["monthly_budget_usd"] = budget
    return {**cfg, **sections}


def test_names_are_unique_kebab_case_and_the_pack_loads_without_a_server():
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names))
    assert all(n == n.lower() and " " not in n and "_" not in n for n in names)
    assert {"gpu-spend-cap", "gpu-spend-cap-stack", "gpu-instance-allowlist", "gpu-node-group-max-size",
            "required-tags"} <= set(names)
    assert all(p.enforcement_level.value == "mandatory" for p in POLICIES)


def test_main_builds_the_pack_from_the_importable_list_and_nothing_else():
    tree = ast.parse((PACK / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    kwargs = {k.arg: k.value for k in calls[0].keywords}
    assert getattr(kwargs["policies"], "id", "") == "POLICIES"
    assert "from policies import POLICIES" in (PACK / "__main__.py").read_text()


def test_pulumi_policy_yaml_and_requirements():
    meta = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python" and meta["description"] and meta["version"]
    reqs = (PACK / "requirements.txt").read_text()
    assert "pulumi-policy" in reqs and "PyYAML" in reqs


def _worst(prod) -> Decimal:
    from policies import check_plan

    return check_plan(prod, with_budget(10**9)).report.total_month("worst")


def test_the_prod_plan_breaks_only_the_stack_spend_cap_under_its_own_pack_config(prod):
    """The verified prod plan carries its burst at baseline, and its worst case is above the
    declared budget (README, Seed 004): the stack cap says so; no other rule fires."""
    violations = evaluate(graph_of(prod), config_for_stack("prod"))
    assert [(v.policy_name, v.enforcement) for v in violations] == [("gpu-spend-cap-stack", "mandatory")]
    # The same resources as plain dicts, with the plan and region given apart, read the same.
    assert evaluate(prod["resources"], config_for_stack("prod"), plan=prod["plan"], region=prod["region"]) == violations
    assert evaluate(graph_of(prod), with_budget(int(_worst(prod)) + 1)) == []


def test_a_budget_below_the_worst_case_is_a_mandatory_gpu_spend_cap_violation(prod):
    # Worst case of one GPU node group: max nodes x $55.04 x 730 h (prod: $241k, 6 nodes per AZ).
    group_worst = prod["plan"]["nodes_per_az"]["max"] * 55.04 * 730
    violations = evaluate(graph_of(prod), with_budget(int(group_worst) + 1))
    assert has_mandatory(violations)
    assert {v.policy_name for v in violations} == {"gpu-spend-cap-stack"}
    violations = evaluate(graph_of(prod), with_budget(int(group_worst) - 1))
    assert {v.policy_name for v in violations} == {"gpu-spend-cap", "gpu-spend-cap-stack"}
    text = render_violations(violations)
    assert "MANDATORY gpu-spend-cap " in text and "gpu-us-east-1a" in text
    verdict = verdict_dict(violations, monthly_budget_usd=int(group_worst) - 1)
    assert verdict["passed"] is False and verdict["mandatory"] == 4
    assert verdict["monthly_budget_usd"] == f"{int(group_worst) - 1}.00"
    json.dumps(verdict)


def test_enforcement_levels_come_from_the_config(prod):
    low = with_budget(200000, **{"gpu-spend-cap-stack": "disabled"})
    low["gpu-spend-cap"]["enforcementLevel"] = "advisory"
    violations = evaluate(graph_of(prod), low)
    assert {(v.policy_name, v.enforcement) for v in violations} == {("gpu-spend-cap", "advisory")}
    assert not has_mandatory(violations)
    assert evaluate(graph_of(prod), {**with_budget(1), "all": "disabled"}) == []


def test_offline_conveniences_region_from_the_document_and_stack_config_fallback(prod):
    only_resource_section = {"gpu-spend-cap": {"monthly_budget_usd": 200000}}
    violations = evaluate(graph_of(prod), only_resource_section)  # region: the graph's; stack cap: the group section
    assert {v.policy_name for v in violations} == {"gpu-spend-cap", "gpu-spend-cap-stack"}
    assert f"${_worst(prod):,.2f}/month" in next(v.message for v in violations if v.policy_name == "gpu-spend-cap-stack")
    cfg, level = policy_config(next(p for p in POLICIES if p.name == "gpu-spend-cap-stack"), only_resource_section)
    assert cfg["monthly_budget_usd"] == 200000 and cfg["scale_events_per_month"] == 30 and level == "mandatory"


def test_unknown_values_of_a_preview_do_not_raise_violations(prod):
    resources = copy.deepcopy(prod["resources"])
    touched = set()
    for r in resources:
        if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate":
            r["inputs"]["metadataOptions"]["httpTokens"] = UNKNOWN
        elif r["type"] == "aws:iam/rolePolicy:RolePolicy":
            r["inputs"]["policy"] = UNKNOWN
        elif r["type"].startswith("aws:s3/bucket") and r["type"] != "aws:s3/bucket:Bucket":
            r["inputs"]["bucket"] = UNKNOWN
        else:
            continue
        touched.add(r["type"])
    assert len(touched) >= 3
    assert evaluate(graph_of(F.preview_document(resources)), with_budget(800000)) == []


def test_config_prod_json_agrees_with_the_stack_config_and_validates_against_the_schemas():
    cfg = json.loads((PACK / "config.prod.json").read_text())
    stack = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    budget = stack["llm-fleet:budget"]["monthly_usd"]
    assert cfg["gpu-spend-cap"]["monthly_budget_usd"] == budget == cfg["gpu-spend-cap-stack"]["monthly_budget_usd"]
    assert cfg["gpu-spend-cap"]["region"] == stack["aws:region"]
    assert set(cfg["gpu-instance-allowlist"]["allowed_instance_types"]) >= set(stack["llm-fleet:fleet"]["instance_types"])
    by_name = {p.name: p for p in POLICIES}
    for name, section in cfg.items():
        schema = by_name[name].config_schema
        assert schema is not None, name
        full = {"type": "object", "properties": schema.properties, "required": schema.required or []}
        jsonschema.Draft7Validator.check_schema(full)
        jsonschema.validate(section, full)


def test_readme_and_docs_list_every_rule_with_the_check_it_mirrors():
    readme = (ROOT / "README.md").read_text()  # the generated rule table (tests/test_readme.py)
    docs = (ROOT / "docs" / "cost-and-policy.md").read_text()
    assert set(MIRRORS) == {p.name for p in POLICIES}
    for name, ids in MIRRORS.items():
        assert f"`{name}`" in readme, name
        assert f"`{name}`" in docs, name
        first_id = ids.split(",")[0].split(" (")[0]
        assert first_id in readme, (name, first_id)


@pytest.mark.parametrize("bad", [{"gpu-spend-cap": "sometimes"}, {"gpu-spend-cap": 3}])
def test_bad_enforcement_levels_are_user_errors(bad):
    from infra.core.errors import InputError

    with pytest.raises(InputError):
        evaluate(F.offline_plan()["resources"], bad)


def test_the_pack_starts_its_analyzer_server_when_run_as_pulumi_runs_it():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-u", "__main__.py"], cwd=PACK, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline().strip()  # PolicyPack prints the port it listens on
        assert line.isdigit(), (line, proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("as_graph", [False, True], ids=["document", "graph"])
def test_check_plan_gives_the_lead_cost_policy_and_exit_code_in_one_call(prod, as_graph):
    from policies import check_plan

    doc = graph_of(prod) if as_graph else prod
    own = check_plan(doc)  # the stack's own pack config: the verified plan's worst case is above it
    assert own.exit_code == 3 and own.monthly_budget_usd == 650000
    assert [v.policy_name for v in own.violations] == ["gpu-spend-cap-stack"]
    ok = check_plan(doc, with_budget(int(_worst(prod)) + 1))
    assert ok.exit_code == 0 and ok.violations == ()
    low = check_plan(doc, with_budget(200000))
    assert low.exit_code == 3
    sections = low.sections()
    assert sections["cost"]["scenarios"]["worst"]["usd_per_month"] == str(_worst(prod).quantize(Decimal("0.01")))
    assert sections["policy"]["passed"] is False and sections["policy"]["monthly_budget_usd"] == "200000.00"
    text = low.render()
    assert "Cost of stack prod" in text and "MANDATORY gpu-spend-cap" in text
    # The spend cap's price override reaches the cost report too: nodes x 8 GPUs x $1 x 730 h.
    cheap = check_plan(doc, pack_config(monthly_budget_usd=800000, region="us-east-1", usd_per_gpu_hour=1))
    nodes = prod["plan"]["nodes_per_az"]["desired"] * prod["plan"]["azs"]
    assert cheap.report.gpu_month("expected") == nodes * 8 * 730
