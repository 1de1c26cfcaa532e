"""GPU memory arithmetic: weights, KV cache per token, and vLLM's KV pool per replica.

Follows vLLM (V1) accounting: the engine may use `total HBM x gpu_memory_utilization`; from
that it subtracts the weights shard, the peak activations of a profiling run at
`max_num_batched_tokens`, and non-torch allocations (CUDA graphs, NCCL buffers); what is left
is cut into 16-token blocks of KV cache. KV heads are divided across tensor-parallel ranks
(replicated when TP exceeds them; an MLA latent is replicated on every rank).

Mixture-of-experts models hold every expert (total parameters); sliding-window layers hold
only their window of KV per request (see `MemoryPlan.blocks_for`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from infra.core.catalog import Gpu, ModelArch

BLOCK_TOKENS = 16  # vLLM's default KV block size
GIB = 2**30

# Bytes per weight of a quantised linear layer. int4 is AWQ/GPTQ with group size 128: per group
# a bf16 scale (2 B) and a packed 4-bit zero point (0.5 B).
WEIGHT_BYTES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5 + 2.5 / 128}
KV_BYTES: dict[str, int] = {"auto": 2, "bf16": 2, "fp8": 1}

# Memory outside weights, activations and KV that vLLM reserves per GPU: CUDA graphs, cuBLAS
# workspaces, allocator slack; NCCL buffers on top when TP > 1. Typical vLLM startup logs on
# H100 report 0.5-1.5 GiB of non-torch memory and ~0.5 GiB of CUDA graphs.
RUNTIME_RESERVE_BYTES = int(1.5 * GIB)
NCCL_RESERVE_BYTES = int(0.5 * GIB)


@dataclass(frozen=True)
class ParamCounts:
    linear: int  # quantisable matmul weights (attention + MLP projections, every expert)
    embedding: int  # input embedding table
    lm_head: int  # output projection (0 when tied to the embedding)
    norms: int  # norms and MoE router gates (small, kept in bf16)
    routed_experts: int = 0  # the routed experts' share of `linear`
    active_linear: int = 0  # `linear` one token runs through (routed experts: experts_per_token of them)

    @property
    def total(self) -> int:
        return self.linear + self.embedding + self.lm_head + self.norms


def _attention_params(m: ModelArch) -> int:
    """Per layer: q, k, v, o projections (MLA: the low-rank q and kv paths and their norms)."""
    if m.is_mla:
        heads, qk = m.num_attention_heads, m.qk_nope_head_dim + m.qk_rope_head_dim
        q = (m.hidden_size * m.q_lora_rank + m.q_lora_rank * heads * qk) if m.q_lora_rank else m.hidden_size * heads * qk
        kv_a = m.hidden_size * (m.kv_lora_rank + m.qk_rope_head_dim)
        kv_b = m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim)
        return q + kv_a + kv_b + heads * m.v_head_dim * m.hidden_size
    q = m.hidden_size * m.num_attention_heads * m.head_dim
    kv = 2 * m.hidden_size * m.num_key_value_heads * m.head_dim
    o = m.num_attention_heads * m.head_dim * m.hidden_size
    return q + kv + o


def param_counts(m: ModelArch) -> ParamCounts:
    mlp = 3 * m.hidden_size * m.intermediate_size  # gate, up, down
    embedding = m.vocab_size * m.hidden_size
    norms = (2 * m.num_hidden_layers + 1) * m.hidden_size
    if m.is_mla:
        norms += m.num_hidden_layers * (m.kv_lora_rank + m.q_lora_rank)
    attention = m.num_hidden_layers * _attention_params(m)
    routed = shared = 0
    dense_layers = m.num_hidden_layers
    if m.is_moe:
        expert = 3 * m.hidden_size * m.moe_intermediate_size
        routed = m.moe_layers * m.num_experts * expert
        shared = m.moe_layers * 3 * m.hidden_size * m.shared_expert_intermediate_size
        norms += m.moe_layers * m.hidden_size * m.num_experts  # router gate
        dense_layers = m.dense_layers
    linear = attention + dense_layers * mlp + routed + shared
    return ParamCounts(
        linear=linear,
        embedding=embedding,
        lm_head=0 if m.tie_word_embeddings else embedding,
        norms=norms,
        routed_experts=routed,
        active_linear=linear - routed + (routed * m.experts_per_token // m.num_experts if m.is_moe else 0),
    )


def weight_bytes(m: ModelArch, precision: str) -> int:
    """Whole-model weight bytes (every expert). Quantised checkpoints keep embeddings, lm_head
    and norms in bf16."""
    p = param_counts(m)
    return int(p.linear * WEIGHT_BYTES[precision] + (p.embedding + p.lm_head + p.norms) * 2)


# What the checkpoint on disk holds for each serving precision: vLLM's `--quantization fp8`
# quantises the BF16 checkpoint as it loads (dynamic FP8), the others read pre-quantised checkpoints.
CHECKPOINT_PRECISION = {"bf16": "bf16", "fp8": "bf16", "int8": "int8", "int4": "int4"}


def checkpoint_gib(m: ModelArch, precision: str) -> float:
    """GiB the hydrator copies to NVMe and vLLM reads at start (time to serve, startup probe)."""
    return weight_bytes(m, CHECKPOINT_PRECISION[precision]) / 2**30


def kv_values_per_token_per_layer(m: ModelArch, tp: int = 1) -> int:
    """K and V values one token stores per layer on one rank. MLA stores one latent of
    `kv_lora_rank + qk_rope_head_dim` values, the same on every rank (vLLM replicates it)."""
    if m.is_mla:
        return m.kv_lora_rank + m.qk_rope_head_dim
    return 2 * kv_heads_per_rank(m, tp) * m.head_dim


def kv_bytes_per_token(m: ModelArch, kv_dtype: str) -> int:
    """K and V, every layer, every KV head: 2 x layers x kv_heads x head_dim x bytes (MLA: the
    latent, layers x (kv_lora_rank + qk_rope_head_dim) x bytes)."""
    return m.num_hidden_layers * kv_values_per_token_per_layer(m) * KV_BYTES[kv_dtype]


def kv_heads_per_rank(m: ModelArch, tp: int) -> int:
    return max(1, m.num_key_value_heads // tp)


def kv_bytes_per_token_per_rank(m: ModelArch, kv_dtype: str, tp: int) -> int:
    return m.num_hidden_layers * kv_values_per_token_per_layer(m, tp) * KV_BYTES[kv_dtype]


def activation_peak_bytes(m: ModelArch, tp: int, max_num_batched_tokens: int, max_num_seqs: int) -> int:
    """Peak activations of vLLM's profiling forward pass at the full token budget, per GPU.

    Per token: residual and normed hidden states, the fused QKV output, the gate/up output and
    the activated MLP input (bf16); plus fp32 logits for every sequence the sampler sees.
    """
    if m.is_mla:  # q, the latent, and k/v expanded per head for prefill attention
        heads = m.num_attention_heads
        qkv = heads * (2 * m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim) // tp + m.kv_lora_rank + m.qk_rope_head_dim
    else:
        qkv = (m.num_attention_heads + 2 * m.num_key_value_heads) * m.head_dim // tp
    mlp = 3 * m.intermediate_size // tp
    if m.is_moe:  # fused MoE: per token and chosen expert, gate/up/down outputs and the result
        moe = m.experts_per_token * (3 * m.moe_intermediate_size // tp + m.hidden_size)
        moe += 3 * m.shared_expert_intermediate_size // tp
        mlp = max(mlp if m.dense_layers else 0, moe)
    per_token = 2 * m.hidden_size + qkv + mlp
    logits = min(max_num_seqs, max_num_batched_tokens) * m.vocab_size * 4
    return max_num_batched_tokens * per_token * 2 + logits


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU memory of one replica (all TP ranks are alike)."""

    usable_bytes: int  # total x gpu_memory_utilization
    weights_bytes: int
    activation_bytes: int
    reserve_bytes: int
    kv_pool_bytes: int  # may be <= 0: the model does not fit
    kv_bytes_per_token: int  # per rank
    kv_blocks: int  # blocks of BLOCK_TOKENS tokens of every layer's KV
    kv_cache_tokens: int
    sliding_window: int = 0  # tokens a windowed layer attends to (0: every layer keeps the whole context)
    window_layer_share: float = 0.0  # share of the layers (and KV bytes per token) that are windowed

    @property
    def fits(self) -> bool:
        return self.kv_blocks > 0

    def blocks_for(self, context_tokens: int, in_flight_tokens: int = 1) -> int:
        """Blocks one request holds at `context_tokens` of context. A windowed layer keeps only
        the window plus the tokens being computed (`in_flight_tokens`: a decode token or a
        prefill chunk) and one block of alignment; vLLM's SlidingWindowManager frees the rest."""
        full = math.ceil(context_tokens / BLOCK_TOKENS)
        if not self.sliding_window:
            return full
        held = min(context_tokens, self.sliding_window - 1 + in_flight_tokens)
        windowed = min(full, math.ceil(held / BLOCK_TOKENS) + 1)
        return math.ceil(full * (1 - self.window_layer_share) + windowed * self.window_layer_share)

    def max_sequences(self, context_tokens: int) -> int:
        """Sequences that fit at once when each holds `context_tokens` of KV."""
        return self.kv_blocks // max(1, self.blocks_for(context_tokens))

    def holds_one_request(self, max_model_len: int, max_num_batched_tokens: int) -> bool:
        """vLLM refuses to start unless the pool holds one `max_model_len` request, a windowed
        layer counting its window plus one prefill chunk (check_enough_kv_cache_memory and
        SlidingWindowSpec.max_memory_usage_bytes, vllm/v1/core/kv_cache_utils.py)."""
        return self.kv_blocks >= self.blocks_for(max_model_len, max_num_batched_tokens)


