"""The stack config loaders: one validation for the CLI (Pulumi.<stack>.yaml) and the program
(pulumi.Config), errors that name the key, exit 2 without a traceback, and a fuzz."""
from __future__ import annotations

import contextvars
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.cli import main
from infra.core.config import (
    STACK_SECTIONS,
    StackConfig,
    load_stack_config,
    parse_stack_config,
)
from infra.core.errors import UserError
from infra.core.paths import REPO_ROOT as PROJECT_DIR
from infra.program.compose import engine_config_entries
from tests.program.support import DELETE, prod_entries, with_changes


def write_stack(tmp_path: Path, entries: dict, name: str = "test") -> Path:
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": entries}, sort_keys=False))
    return tmp_path


def test_prod_loads_and_matches_seed_004():
    cfg = load_stack_config("prod", PROJECT_DIR)
    assert isinstance(cfg, StackConfig)
    assert cfg.region == "us-east-1" and cfg.fleet.azs == 3
    assert cfg.fleet.instance_types == ("p5.48xlarge",) and cfg.fleet.precisions == ("fp8",)
    w = cfg.workload
    assert (w.concurrent_requests, w.burst_factor, w.input_tokens, w.output_tokens) == (200, 4.0, 500, 200)
    assert (w.ttft_p95_ms, w.tpot_p95_ms, w.e2e_p95_ms) == (600, 40, 4000)
    assert cfg.budget.monthly_usd > 0
    assert {"environment", "cost-center", "owner"} <= set(cfg.tags)
    assert cfg.cluster.endpoint_public_access is False


