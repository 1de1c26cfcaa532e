"""Step-time model of one serving replica: roofline terms plus measured inefficiencies.

One engine step runs a forward pass over a batch made of decode tokens (one per running
sequence) and prefill tokens (chunked prefill). Its time is

    max(bytes moved / (HBM bandwidth x bw_eff), FLOPs / (dense peak x compute_eff))
      + tensor-parallel all-reduces + a fixed per-step overhead

Efficiencies are <= 1 and the extra terms >= 0, so no prediction can beat the roofline.
Mixture of experts: GEMM FLOPs count the active parameters, and a step streams only the
experts its tokens were routed to. MLA: attention FLOPs follow vLLM's latent decode and
expanded prefill. Sliding windows: a windowed layer attends to at most its window. The
factors were fitted on dense models; MoE and MLA kernels are assumed to reach the same
efficiencies (uncalibrated).
The engine factors come from `infra/core/catalog/engines.yaml`, fitted by `infra/core/sizing/calibrate.py`
on the public measurements.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.core.catalog import CATALOG_DIR, Gpu, ModelArch
from infra.core.errors import InputError
from infra.core.sizing import memory

ENGINES_FILE = CATALOG_DIR / "engines.yaml"


@dataclass(frozen=True)
class EngineParams:
    """Efficiency factors of a serving engine (dimensionless unless the name says otherwise)."""

    name: str
    bw_eff: float  # achieved / peak HBM bandwidth streaming weights
    kv_bw_eff: float  # achieved / peak HBM bandwidth reading paged KV in attention kernels
    compute_eff: float  # achieved / dense peak on GEMMs
    attn_eff: float  # achieved / dense bf16 peak on attention FLOPs (prefill and long contexts)
    allreduce_latency_us: float  # fixed cost of one all-reduce (launch + sync)
    link_eff: float  # achieved / nominal interconnect bandwidth
    step_overhead_ms: float  # scheduler, sampling, host work per step
    overlap_k: float  # memory/compute overlap: step = (mem^k + compute^k)^(1/k); k -> inf is max()
    default_max_num_seqs: int
    default_max_num_batched_tokens: int
    default_gpu_memory_utilization: float
    reserve_full_context: bool  # KV for prompt + whole answer reserved at admission
    request_overhead_ms: float  # per request outside the engine steps (HTTP, tokenise)

    def __post_init__(self) -> None:
        for name in ("bw_eff", "kv_bw_eff", "compute_eff", "attn_eff", "link_eff"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ValueError(f"engine {self.name}: {name}={v} must be in (0, 1]")


@functools.lru_cache(maxsize=4)
def load_engines(path: Path = ENGINES_FILE) -> dict[str, EngineParams]:
    doc = yaml.safe_load(Path(path).read_text())
    fields = EngineParams.__dataclass_fields__
    return {
        name: EngineParams(name=name, **{k: v for k, v in row.items() if k in fields})
        for name, row in doc["engines"].items()
    }


def engine_params(name: str) -> EngineParams:
    engines = load_engines()
    if name not in engines:
        raise InputError("engine", name, f"one of: {', '.join(sorted(engines))}")
    return engines[name]


def architecture_notes(arch: ModelArch) -> tuple[str, ...]:
    """Plan notes on what the sizing assumes about an architecture beyond the calibrated dense ones."""
    notes = []
    if arch.is_moe:
        notes.append(
            f"{arch.key} is a mixture of experts ({arch.num_experts} experts, {arch.experts_per_token} per token): "
            "memory holds every expert, compute counts the active ones, and a step reads the experts its tokens "
            "pick (uniform routing assumed); the engine factors were fitted on dense models only")
    if arch.is_mla:
        notes.append(
            f"{arch.key} uses multi-head latent attention: KV is one {arch.kv_lora_rank + arch.qk_rope_head_dim}-value "
            "latent per token and layer, held whole on every tensor-parallel rank (vLLM's MLA)")
    if arch.sliding_window:
        notes.append(
            f"{arch.key}: {arch.sliding_window_layers} of {arch.num_hidden_layers} layers attend to a "
            f"{arch.sliding_window}-token window and keep only that much KV per request (vLLM's hybrid KV cache)")
    return tuple(notes)


def gemm_peak_flops(gpu: Gpu, precision: str) -> float:
    """Dense peak for the linear layers at a weight precision.

    fp8/int8 run W8A8 on tensor cores that have them (Hopper, Ada: int8 TOPS = fp8 TFLOPS);
    int4 (AWQ/GPTQ) and fp8 on GPUs without fp8 are weight-only: dequantise, multiply in bf16.
    """
    if precision in ("fp8", "int8") and gpu.dense_fp8_tflops:
        return gpu.dense_fp8_tflops * 1e12
    return gpu.dense_bf16_tflops * 1e12


@dataclass(frozen=True)
class StepBreakdown:
    memory_s: float
    compute_s: float
    comm_s: float
    overhead_s: float
    overlap_k: float

    @property
    def total_s(self) -> float:
        return _overlap(self.memory_s, self.compute_s, self.overlap_k) + self.comm_s + self.overhead_s


def _overlap(m: float, c: float, k: float) -> float:
    """A p-norm of the two roofline terms: never below max(memory, compute), and near the ridge
    point (both terms alike) slower than either, as real kernels are."""
    return (m ** k + c ** k) ** (1 / k)


class ReplicaModel:
    """One replica: a model on `tp` GPUs of one type with an engine and its settings."""

    def __init__(
        self,
        arch: ModelArch,
        gpu: Gpu,
        tp: int,
        precision: str,
        kv_dtype: str,
        engine: EngineParams,
        *,
        gpu_memory_utilization: float = 0.90,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
    ) -> None:
        self.arch, self.gpu, self.tp = arch, gpu, tp
        self.precision, self.kv_dtype, self.engine = precision, kv_dtype, engine
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_num_seqs = max_num_seqs or engine.default_max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens or engine.default_max_num_batched_tokens
        self.memory = memory.memory_plan(
            arch, gpu, tp, precision, kv_dtype, gpu_memory_utilization,
            self.max_num_batched_tokens, self.max_num_seqs,
        )
        p = memory.param_counts(arch)
        # Per-GPU constants of the step model.
        self._weight_bytes = memory.weight_bytes(arch, precision) / tp
        # Routed experts: a step reads only the experts its tokens were routed to (see _weights_read).
        self._expert_bytes = p.routed_experts * memory.WEIGHT_BYTES[precision] / tp
        self._expert_pick = arch.experts_per_token / arch.num_experts if arch.is_moe else 0.0
        self._kv_bytes_per_token = memory.kv_bytes_per_token_per_rank(arch, kv_dtype, tp)
        self._linear_flops_per_token = 2.0 * p.active_linear / tp
        self._lm_head_flops_per_token = 2.0 * (p.lm_head or p.embedding) / tp
        # QK^T and AV: 2 matmuls x 2 FLOPs per MAC over the heads on this rank.
        self._attn_flops_per_token_ctx = 4.0 * arch.num_hidden_layers * arch.num_attention_heads * arch.head_dim / tp
        self._attn_prefill_flops_per_token_ctx: float | None = None  # None: as decode
        if arch.is_mla:
            # vLLM's MLA decodes in the latent space (q absorbs W_UK: QK over kv_lora_rank + rope,
            # AV over kv_lora_rank) and prefills with K/V expanded per head (qk_nope + rope, v_head_dim).
            per_head = 2.0 * arch.num_hidden_layers * arch.num_attention_heads / tp
            self._attn_flops_per_token_ctx = per_head * (2 * arch.kv_lora_rank + arch.qk_rope_head_dim)
            self._attn_prefill_flops_per_token_ctx = per_head * (
                arch.qk_nope_head_dim + arch.qk_rope_head_dim + arch.v_head_dim)
        self._window = arch.sliding_window
        self._window_share = arch.window_layer_share
        self._bw = gpu.hbm_bandwidth_gb_per_s * 1e9
        self._gemm_peak = gemm_peak_flops(gpu, precision)
        # FP8 KV on FP8 tensor cores runs FP8 attention (FlashAttention-3, TRT-LLM FP8 FMHA).
        fp8_attn = kv_dtype == "fp8" and gpu.dense_fp8_tflops
        self._attn_peak = (gpu.dense_fp8_tflops if fp8_attn else gpu.dense_bf16_tflops) * 1e12
        self._allreduces = 2 * arch.num_hidden_layers  # after attention and after the MLP
        self._act_bytes_per_token = arch.hidden_size * 2  # bf16 activations
        # Ring all-reduce moves 2(TP-1)/TP of the buffer over one direction of each link.
        self._link_bw = gpu.interconnect_gb_per_s * 1e9 / 2 * engine.link_eff
        self._overhead_s = engine.step_overhead_ms / 1e3

    @property
    def identity(self) -> str:
        """Everything the replica's behaviour depends on (the catalog records in full): equal
        identities simulate identically."""
        return repr((self.arch, self.gpu, self.tp, self.precision, self.kv_dtype, self.engine,
                     self.gpu_memory_utilization, self.max_num_seqs, self.max_num_batched_tokens))

    # -- memory -----------------------------------------------------------------------------
    @property
    def fits(self) -> bool:
        return self.memory.fits

    def running_cap(self, context_tokens: int) -> int:
        """Sequences that can run at once: max_num_seqs, and the KV pool at this context."""
        return min(self.max_num_seqs, self.memory.max_sequences(context_tokens))

    # -- one step -----------------------------------------------------------------------------
    def _weights_read(self, tokens: float) -> float:
        """Weight bytes one step streams: all of a dense model; of an MoE model the non-expert
        weights plus the experts at least one of `tokens` tokens picks (routing taken as uniform
        and independent: 1 - (1 - k/E)^tokens of them)."""
        if not self._expert_bytes:
            return self._weight_bytes
        touched = 1.0 - (1.0 - self._expert_pick) ** max(tokens, 1.0)
        return self._weight_bytes - self._expert_bytes * (1.0 - touched)

    def _attended(self, context: float) -> float:
        """Mean KV length a layer attends to at `context`: windowed layers stop at the window."""
        if not self._window:
            return context
        return context * (1 - self._window_share) + min(context, self._window) * self._window_share

    def step(
        self,
        decode_tokens: float,
        decode_context: float,
        prefill_tokens: float = 0.0,
        prefill_context: float = 0.0,
        prefill_sequences: float = 0.0,
    ) -> StepBreakdown:
        """Time of one forward pass.

        decode_context: mean KV length each decode token attends to.
        prefill_context: mean position of a prefill token in its prompt (so it attends to
        about that many earlier tokens; n^2/2 for a whole prompt of n tokens).
        prefill_sequences: sequences finishing prefill this step (each samples a token).
        """
        d, pf = decode_tokens, prefill_tokens
        # Decode reads each sequence's whole KV; a prefill chunk reads its prompt's prefix once
        # (flash attention tiles it), not once per query token.
        chunks = max(prefill_sequences, 1.0) if pf > 0 else 0.0
        m, c, comm = self.step_formula(d, d * decode_context, pf, chunks * prefill_context, pf * prefill_context,
                                       prefill_sequences, parts=True)
        return StepBreakdown(m, c, comm, self._overhead_s, self.engine.overlap_k)

    @functools.cached_property
    def step_formula(self):
        """The step formula with this replica's constants bound: the one copy of it, fast to call.

        formula(d, decode_ctx_sum, pf, prefill_kv_tokens, prefill_attn_token_ctx, sampled_prefills,
        parts=False): decode_ctx_sum is the KV tokens the decode tokens attend to, summed;
        prefill_kv_tokens the KV tokens the prefill chunks read (one pass per chunk);
        prefill_attn_token_ctx the sum over prefill tokens of the context each attends to;
        sampled_prefills the prompts that finish prefill this step (each samples a token through
        the lm_head). Returns the step time, or (memory_s, compute_s, comm_s) with `parts`.
        Sliding-window layers attend to at most the window (applied to the mean contexts); an
        MoE step streams the experts its tokens pick (`_weights_read`); MLA prefills with K/V
        expanded per head.
        """
        e = self.engine
        bw_s_per_byte = 1.0 / (self._bw * e.bw_eff)
        dense_weights_s = self._weight_bytes * bw_s_per_byte
        moe = bool(self._expert_bytes)
        weights_read = self._weights_read
        kv_s_per_token = self._kv_bytes_per_token / (self._bw * e.kv_bw_eff)
        gemm_s_per_token = self._linear_flops_per_token / (self._gemm_peak * e.compute_eff)
        head_s_per_token = self._lm_head_flops_per_token / (self._gemm_peak * e.compute_eff)
        attn_s_per_token_ctx = self._attn_flops_per_token_ctx / (self._attn_peak * e.attn_eff)
        prefill_flops = self._attn_prefill_flops_per_token_ctx
        attn_prefill_s_per_token_ctx = (attn_s_per_token_ctx if prefill_flops is None
                                        else prefill_flops / (self._attn_peak * e.attn_eff))
        windowed, attended = bool(self._window), self._attended
        comm_fixed_s = comm_s_per_token = 0.0
        if self.tp > 1:
            comm_fixed_s = self._allreduces * e.allreduce_latency_us / 1e6
            comm_s_per_token = self._allreduces * 2 * (self.tp - 1) / self.tp * self._act_bytes_per_token / self._link_bw
        k, inv_k, overhead_s = e.overlap_k, 1.0 / e.overlap_k, self._overhead_s

        def formula(d, decode_ctx_sum, pf, prefill_kv_tokens, prefill_attn_token_ctx, sampled_prefills, parts=False):
            if windowed:
                if d:
                    decode_ctx_sum = d * attended(decode_ctx_sum / d)
                if pf and prefill_attn_token_ctx:
                    mean = prefill_attn_token_ctx / pf
                    scale = attended(mean) / mean
                    prefill_kv_tokens *= scale
                    prefill_attn_token_ctx *= scale
            weights_s = weights_read(d + pf) * bw_s_per_byte if moe else dense_weights_s
            m = weights_s + kv_s_per_token * (decode_ctx_sum + prefill_kv_tokens)
            c = (gemm_s_per_token * (d + pf) + head_s_per_token * (d + sampled_prefills)
                 + attn_s_per_token_ctx * decode_ctx_sum + attn_prefill_s_per_token_ctx * prefill_attn_token_ctx)
            comm = comm_fixed_s + comm_s_per_token * (d + pf)
            if parts:
                return m, c, comm
            return (m ** k + c ** k) ** inv_k + comm + overhead_s  # _overlap, inlined (hot path)

        return formula

    def step_s(self, *args: float, **kwargs: float) -> float:
        return self.step(*args, **kwargs).total_s

    # -- rooflines (for tests and explanations) -------------------------------------------------
    def roofline_decode_tokens_per_s(self, batch: int, context: float) -> float:
        """Upper bound on decode throughput at `batch`: bandwidth and compute at 100 %."""
        context = self._attended(context)
        bytes_step = self._weights_read(batch) + batch * context * self._kv_bytes_per_token
        mem_bound = batch / (bytes_step / self._bw)
        flops = batch * (self._linear_flops_per_token + self._lm_head_flops_per_token)
        flops += batch * context * self._attn_flops_per_token_ctx * (self._gemm_peak / self._attn_peak)
        compute_bound = batch / (flops / self._gemm_peak)
        return min(mem_bound, compute_bound)

    def roofline_output_tokens_per_s(self, input_tokens: int, output_tokens: int) -> float:
        """Upper bound on output throughput for a workload: every prompt and output token must
        pass the linear layers once at the dense peak, and every decode step must read the weights."""
        flops_per_request = (input_tokens + output_tokens) * self._linear_flops_per_token
        compute_bound = output_tokens / (flops_per_request / self._gemm_peak)
        return compute_bound
