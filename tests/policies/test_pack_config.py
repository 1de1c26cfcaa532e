"""The pack config is generated from the stack config, and the offline verdict is the one a real
`pulumi preview --policy-pack policies --policy-pack-config policies/config.<stack>.json` reaches.

The real preview is stood in for by pulumi_policy's own analyzer servicer (the object
`PolicyPack` serves over gRPC): its `Configure` reads the JSON as the CLI sends it, `Analyze`
runs every resource policy and `AnalyzeStack` the stack ones, through the same deserialisation
and proxies the engine uses.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from infra.core.config import load_stack_config
from infra.core.errors import UserError
from infra.core.paths import REPO_ROOT
from infra.program.offline import plan_stack
from policies import POLICIES, config_for_stack, config_path, evaluate, load_pack_config, stack_pack_config

STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in REPO_ROOT.glob("Pulumi.*.yaml"))
LEVELS = {"advisory": proto.ADVISORY, "mandatory": proto.MANDATORY, "disabled": proto.DISABLED}


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(value, default=str)), s)
    return s


def real_preview_violations(doc: dict, pack_config: dict) -> set[tuple[str, str, str]]:
    """(policy, urn, enforcement) of every violation pulumi_policy's servicer reports."""
    servicer = _PolicyAnalyzerServicer("llm-fleet", "0.0.1", POLICIES, EnforcementLevel.MANDATORY)
    declared = {p.name: (p.enforcement_level or EnforcementLevel.MANDATORY).value for p in POLICIES}
    configs = {}
    for name, level in declared.items():
        raw = pack_config.get(name) or {}
        props = {k: v for k, v in raw.items() if k != "enforcementLevel"}
        configs[name] = proto.PolicyConfig(enforcementLevel=LEVELS[raw.get("enforcementLevel", level)],
                                           properties=_struct(props))
    servicer.Configure(proto.ConfigureAnalyzerRequest(policyConfig=configs), None)

    found: set[tuple[str, str, str]] = set()
    names = {v: k for k, v in LEVELS.items()}

    def collect(response, urn: str = "") -> None:
        # The engine files a resource policy's violation under the resource it analysed.
        for d in response.diagnostics:
            found.add((d.policyName, d.urn or urn, names[d.enforcementLevel]))

    stack_resources = []
    for r in doc["resources"]:
        deps = {k: proto.AnalyzerPropertyDependencies(urns=v) for k, v in (r.get("propertyDependencies") or {}).items()}
        stack_resources.append(proto.AnalyzerResource(
            type=r["type"], properties=_struct(r["inputs"]), urn=r["urn"], name=r["name"],
            parent=r.get("parent") or "", propertyDependencies=deps))
        if not r["type"].startswith("pulumi:"):
            collect(servicer.Analyze(proto.AnalyzeRequest(type=r["type"], properties=_struct(r["inputs"]),
                                                          urn=r["urn"], name=r["name"]), None), r["urn"])
    collect(servicer.AnalyzeStack(proto.AnalyzeStackRequest(resources=stack_resources), None))
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_the_committed_pack_config_is_the_one_the_stack_config_implies(stack):
    assert load_pack_config(config_path(stack)) == stack_pack_config(load_stack_config(stack, REPO_ROOT))


@pytest.mark.parametrize("stack", STACKS)
def test_offline_and_real_preview_verdicts_agree(stack):
    doc = plan_stack(stack).to_json()
    pack = config_for_stack(stack)
    offline = {(v.policy_name, v.urn, v.enforcement) for v in
               evaluate(doc["resources"], pack, plan=doc["plan"], region=doc["region"])}
    assert offline == real_preview_violations(doc, pack)


def test_the_real_servicer_sees_a_budget_breach_the_offline_check_sees(tmp_path):
    # Parity must hold on a failing verdict too: a budget below the fleet's worst case.
    doc = plan_stack("prod").to_json()
    pack = json.loads(json.dumps(config_for_stack("prod")))
    for name in ("gpu-spend-cap", "gpu-spend-cap-stack"):
        pack[name]["monthly_budget_usd"] = 100_000
    offline = {(v.policy_name, v.urn, v.enforcement) for v in
               evaluate(doc["resources"], pack, plan=doc["plan"], region=doc["region"])}
    assert {p for p, _, _ in offline} >= {"gpu-spend-cap", "gpu-spend-cap-stack"}
    assert offline == real_preview_violations(doc, pack)


def _project(tmp_path: Path, **changes) -> Path:
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        stack["config"][f"llm-fleet:{section}"][key] = value
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    (tmp_path / "policies").mkdir()
    return tmp_path


def test_a_missing_or_stale_pack_config_is_refused(tmp_path):
    project = _project(tmp_path, budget__monthly_usd=1234, fleet__instance_usd_per_hour={"p5.48xlarge": 39.33})
    with pytest.raises(UserError, match=r"policies/config.prod.json is missing.*python -m infra docs --write"):
        config_for_stack("prod", project)
    shutil.copy(config_path("prod"), config_path("prod", project))  # the repository's: another budget
    with pytest.raises(UserError, match=r"out of date with Pulumi.prod.yaml \(differs in gpu-spend-cap, gpu-spend-cap-stack\)"):
        config_for_stack("prod", project)
    expected = stack_pack_config(load_stack_config("prod", project))
    assert expected["gpu-spend-cap"]["monthly_budget_usd"] == 1234
    assert expected["gpu-spend-cap-stack"]["instance_usd_per_hour"] == {"p5.48xlarge": 39.33}
    assert "usd_per_gpu_hour" not in expected["gpu-spend-cap-stack"]  # one price per type, not one for all
    config_path("prod", project).write_text(json.dumps(expected))
    assert config_for_stack("prod", project) == expected