def test_pulumi_yaml_declares_every_section_with_its_description():
    doc = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert doc["name"] == "llm-fleet"
    assert doc["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    declared = doc["config"]
    assert list(declared) == list(STACK_SECTIONS)
    for key, decl in declared.items():
        assert decl["description"] == StackConfig.model_fields[key].description, key
        if not StackConfig.model_fields[key].is_required():
            assert decl.get("default") == {}, key
        else:
            assert "default" not in decl, key


EU_CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def test_fleet_region_defaults_to_aws_region(tmp_path):
    entries = with_changes(prod_entries(), fleet__region=DELETE, aws_region="eu-west-1",
                           ingress__tls_certificate_arn=EU_CERTIFICATE)
    cfg = load_stack_config("test", write_stack(tmp_path, entries))
    assert cfg.fleet.region == "eu-west-1"


def test_sections_with_defaults_may_be_omitted(tmp_path):
    entries = with_changes(prod_entries(), network=DELETE, cluster=DELETE, gpu_nodes=DELETE, observability=DELETE,
                           tags={"environment": "staging", "cost-center": "ml", "owner": "sre"})
    cfg = load_stack_config("test", write_stack(tmp_path, entries))
    assert cfg.network.vpc_cidr == "10.40.0.0/16" and cfg.cluster.system_node_count == 2
    assert cfg.observability.alert_receivers is None  # outside prod: the chart's default


def test_prod_may_discard_alerts_when_it_says_so(tmp_path):
    entries = with_changes(prod_entries(), observability={"alert_receivers": [{"name": "discard", "kind": "null"}]})
    cfg = load_stack_config("test", write_stack(tmp_path, entries))
    assert [r.kind for r in cfg.observability.alert_receivers] == ["null"]


def test_program_loader_reads_pulumi_config_the_same_way():
    import pulumi

    entries = prod_entries()

    def load(extra: dict) -> StackConfig:
        engine = {k: v if isinstance(v, str) else json.dumps(v) for k, v in {**entries, **extra}.items()}
        pulumi.runtime.set_all_config(engine, [])
        return parse_stack_config(engine_config_entries(), source="stack prod")

    assert contextvars.copy_context().run(load, {}) == load_stack_config("prod", PROJECT_DIR)
    with pytest.raises(UserError, match=r"llm-fleet:budgett: unknown key; did you mean 'budget'"):
        contextvars.copy_context().run(load, {"llm-fleet:budgett": {"monthly_usd": 1}})
    with pytest.raises(UserError, match=r"llm-fleet:workload: 'not json' is not allowed"):
        contextvars.copy_context().run(load, {"llm-fleet:workload": "not json"})


def test_legacy_config_key_form_is_accepted():
    entries = {k.replace("llm-fleet:", "llm-fleet:config:"): v for k, v in prod_entries().items()}
    assert parse_stack_config(entries) == parse_stack_config(prod_entries())


# (id, changes to prod's config, text the one-line error must contain)
INVALID = [
    ("negative-ttft", dict(workload__ttft_p95_ms=-5), "llm-fleet:workload.ttft_p95_ms: -5"),
    ("missing-workload", dict(workload=DELETE), "llm-fleet:workload: required key is missing"),
    ("workload-not-mapping", dict(workload="fast please"), "llm-fleet:workload: 'fast please'"),
    ("typo-section", {"llm-fleet:worklaod": {"concurrent_requests": 1}}, "llm-fleet:worklaod: unknown key; did you mean 'workload'"),
    ("typo-field", dict(fleet__instance_type="p5.48xlarge"), "llm-fleet:fleet.instance_type: unknown key; did you mean 'instance_types'"),
    ("region-mismatch", dict(fleet__region="eu-west-1"), "llm-fleet:fleet.region: 'eu-west-1' is not allowed; it must equal aws:region"),
    ("missing-aws-region", dict(aws_region=DELETE), "aws:region: required key is missing"),
    ("bad-aws-region", dict(aws_region="mars-north"), "aws:region: 'mars-north' is not allowed"),
    ("unknown-instance-type", dict(fleet__instance_types=["p9.96xlarge"]), "llm-fleet:fleet.instance_types"),
    ("unknown-precision", dict(fleet__precisions=["fp16"]), "llm-fleet:fleet.precisions.0: 'fp16'"),
    ("kv-dtype", dict(model__kv_cache_dtype="fp4"), "llm-fleet:model.kv_cache_dtype: 'fp4'"),
    ("one-az-with-az-loss", dict(fleet__azs=1), "llm-fleet:fleet: "),
    ("tags-missing-owner", dict(tags={"environment": "prod", "cost-center": "ml"}), "llm-fleet:tags: must include environment, cost-center, owner; missing or blank: owner"),
    ("aws-tag-prefix", dict(tags={"environment": "p", "cost-center": "c", "owner": "o", "aws:x": "y"}), "tag key 'aws:x' must be 1-128 characters and not start with 'aws:'"),
    ("zero-budget", dict(budget__monthly_usd=0), "llm-fleet:budget.monthly_usd: 0"),
    ("alert-over-100", dict(budget__alert_pct=150), "llm-fleet:budget.alert_pct: 150"),
    ("two-tls-sources", dict(ingress__tls_secret_name="llm-tls"), "llm-fleet:ingress: set exactly one of tls_certificate_arn or tls_secret_name"),
    ("jwks-not-https", dict(ingress__jwks_uri="http://auth.example.com/jwks.json"), "llm-fleet:ingress.jwks_uri: 'http://auth.example.com/jwks.json'"),
    ("bad-source-cidr", dict(ingress__allowed_source_cidrs=["10.0.0.1/8"]), "llm-fleet:ingress.allowed_source_cidrs"),
    ("public-endpoint-without-cidrs", dict(cluster__endpoint_public_access=True), "llm-fleet:cluster: endpoint_public_access: true needs public_access_cidrs"),
    ("public-endpoint-open-to-all", dict(cluster__endpoint_public_access=True, cluster__public_access_cidrs=["0.0.0.0/0"]), "llm-fleet:cluster.public_access_cidrs"),
    ("k8s-version", dict(cluster__kubernetes_version="1.9"), "llm-fleet:cluster.kubernetes_version: '1.9'"),
    ("public-vpc-cidr", dict(network__vpc_cidr="8.8.0.0/16"), "llm-fleet:network.vpc_cidr: '8.8.0.0/16' is not allowed; use a private IPv4 range"),
    ("az-count", dict(network__availability_zones=["us-east-1a"]), "llm-fleet:network.availability_zones: ['us-east-1a'] is not allowed; list exactly fleet.azs = 3"),
    ("az-other-region", dict(network__availability_zones=["us-east-1a", "us-east-1b", "eu-west-1a"]), "llm-fleet:network.availability_zones: ['eu-west-1a']"),
    ("reservation-on-demand", dict(gpu_nodes__capacity_reservation_ids={"us-east-1a": "cr-0123456789abcdef0"}), "llm-fleet:gpu_nodes.capacity_reservation_ids"),
    ("capacity-block-without-ids", dict(fleet__capacity_type="capacity-block"), "llm-fleet:gpu_nodes.capacity_reservation_ids: {} is not allowed; fleet.capacity_type capacity-block needs one reservation id per AZ"),
    ("bad-reservation-id", dict(gpu_nodes__capacity_reservation_ids={"us-east-1a": "reservation-1"}), "llm-fleet:gpu_nodes.capacity_reservation_ids"),
    ("warm-pool-hibernated", dict(gpu_nodes__warm_pool_state="HIBERNATED"), "llm-fleet:gpu_nodes.warm_pool_state: 'HIBERNATED'"),
    ("image-not-pinned", dict(weights__hydrator_image="public.ecr.aws/example/hydrator:latest"), "llm-fleet:weights.hydrator_image"),
    ("revision-missing", dict(weights__revision=DELETE), "llm-fleet:weights.revision: required key is missing"),
    ("trtllm-engine", dict(fleet__engine="trtllm"), "llm-fleet:fleet.engine: 'trtllm' is not allowed; the stack deploys vLLM, so use 'vllm'"),
    ("price-for-every-type", dict(fleet__price_usd_per_gpu_hour=4.9), "llm-fleet:fleet: price_usd_per_gpu_hour (one price for every instance type) was replaced by instance_usd_per_hour"),
    ("price-for-a-type-not-allowed", dict(fleet__instance_usd_per_hour={"p5en.48xlarge": 60}), "llm-fleet:fleet: instance_usd_per_hour prices p5en.48xlarge, not in instance_types"),
    ("non-positive-price", dict(fleet__instance_usd_per_hour={"p5.48xlarge": 0}), "llm-fleet:fleet.instance_usd_per_hour: "),
    ("foreign-namespace", {"gcp:project": "x"}, "gcp:project: namespace 'gcp' is not allowed"),
    ("secret-value", dict(ingress={"secure": "v1:abc"}), "llm-fleet:ingress: is an encrypted secret"),
    # issue 14: YAML booleans are not numbers (pydantic's lax mode read `true` as 1 user)
    ("bool-concurrency", dict(workload__concurrent_requests=True), "llm-fleet:workload.concurrent_requests: True is not allowed; a boolean is not a number"),
    ("bool-ttft", dict(workload__ttft_p95_ms=True), "llm-fleet:workload.ttft_p95_ms: True is not allowed; a boolean is not a number"),
    ("bool-optional-e2e", dict(workload__e2e_p95_ms=False), "llm-fleet:workload.e2e_p95_ms: False is not allowed; a boolean"),
    ("bool-literal-retention", dict(cluster__log_retention_days=True), "llm-fleet:cluster.log_retention_days: True is not allowed; a boolean"),
    ("bool-budget", dict(budget__monthly_usd=True), "llm-fleet:budget.monthly_usd: True is not allowed"),
    # issue 14: a stack copied to another region keeps its certificate
    ("certificate-other-region", dict(ingress__tls_certificate_arn="arn:aws:acm:eu-west-1:123456789012:certificate/abc"),
     "llm-fleet:ingress.tls_certificate_arn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc' is not allowed; it is a certificate in eu-west-1 and the stack deploys to us-east-1"),
    ("blank-revision", dict(weights__revision=""), "llm-fleet:weights.revision: is blank; fill it in"),
    ("blank-environment", dict(tags={"environment": "", "cost-center": "c", "owner": "o"}), "missing or blank: environment"),
    ("prod-without-receivers", dict(observability=DELETE), "llm-fleet:observability.alert_receivers: unset is not allowed for environment prod"),
    ("webhook-with-token", dict(observability={"alert_receivers": [{"name": "hook", "kind": "webhook", "target": "https://hooks.example.com/x?token=abc"}]}), "must not carry credentials or a query string"),
    ("sns-not-an-arn", dict(observability={"alert_receivers": [{"name": "pager", "kind": "sns", "target": "pager-topic"}]}), "is not an SNS topic ARN"),
    ("null-with-target", dict(observability={"alert_receivers": [{"name": "discard", "kind": "null", "target": "x"}]}), "a null receiver takes no target"),
    ("small-prometheus-volume", dict(observability__prometheus_volume_gib=5), "llm-fleet:observability.prometheus_volume_gib: 5"),
]


def _raw_entries(changes: dict) -> dict:
    """Full keys (`gcp:project`, `llm-fleet:worklaod`) are set as given; the rest are
    `with_changes` edits of prod's config."""
    entries = with_changes(prod_entries(), **{k: v for k, v in changes.items() if ":" not in k})
    entries.update({k: v for k, v in changes.items() if ":" in k})
    return entries


@pytest.mark.parametrize("case, changes, expected", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_config_exits_2_naming_the_key(tmp_path, capsys, case, changes, expected):
    project = write_stack(tmp_path, _raw_entries(changes))
    code = main(["plan", "--stack", "test", "--project-dir", str(project)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("error: Pulumi.test.yaml: ")
    assert err.count("\n") == 1, err  # one line
    assert "Traceback" not in err
    assert expected in err, err


BILLION_LAUGHS = """config:
  aws:region: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  llm-fleet:b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  llm-fleet:c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  llm-fleet:d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  llm-fleet:e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  llm-fleet:f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  llm-fleet:g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  llm-fleet:workload: [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def test_an_alias_bomb_exits_2_at_once_with_a_short_message(tmp_path):
    """Issue 14: 313 bytes of aliases expanded to 1.5 GB of error text, 4.4 GB and 41 s."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.bomb.yaml").write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 500  # 9^8 = 43 million "lol"s
    proc = subprocess.run([sys.executable, "-m", "infra", "plan", "--stack", "bomb", "--project-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=PROJECT_DIR)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr) < 2048 and "Traceback" not in proc.stderr
    assert "expands to more than 100,000 values through its aliases" in proc.stderr


def test_small_aliases_and_merge_keys_still_load(tmp_path):
    text = (PROJECT_DIR / "Pulumi.prod.yaml").read_text().replace(
        "  llm-fleet:cluster:\n", "  llm-fleet:cluster: &cluster\n")
    text += "  llm-fleet:network: {<<: {vpc_cidr: 10.40.0.0/16}}\n"
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.prod.yaml").write_text(text.replace("  llm-fleet:network:\n    vpc_cidr: 10.40.0.0/16\n", ""))
    assert load_stack_config("prod", tmp_path) == load_stack_config("prod", PROJECT_DIR)


def test_a_recursive_alias_is_refused(tmp_path):
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.loop.yaml").write_text("config: &x {llm-fleet:workload: *x}\n")
    with pytest.raises(UserError, match="recursive alias"):
        load_stack_config("loop", tmp_path)


@pytest.mark.parametrize("changes", [
    dict(ingress__hostname="h" * 100_000),
    dict(fleet__instance_types=["p5.48xlarge"] * 5_000 + ["x" * 5_000]),
    {"llm-fleet:" + "k" * 10_000: 1},
    dict(workload=[{"deep": ["x" * 1_000] * 1_000}] * 20),
    dict(tags={f"tag-{i}": {"nested": i} for i in range(2_000)}),
])
def test_error_messages_show_values_bounded(tmp_path, capsys, changes):
    """Issue 14: errors printed whole expanded values; one helper (`errors.shown`) bounds them."""
    project = write_stack(tmp_path, _raw_entries(changes))
    assert main(["plan", "--stack", "test", "--project-dir", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Pulumi.test.yaml: ") and len(err) < 2048, err[:3000]


def test_many_problems_are_counted_not_all_listed(tmp_path, capsys):
    entries = _raw_entries({f"llm-fleet:bad{i}": i for i in range(200)})
    main(["plan", "--stack", "test", "--project-dir", str(write_stack(tmp_path, entries))])
    err = capsys.readouterr().err
    assert "200 problems" in err and "... and 180 more" in err and len(err) < 4096


@pytest.mark.parametrize("stack, tags, environment, warned", [
    ("prod", {"environment": "prod"}, None, []),
    ("prod-us-west-2", {"environment": "prod", "region": "us-west-2"}, "prod", ["tags.region: 'us-west-2'"]),
    ("staging-eu", {"environment": "prod"}, None, ["tags.environment: 'prod' does not match stack 'staging-eu'"]),
    ("eu-west", {"environment": "staging"}, "prod", ["stacks/prod.yaml lists stack 'eu-west'"]),
    ("prodx", {"environment": "prod"}, None, ["does not match stack 'prodx'"]),
])
def test_copied_tags_are_warned_about(stack, tags, environment, warned):
    from infra.core.config import stack_warnings

    base = parse_stack_config(prod_entries())
    cfg = base.model_copy(update={"tags": {**base.tags, **tags}})
    got = stack_warnings(stack, cfg, environment)
    assert len(got) == len(warned) and all(w in g for w, g in zip(warned, got)), got


def test_unnamespaced_key_suggests_the_namespace(tmp_path, capsys):
    entries = prod_entries()
    entries["tags"] = entries.pop("llm-fleet:tags")
    code = main(["plan", "--stack", "test", "--project-dir", str(write_stack(tmp_path, entries))])
    err = capsys.readouterr().err
    assert code == 2
    assert "tags: config keys must be namespaced" in err and "did you mean 'llm-fleet:tags'" in err


def test_several_problems_are_reported_together(tmp_path, capsys):
    entries = with_changes(prod_entries(), workload__ttft_p95_ms=0, budget__monthly_usd=-1)
    main(["plan", "--stack", "test", "--project-dir", str(write_stack(tmp_path, entries))])
    err = capsys.readouterr().err
    assert "2 problems" in err and "workload.ttft_p95_ms" in err and "budget.monthly_usd" in err


def test_missing_stack_and_unreadable_file(tmp_path, capsys):
    assert main(["plan", "--stack", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--stack: 'nope' is not allowed; a stack with a Pulumi.<stack>.yaml file; found: " in err and "prod" in err
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.broken.yaml").write_text("config: [unclosed\n")
    assert main(["plan", "--stack", "broken", "--project-dir", str(tmp_path)]) == 2
    assert "readable YAML" in capsys.readouterr().err
    (tmp_path / "Pulumi.list.yaml").write_text("config: [1, 2]\n")
    assert main(["plan", "--stack", "list", "--project-dir", str(tmp_path)]) == 2
    assert "config: expected a mapping" in capsys.readouterr().err


def test_infeasible_slo_exits_2_from_the_program(tmp_path, capsys):
    project = write_stack(tmp_path, with_changes(prod_entries(), workload__ttft_p95_ms=1))
    code = main(["plan", "--stack", "test", "--project-dir", str(project)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: TTFT p95 1 ms is not achievable") and err.count("\n") == 1


def test_real_process_exit_code_and_no_traceback(tmp_path):
    project = write_stack(tmp_path, with_changes(prod_entries(), budget__monthly_usd=0))
    proc = subprocess.run(
        [sys.executable, "-m", "infra", "plan", "--stack", "test", "--project-dir", str(project)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "llm-fleet:budget.monthly_usd: 0 is not allowed" in proc.stderr


# -- fuzz ---------------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
keys = st.one_of(
    st.sampled_from([f"llm-fleet:{s}" for s in STACK_SECTIONS] + ["aws:region", "aws:profile", "pulumi:x"]),
    st.text(max_size=20),
)


def _mutate(entries: dict, data) -> dict:
    """Replace or delete one leaf somewhere in a valid config."""
    key = data.draw(st.sampled_from(sorted(entries)))
    node = entries[key]
    if not isinstance(node, dict) or not node:
        entries[key] = data.draw(json_value)
        return entries
    field = data.draw(st.sampled_from(sorted(node)))
    if data.draw(st.booleans()):
        node[field] = data.draw(json_value)
    else:
        del node[field]
    return entries


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_value, max_size=6))
def test_fuzz_random_documents_never_crash(entries):
    try:
        parse_stack_config(entries)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_prod_config_never_crashes(data):
    entries = _mutate(prod_entries(), data)
    try:
        cfg = parse_stack_config(entries)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(cfg, StackConfig)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_fuzz_stack_file_text_never_crashes(tmp_path, text):
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.fuzz.yaml").write_text(text)
    try:
        load_stack_config("fuzz", tmp_path)
    except UserError as exc:
        assert str(exc)


def test_unavailable_az_is_refused_by_the_program(tmp_path, capsys):
    from policies.config import config_path, render_pack_config, stack_pack_config

    entries = with_changes(prod_entries(), network__availability_zones=["us-east-1a", "us-east-1b", "us-east-1z"],
                           tags__environment="test")
    project = write_stack(tmp_path, entries)
    config_path("test", project).parent.mkdir()
    config_path("test", project).write_text(render_pack_config(stack_pack_config(load_stack_config("test", project))))
    code = main(["plan", "--stack", "test", "--project-dir", str(project)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: llm-fleet:network.availability_zones: ['us-east-1z'] is not allowed; AZs available")
    assert err.count("\n") == 1
