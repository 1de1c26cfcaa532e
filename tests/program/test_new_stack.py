"""`python -m infra new-stack`: a stack from another one, region-scoped values blanked and
explained, refused names and bad input writing nothing, and a new stack that plans offline after
the README's manual steps ("Make your own stack")."""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from infra.cli import main
from infra.core.paths import REPO_ROOT
from policies.config import pack_config_problem

README = (REPO_ROOT / "README.md").read_text()
PROD_CERTIFICATE = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]["llm-fleet:ingress"][
    "tls_certificate_arn"]


def project(tmp_path: Path) -> Path:
    """A copy of the repository's stack files and environments (the tests write next to them)."""
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.prod-us-west-2.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "stacks", tmp_path / "stacks")
    return tmp_path


def readme_section() -> str:
    return README.split("## Make your own stack", 1)[1].split("\n## ", 1)[0]


def readme_new_stack_command() -> list[str]:
    line = next(ln for ln in readme_section().splitlines() if ln.startswith("python -m infra new-stack "))
    return shlex.split(line)[3:]


def stack_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["config"]


def fill_in_the_blanks(path: Path, certificate: str, revision: str, environment: str) -> None:
    """The README's manual step: each value marked FILL IN."""
    text = path.read_text()
    text = text.replace("tls_certificate_arn: ''", f"tls_certificate_arn: {certificate}")
    text = text.replace("revision: ''", f"revision: {revision}")
    text = text.replace("environment: ''", f"environment: {environment}")
    path.write_text(text)


def test_the_readme_path_to_a_new_stack_plans_offline(tmp_path, capsys):
    """Issue 14: a stack for another brief took five `sed` edits and nothing said what else to change."""
    root = project(tmp_path)
    args = readme_new_stack_command()
    name, region = args[1], args[args.index("--region") + 1]
    assert main([*args, "--project-dir", str(root)]) == 0
    out = capsys.readouterr().out
    stack_file = root / f"Pulumi.{name}.yaml"
    cfg = stack_config(stack_file)
    # Region- and stack-scoped values are blank, with a comment saying what goes there.
    assert cfg["llm-fleet:ingress"]["tls_certificate_arn"] == ""
    assert cfg["llm-fleet:weights"]["revision"] == ""
    assert cfg["llm-fleet:tags"]["environment"] == ""
    text = stack_file.read_text()
    assert PROD_CERTIFICATE not in text
    assert f"aws acm list-certificates --region {region}" in text and "manifest list" in text
    assert text.count("# FILL IN:") == 3 and "1. llm-fleet:ingress.tls_certificate_arn" in out
    assert cfg["aws:region"] == cfg["llm-fleet:fleet"]["region"] == region
    assert cfg["llm-fleet:network"]["vpc_cidr"] == "10.42.0.0/16"  # 10.40 and 10.41 are prod's
    assert "It cannot join prod" in out or "add it to stacks/prod.yaml" in out
    # Until filled in, `plan` names every blank (exit 2).
    assert main(["plan", "--stack", name, "--project-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("is blank; fill it in") == 2 and "missing or blank: environment" in err
    # The documented manual steps, then the offline plan passes.
    fill_in_the_blanks(stack_file, f"arn:aws:acm:{region}:123456789012:certificate/abcd-1234", "v1", name)
    assert pack_config_problem(name, root) is None  # what `docs --write` would generate
    assert main(["plan", "--stack", name, "--project-dir", str(root)]) == 0
    plan_out, plan_err = capsys.readouterr()
    assert f"stack {name} in {region}" in plan_out and "warning" not in plan_err
    # `size` reads the stack file through the one resolver.
    assert main(["size", "--stack", name, "--project-dir", str(root), "--json"]) == 0
    sized = json.loads(capsys.readouterr().out)
    assert sized["region"] == region and sized["load"]["concurrent_requests"] == int(args[args.index("--concurrent-requests") + 1])


def test_the_readme_section_lists_the_manual_steps():
    section = readme_section()
    for needle in ("tls_certificate_arn", "weights.revision", "tags.environment", "vpc_cidr", "docs --write",
                   "stacks/", "size --stack"):
        assert needle in section, needle


def test_an_existing_stack_is_refused_unless_forced(tmp_path, capsys):
    root = project(tmp_path)
    before = (root / "Pulumi.prod-us-west-2.yaml").read_text()
    assert main(["new-stack", "prod-us-west-2", "--from", "prod", "--project-dir", str(root)]) == 2
    assert "--force overwrites it" in capsys.readouterr().err
    assert (root / "Pulumi.prod-us-west-2.yaml").read_text() == before
    assert main(["new-stack", "prod-us-west-2", "--from", "prod", "--project-dir", str(root), "--force",
                 "--environment", "prod"]) == 0
    assert stack_config(root / "Pulumi.prod-us-west-2.yaml")["llm-fleet:tags"]["environment"] == "prod"


@pytest.mark.parametrize("flags, expected", [
    (["--region", "mars-1"], "--region: 'mars-1' is not allowed"),
    (["--vpc-cidr", "8.8.0.0/16"], "use a private IPv4 range"),
    (["--concurrent-requests", "5000000"], "llm-fleet:workload.concurrent_requests: 5000000 is not allowed"),
    (["--model", "gpt-9"], "gpt-9"),
    (["--from", "nope"], "--stack: 'nope' is not allowed"),
    (["--from", "eu", "--force"], "a copy never replaces its source"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, flags, expected):
    root = project(tmp_path)
    source = [] if "--from" in flags else ["--from", "prod"]
    assert main(["new-stack", "eu", *source, *flags, "--project-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (root / "Pulumi.eu.yaml").exists() and not (root / "policies").exists()


def test_another_model_drops_the_served_name_and_cannot_join_the_environment(tmp_path, capsys):
    root = project(tmp_path)
    assert main(["new-stack", "small", "--from", "prod", "--model", "llama-3.1-8b", "--environment", "small",
                 "--budget-usd", "100000", "--project-dir", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fill_in"] == ["llm-fleet:ingress.tls_certificate_arn", "llm-fleet:weights.revision"]
    assert "It cannot join prod" in doc["notes"][0]
    cfg = stack_config(root / "Pulumi.small.yaml")
    assert cfg["llm-fleet:model"] == {"name": "llama-3.1-8b", "kv_cache_dtype": "fp8", "max_model_len": 8192}
    assert cfg["llm-fleet:budget"]["monthly_usd"] == 100000 and cfg["aws:region"] == "us-east-1"
    assert re.search(r"# FILL IN: the ARN of an ACM certificate for \S+ in us-east-1", (root / "Pulumi.small.yaml").read_text())
    assert json.loads((root / "policies" / "config.small.json").read_text())["gpu-spend-cap"]["monthly_budget_usd"] == 100000
