"""Mixture of experts, MLA and sliding windows: read from real Hugging Face configs, modelled, or
refused naming the field. Fixtures are verbatim public config.json files (tests/sizing/hf_configs/README.md)."""
import dataclasses
import json
import math
from pathlib import Path

import pytest

from infra.core.catalog import load_catalog
from infra.core.catalog.architectures import TIE_WORD_EMBEDDINGS_DEFAULT, model_from_hf_config
from infra.core.errors import InfeasibleError, InputError
from infra.core.sizing import memory
from infra.core.sizing.perf import ReplicaModel, architecture_notes, engine_params
from infra.core.sizing.search import size
from tests.sizing.conftest import make_spec

CONFIGS = Path(__file__).parent / "hf_configs"
CAT = load_catalog()
VLLM = engine_params("vllm")
# huggingface.co/mistralai/Mixtral-8x7B-v0.1 config.json; model card: 46.7B total, 12.9B active.
MIXTRAL = str(CONFIGS / "mixtral-8x7b-v0.1.json")
# huggingface.co/deepseek-ai/DeepSeek-V3 config.json; model card: 671B total (without MTP), 37B activated.
DEEPSEEK_V3 = str(CONFIGS / "deepseek-v3.json")
# huggingface.co/mistralai/Mistral-7B-v0.1 config.json: every layer slides over 4,096 tokens.
MISTRAL_7B = str(CONFIGS / "mistral-7b-v0.1.json")
# huggingface.co/google/gemma-2-9b config.json: 9.24B with tied embeddings, every other layer slides.
GEMMA2_9B = str(CONFIGS / "gemma-2-9b.json")


def _billions(p: memory.ParamCounts) -> tuple[float, float]:
    bf16_rest = p.embedding + p.lm_head + p.norms
    return p.total / 1e9, (p.active_linear + bf16_rest) / 1e9


@pytest.mark.parametrize("path, total_b, active_b", [
    (MIXTRAL, 46.7, 12.9),
    (DEEPSEEK_V3, 671.0, 37.0),
    (MISTRAL_7B, 7.24, 7.24),
    (GEMMA2_9B, 9.24, 9.24),
])
def test_parameter_counts_match_the_model_cards(path, total_b, active_b):
    total, active = _billions(memory.param_counts(CAT.model(path)))
    assert total == pytest.approx(total_b, rel=0.005)
    assert active == pytest.approx(active_b, rel=0.02)


def test_mixtral_is_read_as_eight_experts_of_which_two_run():
    m = CAT.model(MIXTRAL)
    assert (m.num_experts, m.experts_per_token, m.moe_intermediate_size, m.dense_layers) == (8, 2, 14336, 0)
    # Read as dense it would be Mistral 7B: the bug this guards against.
    assert memory.param_counts(CAT.model(MISTRAL_7B)).total == pytest.approx(7.24e9, rel=0.005)


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_mixtral_does_not_fit_on_one_l40s(precision):
    l40s = CAT.gpu("L40S-48GB")
    plan = memory.memory_plan(CAT.model(MIXTRAL), l40s, 1, precision, "fp8", 0.9, 8192, 256)
    assert not plan.fits
    assert plan.weights_bytes > plan.usable_bytes  # every expert is resident


def test_mixtral_brief_on_a_single_l40s_is_infeasible_and_says_it_does_not_fit():
    spec = make_spec(model__name=MIXTRAL, fleet__instance_types=["g6e.xlarge"], fleet__precisions=["fp8", "bf16"])
    with pytest.raises(InfeasibleError, match=r"does not fit with a usable KV cache on any of g6e\.xlarge"):
        size(spec)


def test_moe_step_streams_only_the_experts_its_tokens_pick():
    m = CAT.model(MIXTRAL)
    rm = ReplicaModel(m, CAT.gpu("H100-SXM-80GB"), 2, "fp8", "fp8", VLLM)
    p = memory.param_counts(m)
    expert_bytes = p.routed_experts * memory.WEIGHT_BYTES["fp8"] / 2
    one = rm._weights_read(1)
    assert one == pytest.approx(rm._weight_bytes - expert_bytes * (1 - 2 / 8))  # 2 of 8 experts
    assert rm._weights_read(4) == pytest.approx(rm._weight_bytes - expert_bytes * (6 / 8) ** 4)
    assert rm._weights_read(256) == pytest.approx(rm._weight_bytes)  # a big batch touches every expert
    # Compute runs the active parameters only.
    assert rm._linear_flops_per_token == pytest.approx(2 * p.active_linear / 2)
    # A one-token step streams the non-expert weights and a quarter of the experts, not all of them.
    assert rm.step(1, 0).memory_s == pytest.approx(one / (3350e9 * VLLM.bw_eff))
    assert one < 0.45 * rm._weight_bytes


def test_mla_kv_is_one_latent_per_token_replicated_on_every_rank():
    m = CAT.model(DEEPSEEK_V3)
    assert m.is_mla and (m.kv_lora_rank, m.qk_rope_head_dim) == (512, 64)
    assert memory.kv_bytes_per_token(m, "auto") == 61 * (512 + 64) * 2
    assert memory.kv_bytes_per_token_per_rank(m, "fp8", 8) == memory.kv_bytes_per_token(m, "fp8")


