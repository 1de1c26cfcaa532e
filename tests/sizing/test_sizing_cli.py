"""`predict` and `size` as a user runs them: JSON contracts, exit codes, no tracebacks."""
import json
from decimal import Decimal
import subprocess
import sys

import pytest

from infra.cli import main
from tests.money_rule import assert_money_rule


def run(*argv):
    """Run the CLI in a subprocess, as a user would."""
    p = subprocess.run([sys.executable, "-m", "infra", *argv], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


PREDICT = ["predict", "--model", "llama-3.3-70b", "--gpu", "H100-SXM-80GB", "--gpus", "2", "--tp", "2",
           "--weights", "fp8", "--kv", "fp8", "--input-tokens", "1000", "--output-tokens", "1000"]


def test_predict_json_contract():
    code, out, err = run(*PREDICT, "--concurrency", "64", "--json")
    assert code == 0, err
    d = json.loads(out)
    for key in ["output_tokens_per_s", "ttft_ms_mean", "ttft_ms_p95", "tpot_ms_mean", "tpot_ms_p95",
                "kv_cache_tokens", "max_concurrency"]:
        assert isinstance(d[key], (int, float)), key
    assert d["ttft_ms_p95"] >= d["ttft_ms_mean"] > 0
    assert d["output_tokens_per_s"] <= d["roofline_output_tokens_per_s"]


def test_predict_max_load_matches_the_public_trtllm_row_within_25_percent(capsys):
    # CSV row 7: TensorRT-LLM, Llama-3.3-70B FP8, 2 x H100, 1000/1000, 4,205 tok/s.
    assert main([*PREDICT, "--max-load", "--engine", "trtllm", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["output_tokens_per_s"] == pytest.approx(4205, rel=0.25)


def test_predict_more_gpus_means_more_replicas_and_throughput(capsys):
    main([*PREDICT, "--concurrency", "128", "--json"])
    one = json.loads(capsys.readouterr().out)
    args = PREDICT.copy()
    args[args.index("--gpus") + 1] = "8"
    main([*args, "--concurrency", "128", "--json"])
    four = json.loads(capsys.readouterr().out)
    assert four["replicas"] == 4 and four["output_tokens_per_s"] > one["output_tokens_per_s"]


def test_predict_human_table(call):
    code, out, _ = call(*PREDICT, "--max-load")
    assert code == 0 and "output tokens/s" in out and "TTFT mean / p95" in out


def test_size_seed_json_contract():
    code, out, err = run("size", "--workload", "examples/seed-004.yaml", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert_money_rule(d)
    from infra.core.catalog.prices import load_price_book

    catalog_price = load_price_book().instance("us-east-1", d["instance_type"]).usd
    assert Decimal(d["cost"]["usd_per_node_hour"]) == catalog_price and d["alternatives"][0]["usd_per_hour_baseline"]
    assert d["instance_type"].startswith("p5") and d["precision"] == "fp8" and d["azs"] == 3
    assert d["predicted"]["e2e_p95_ms"] <= 4000
    assert isinstance(d["alternatives"], list) and d["alternatives"]


def test_size_human_output_shows_slos_and_alternatives(call):
    code, out, _ = call("size", "--workload", "examples/seed-004.yaml")
    assert code == 0
    assert "GPU nodes per AZ min / desired / max" in out and "Alternatives" in out and "4,000.0" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "llama-9"], "model: 'llama-9' is not allowed"),
        (["--gpu", "B200"], "gpu: 'B200' is not allowed"),
        (["--gpus", "-2"], "--gpus"),
        (["--gpus", "3"], "--gpus: 3 is not allowed; a multiple of --tp 2"),
        (["--tp", "3"], "--tp"),
        (["--input-tokens", "0"], "--input-tokens"),
        (["--model", "/nonexistent/config.json"], "model"),
    ],
)
def test_predict_bad_input_exits_2_naming_the_field(call, args, needle):
    argv = PREDICT.copy()
    for i in range(0, len(args), 2):
        argv[argv.index(args[i]) + 1] = args[i + 1]
    code, out, err = call(*argv, "--concurrency", "8")
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_predict_model_that_does_not_fit_exits_2(call):
    argv = PREDICT.copy()
    argv[argv.index("--weights") + 1] = "bf16"
    argv[argv.index("--gpus") + 1] = "1"
    argv[argv.index("--tp") + 1] = "1"
    code, _, err = call(*argv, "--concurrency", "8")
    assert code == 2 and "--tp" in err and "fits" in err and "Traceback" not in err


