"""Memory arithmetic against the seeds and REFERENCE.md's worked numbers."""
import pytest

from infra.core.catalog import load_catalog
from infra.core.sizing import memory

CAT = load_catalog()
L70 = CAT.model("llama-3.3-70b")


def test_seed_004_kv_bytes_per_token_fp8_is_160_kib():
    assert memory.kv_bytes_per_token(L70, "fp8") == 163_840 == 160 * 1024


def test_seed_004_request_of_4096_tokens_is_640_mib():
    assert memory.kv_bytes_per_token(L70, "fp8") * 4096 == 640 * 2**20


def test_seed_004_200_requests_need_128_gib_of_kv():
    assert memory.kv_bytes_per_token(L70, "fp8") * 4096 * 200 == 125 * 2**30  # 640 MiB x 200 (the seed's "128 GB")


@pytest.mark.parametrize(
    "model, kv, expected",
    [("llama-3.3-70b", "auto", 327_680), ("llama-3.3-70b", "fp8", 163_840), ("llama-3.1-8b", "auto", 131_072)],
)
def test_reference_kv_bytes_per_token(model, kv, expected):
    assert memory.kv_bytes_per_token(CAT.model(model), kv) == expected


@pytest.mark.parametrize("key", ["llama-3.3-70b", "llama-3.1-8b", "llama-3.1-405b", "llama-2-70b"])
def test_parameter_count_matches_published_size(key):
    import yaml

    from infra.core.catalog import CATALOG_DIR

    published = yaml.safe_load((CATALOG_DIR / "models.yaml").read_text())[key]["params_b"] * 1e9
    assert memory.param_counts(CAT.model(key)).total == pytest.approx(published, rel=0.005)


def test_weights_scale_with_precision_and_embeddings_stay_bf16():
    bf16, fp8, int4 = (memory.weight_bytes(L70, p) for p in ("bf16", "fp8", "int4"))
    assert bf16 == pytest.approx(2 * 70.55e9, rel=0.01)
    # FP8 halves only the linear layers: embeddings + lm_head (2.1 B params) stay 2 bytes.
    assert fp8 == pytest.approx(68.45e9 + 2 * 2.1e9, rel=0.01)
    assert int4 < fp8 < bf16


def test_kv_pool_follows_vllm_accounting():
    gpu = CAT.gpu("H100-SXM-80GB")
    m = memory.memory_plan(L70, gpu, 2, "fp8", "fp8", 0.9, 8192, 1024)
    assert m.usable_bytes == int(gpu.usable_hbm_bytes * 0.9)
    assert m.kv_pool_bytes == m.usable_bytes - m.weights_bytes - m.activation_bytes - m.reserve_bytes
    assert m.kv_bytes_per_token == 163_840 // 2  # KV heads split over 2 ranks
    assert m.kv_cache_tokens == m.kv_blocks * 16
    assert m.kv_blocks == m.kv_pool_bytes // (m.kv_bytes_per_token * 16)
    # More memory for vLLM means more KV; a larger token budget means more activations, less KV.
    assert memory.memory_plan(L70, gpu, 2, "fp8", "fp8", 0.95, 8192, 1024).kv_blocks > m.kv_blocks
    assert memory.memory_plan(L70, gpu, 2, "fp8", "fp8", 0.9, 32768, 1024).kv_blocks < m.kv_blocks


def test_max_sequences_at_a_context_uses_whole_blocks():
    gpu = CAT.gpu("H100-SXM-80GB")
    m = memory.memory_plan(L70, gpu, 2, "fp8", "fp8", 0.9, 8192, 1024)
    assert m.max_sequences(4096) == m.kv_blocks // 256
    assert m.max_sequences(4097) == m.kv_blocks // 257


def test_seed_004_single_h100_fp8_is_too_tight_and_two_fit():
    gpu = CAT.gpu("H100-SXM-80GB")
    one = memory.memory_plan(L70, gpu, 1, "fp8", "fp8", 0.9, 8192, 1024)
    two = memory.memory_plan(L70, gpu, 2, "fp8", "fp8", 0.9, 8192, 1024)
    assert not one.fits or one.max_sequences(4096) < 4  # the seed: "~5 GB for K/V cache: too tight"
    # The seed says 2 x H100 holds "< 150 concurrent at full context"; vLLM's accounting agrees.
    assert 50 < two.max_sequences(4096) < 150


def test_kv_heads_replicate_when_tp_exceeds_them():
    l405 = CAT.model("llama-3.1-405b")
    assert memory.kv_heads_per_rank(l405, 16) == 1
    assert memory.kv_heads_per_rank(l405, 4) == 2


@pytest.mark.parametrize("gpus, expected", [(8, [1, 2, 4, 8]), (4, [1, 2, 4]), (1, [1])])
def test_valid_tp_degrees(gpus, expected):
    assert memory.valid_tp_degrees(L70, gpus) == expected