def test_mla_attention_decodes_in_the_latent_and_prefills_expanded():
    m = CAT.model(DEEPSEEK_V3)
    rm = ReplicaModel(m, CAT.gpu("H200-SXM-141GB"), 8, "fp8", "fp8", VLLM)
    per_head = 2.0 * 61 * 128 / 8
    assert rm._attn_flops_per_token_ctx == pytest.approx(per_head * (2 * 512 + 64))
    assert rm._attn_prefill_flops_per_token_ctx == pytest.approx(per_head * (128 + 64 + 128))


def test_deepseek_v3_sizes_on_h200_with_notes_on_what_is_assumed():
    spec = make_spec(model__name=DEEPSEEK_V3, fleet__instance_types=["p5en.48xlarge"], workload__concurrent_requests=32,
                     workload__output_tokens_per_s=None, workload__e2e_p95_ms=None, workload__tpot_p95_ms=80,
                     workload__ttft_p95_ms=3000)
    plan = size(spec)
    assert (plan.instance_type, plan.tensor_parallel) == ("p5en.48xlarge", 8)
    assert plan.weights_gib_per_gpu * 8 > 620  # 671 B parameters in fp8 (bf16 embeddings), all resident
    notes = " ".join(plan.notes)
    assert "mixture of experts (256 experts, 8 per token)" in notes and "multi-head latent attention" in notes


def test_sliding_window_layers_keep_only_their_window_of_kv():
    m = CAT.model(MISTRAL_7B)
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 32)
    plan = memory.memory_plan(m, CAT.gpu("L40S-48GB"), 1, "fp8", "fp8", 0.9, 8192, 256)
    assert plan.blocks_for(2048) == 2048 // 16  # inside the window: the whole context
    assert plan.blocks_for(32768) == math.ceil(4096 / 16) + 1  # past it: the window plus one block
    dense = memory.memory_plan(dataclasses.replace(m, sliding_window=0), CAT.gpu("L40S-48GB"), 1, "fp8", "fp8",
                               0.9, 8192, 256)
    assert plan.kv_blocks == dense.kv_blocks and plan.max_sequences(32768) > 7 * dense.max_sequences(32768)
    # vLLM's start-up check counts the window plus one prefill chunk.
    assert plan.blocks_for(32768, 8192) == math.ceil((4096 - 1 + 8192) / 16) + 1


def test_gemma2_ties_embeddings_by_default_and_slides_every_other_layer():
    m = CAT.model(GEMMA2_9B)
    assert m.tie_word_embeddings and m.model_type == "gemma2"
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 21)
    rm = ReplicaModel(m, CAT.gpu("L40S-48GB"), 1, "bf16", "fp8", VLLM)
    assert rm._attended(8192) == pytest.approx((8192 + 4096) / 2)  # half the layers stop at 4,096
    assert "21 of 42 layers attend to a 4096-token window" in " ".join(architecture_notes(m))


BASE = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "intermediate_size": 14336, "vocab_size": 32000}


def _write(tmp_path, **fields) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**BASE, **fields}))
    return str(path)


@pytest.mark.parametrize("model_type, expected", [
    *TIE_WORD_EMBEDDINGS_DEFAULT.items(),
    ("gpt2", True),  # no override in its config class: PretrainedConfig's True
    (None, True),
])
def test_tie_word_embeddings_defaults_as_transformers_does_per_model_type(tmp_path, model_type, expected):
    fields = {"model_type": model_type} if model_type else {}
    assert model_from_hf_config(_write(tmp_path, **fields)).tie_word_embeddings is expected


@pytest.mark.parametrize("tied", [True, False])
def test_an_explicit_tie_word_embeddings_wins(tmp_path, tied):
    assert model_from_hf_config(_write(tmp_path, model_type="llama", tie_word_embeddings=tied)).tie_word_embeddings is tied


def test_use_sliding_window_false_means_no_window(tmp_path):
    m = model_from_hf_config(_write(tmp_path, model_type="qwen2", sliding_window=131072, use_sliding_window=False,
                                    max_window_layers=28))
    assert m.sliding_window == 0


@pytest.mark.parametrize("fields, where", [
    ({"num_local_experts": 8}, "model.num_experts_per_tok"),
    ({"num_local_experts": 8, "num_experts_per_tok": 9}, "model.num_experts_per_tok"),
    ({"num_experts": 60, "num_experts_per_tok": 4, "decoder_sparse_step": 2}, "model.decoder_sparse_step"),
    ({"n_routed_experts": 64, "num_experts_per_tok": 6, "moe_layer_freq": 2}, "model.moe_layer_freq"),
    ({"num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [0]}, "model.mlp_only_layers"),
    ({"num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2}, "model.interleave_moe_layer_step"),
    ({"kv_lora_rank": 512}, "model.qk_rope_head_dim"),
    ({"model_type": "exotic", "sliding_window": 4096}, "model.sliding_window"),
    ({"model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": True, "max_window_layers": 16},
     "model.use_sliding_window"),
    ({"sliding_window": 4096, "layer_types": ["full_attention"] * 31 + ["chunked_attention"]}, "model.layer_types"),
    ({"attention_chunk_size": 8192}, "model.attention_chunk_size"),
])
def test_layouts_that_cannot_be_modelled_are_refused_naming_the_field(tmp_path, fields, where):
    with pytest.raises(InputError) as exc:
        model_from_hf_config(_write(tmp_path, **fields))
    assert exc.value.field == where
    assert any(word in exc.value.allowed for word in ("supported", "positive integer", "at most"))