def test_predict_accepts_a_hugging_face_config(tmp_path, capsys):
    cfg = {
        "_name_or_path": "meta-llama/Llama-3.1-8B-Instruct", "num_hidden_layers": 32, "hidden_size": 4096,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
        "max_position_embeddings": 131072, "tie_word_embeddings": False,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    base = ["predict", "--gpu", "H100-SXM-80GB", "--gpus", "1", "--tp", "1", "--input-tokens", "500",
            "--output-tokens", "200", "--concurrency", "16", "--json"]
    assert main([*base, "--model", str(path)]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main([*base, "--model", "llama-3.1-8b"]) == 0
    from_catalog = json.loads(capsys.readouterr().out)
    assert from_file["output_tokens_per_s"] == pytest.approx(from_catalog["output_tokens_per_s"])


@pytest.mark.parametrize(
    "edit, needle",
    [
        (("workload", "concurrent_requests", -5), "workload.concurrent_requests: -5 is not allowed"),
        (("workload", "ttft_p95_ms", 0), "workload.ttft_p95_ms: 0 is not allowed"),
        (("workload", "burst_factor", 0.5), "workload.burst_factor"),
        (("model", "name", "gpt-9"), "model.name: 'gpt-9' is not allowed"),
        (("fleet", "instance_types", ["p9.huge"]), "fleet.instance_types"),
        (("fleet", "precisions", ["fp4"]), "fleet.precisions.0"),
        (("fleet", "azs", 1), "survive_az_loss needs azs >= 2"),
        (("workload", "colour", "blue"), "workload.colour: unknown key"),
    ],
)
def test_size_bad_workload_exits_2_naming_the_field(call, seed_doc, write_workload, edit, needle):
    section, field, value = edit
    seed_doc[section][field] = value
    code, out, err = call("size", "--workload", write_workload(seed_doc))
    assert code == 2, out
    assert needle in err
    assert "Traceback" not in err


def test_size_missing_file_exits_2():
    code, _, err = run("size", "--workload", "no/such.yaml")
    assert code == 2 and "--workload: 'no/such.yaml' is not allowed" in err and "Traceback" not in err


def test_size_infeasible_exits_2_with_best_achievable(call, seed_doc, write_workload):
    seed_doc["workload"]["tpot_p95_ms"] = 2
    code, _, err = call("size", "--workload", write_workload(seed_doc))
    assert code == 2
    assert "TPOT p95 2 ms is not achievable" in err and "best achievable" in err and "Traceback" not in err


def test_size_missing_required_key_exits_2(call, seed_doc, write_workload):
    del seed_doc["workload"]["ttft_p95_ms"]
    code, _, err = call("size", "--workload", write_workload(seed_doc))
    assert code == 2 and "workload.ttft_p95_ms: required key is missing" in err


def test_size_yaml_that_is_not_a_mapping_exits_2(call, tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    code, _, err = call("size", "--workload", str(p))
    assert code == 2 and "expected a mapping" in err and "Traceback" not in err


def test_size_verify_alternatives_simulates_them_and_says_why_they_lost(call, seed_doc, write_workload, tmp_path):
    seed_doc["fleet"]["instance_types"] = ["p5.48xlarge"]
    out = tmp_path / "plan.json"
    code, _, err = call("size", "--workload", write_workload(seed_doc), "--verify-alternatives", "--json", str(out))
    assert code == 0, err
    d = json.loads(out.read_text())
    simulated = [a for a in d["alternatives"] if a["verification"]]
    assert simulated, "the other TP degree that the closed form accepts is simulated too"
    for a in simulated:
        names = [v["name"] for v in a["verification"]]
        assert names and set(names) <= {"sustained", "az-loss", "burst"}
        if a["feasible"]:
            assert Decimal(a["usd_per_hour_baseline"]) >= Decimal(d["cost"]["usd_per_hour_baseline"]) and "verified" in a["why"]
        else:
            assert "fails in simulation" in a["why"] and any(f"{n}: " in a["why"] for n in names)


def test_predict_refuses_mixtral_on_one_l40s_and_an_unmodelled_layout(call, tmp_path):
    # tests/sizing/hf_configs/mixtral-8x7b-v0.1.json: huggingface.co/mistralai/Mixtral-8x7B-v0.1 config.json
    mixtral = "tests/sizing/hf_configs/mixtral-8x7b-v0.1.json"
    base = ["predict", "--gpu", "L40S-48GB", "--gpus", "1", "--tp", "1", "--weights", "fp8", "--input-tokens", "500",
            "--output-tokens", "200", "--concurrency", "4"]
    code, _, err = call(*base, "--model", mixtral)
    assert code == 2 and "a degree at which mixtral-8x7b-v0.1 (fp8) fits" in err and "Traceback" not in err
    cfg = json.loads(open(mixtral).read())
    cfg["moe_layer_freq"] = 2
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code, _, err = call(*base, "--model", str(tmp_path / "config.json"))
    assert code == 2 and "--model.moe_layer_freq: 2 is not allowed; supported: 1" in err and "Traceback" not in err