def memory_plan(
    m: ModelArch,
    gpu: Gpu,
    tp: int,
    precision: str,
    kv_dtype: str,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
) -> MemoryPlan:
    usable = int(gpu.usable_hbm_bytes * gpu_memory_utilization)
    weights = math.ceil(weight_bytes(m, precision) / tp)
    act = activation_peak_bytes(m, tp, max_num_batched_tokens, max_num_seqs)
    reserve = RUNTIME_RESERVE_BYTES + (NCCL_RESERVE_BYTES if tp > 1 else 0)
    pool = usable - weights - act - reserve
    per_token = kv_bytes_per_token_per_rank(m, kv_dtype, tp)
    blocks = max(0, pool // (per_token * BLOCK_TOKENS))
    return MemoryPlan(
        usable_bytes=usable,
        weights_bytes=weights,
        activation_bytes=act,
        reserve_bytes=reserve,
        kv_pool_bytes=pool,
        kv_bytes_per_token=per_token,
        kv_blocks=int(blocks),
        kv_cache_tokens=int(blocks) * BLOCK_TOKENS,
        sliding_window=m.sliding_window,
        window_layer_share=m.window_layer_share,
    )


def valid_tp_degrees(m: ModelArch, gpus_per_node: int) -> list[int]:
    """TP degrees vLLM accepts on one node: powers of two dividing the GPUs and the heads."""
    out = []
    tp = 1
    while tp <= gpus_per_node:
        heads_ok = m.num_attention_heads % tp == 0
        kv_ok = m.num_key_value_heads % tp == 0 or tp % m.num_key_value_heads == 0
        if gpus_per_node % tp == 0 and heads_ok and kv_ok:
            out.append(tp)
        tp *= 2
    return out
