"""Model architectures: the ModelArch a sizing works on, and the Hugging Face `config.json` reader.

A config.json is read the way transformers and vLLM read it, or refused with an error naming the
field. What is modelled (infra/core/sizing/memory.py and perf.py use it):

* mixture of experts (Mixtral `num_local_experts`, DeepSeek `n_routed_experts`, Qwen-MoE
  `num_experts`): every expert's weights are held in memory; a token runs through
  `num_experts_per_tok` routed experts plus any shared expert;
* multi-head latent attention (DeepSeek-V2/V3 `kv_lora_rank`): the KV cache holds one latent
  (`kv_lora_rank + qk_rope_head_dim` values) per token and layer, the same on every TP rank;
* sliding-window attention (`sliding_window`, with `layer_types`, `sliding_window_pattern`, or a
  model type whose layers all slide): a windowed layer keeps only the last window of KV.

Layouts vLLM handles in ways this model cannot mirror (MoE only on some layers, Qwen2's
`max_window_layers`, chunked attention) are refused rather than read as dense.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.core.errors import InputError
from infra.core.files import read_json_file

# transformers' default of `tie_word_embeddings` per `model_type`, for a config.json that omits
# the key. `PretrainedConfig.__init__` defaults it to True; these config classes pass False:
# LlamaConfig (configuration_llama.py), MistralConfig (configuration_mistral.py), MixtralConfig
# (configuration_mixtral.py), Qwen2Config / Qwen2MoeConfig / Qwen3Config / Qwen3MoeConfig
# (configuration_qwen2.py, _qwen2_moe.py, _qwen3.py, _qwen3_moe.py), DeepseekV2Config /
# DeepseekV3Config (configuration_deepseek_v2.py, _v3.py), Phi3Config (configuration_phi3.py),
# GraniteConfig (configuration_granite.py), Olmo2Config (configuration_olmo2.py) and
# GptOssConfig (configuration_gpt_oss.py). GemmaConfig, Gemma2Config, Gemma3TextConfig and
# CohereConfig pass True, like the base class. Recorded from transformers 4.5x as known here (no
# network access to re-check): a model type not listed gets the base default, True.
TIE_WORD_EMBEDDINGS_BASE_DEFAULT = True
TIE_WORD_EMBEDDINGS_DEFAULT: dict[str, bool] = {
    "llama": False,
    "mistral": False,
    "mixtral": False,
    "qwen2": False,
    "qwen2_moe": False,
    "qwen3": False,
    "qwen3_moe": False,
    "deepseek_v2": False,
    "deepseek_v3": False,
    "phi3": False,
    "granite": False,
    "olmo2": False,
    "gpt_oss": False,
    "gemma": True,
    "gemma2": True,
    "gemma3_text": True,
    "cohere": True,
}

# Model types whose every layer uses `sliding_window` when it is set (transformers' Mistral,
# Mixtral, Phi-3 and Starcoder2 attention pass it to every layer) and Gemma 2's alternation
# (`is_sliding = not layer_idx % 2`): the layer pattern when config.json has no `layer_types`.
ALL_LAYERS_SLIDE = ("mistral", "mixtral", "phi3", "starcoder2")
EVEN_LAYERS_SLIDE = ("gemma2",)
LAYER_TYPES = ("full_attention", "sliding_attention")

_HF_REQUIRED = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)
# First key present wins: the name each family gives the routed-expert count.
_EXPERT_COUNT_KEYS = ("num_local_experts", "n_routed_experts", "num_experts")
_MLA_DIMS = ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


@dataclass(frozen=True)
class ModelArch:
    """A decoder-only transformer, in Hugging Face config.json terms (0 = feature absent)."""

    key: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    hf_id: str = ""
    model_type: str = ""
    # Mixture of experts: `num_experts` routed experts per MoE layer, `experts_per_token` run per
    # token, each of `moe_intermediate_size` (plus always-on shared experts); the first
    # `dense_layers` layers have a dense MLP of `intermediate_size` instead.
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    dense_layers: int = 0
    # Multi-head latent attention (DeepSeek-V2/V3).
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Sliding-window attention: `sliding_window_layers` of the layers attend to the last
    # `sliding_window` tokens only.
    sliding_window: int = 0
    sliding_window_layers: int = 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        return self.num_hidden_layers - self.dense_layers if self.is_moe else 0

    @property
    def window_layer_share(self) -> float:
        """Share of the layers (and of the KV bytes per token) that attend through the window."""
        return self.sliding_window_layers / self.num_hidden_layers if self.sliding_window else 0.0


def _positive_int(cfg: dict, key: str, where: str, path: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{where}.{key}", value, f"a positive integer in {path}")
    return value


def _unsupported(where: str, key: str, value: Any, supported: str) -> InputError:
    return InputError(f"{where}.{key}", value, f"supported: {supported}")


def _moe_fields(cfg: dict, where: str, path: str) -> dict[str, int]:
    key = next((k for k in _EXPERT_COUNT_KEYS if cfg.get(k) not in (None, 0, 1)), None)
    if key is None:
        return {}
    experts = _positive_int(cfg, key, where, path)
    per_token = _positive_int(cfg, "num_experts_per_tok", where, path)
    if per_token > experts:
        raise InputError(f"{where}.num_experts_per_tok", per_token, f"at most {key} = {experts}")
    # MoE on every layer (after DeepSeek's leading dense ones) is what the memory and step models
    # count; interleaved layouts are refused rather than over- or under-counted.
    for layout, every in (("moe_layer_freq", 1), ("decoder_sparse_step", 1), ("interleave_moe_layer_step", 1),
                          ("expert_layer_period", 1)):
        if cfg.get(layout) not in (None, every):
            raise _unsupported(where, layout, cfg[layout], f"{every} (mixture of experts on every layer)")
    if cfg.get("mlp_only_layers"):
        raise _unsupported(where, "mlp_only_layers", cfg["mlp_only_layers"], "[] (mixture of experts on every layer)")
    expert_size = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
    shared = (cfg.get("n_shared_experts") or 0) * expert_size + (cfg.get("shared_expert_intermediate_size") or 0)
    dense = cfg.get("first_k_dense_replace") or 0
    if not isinstance(dense, int) or not 0 <= dense < cfg["num_hidden_layers"]:
        raise InputError(f"{where}.first_k_dense_replace", dense, "0 to num_hidden_layers - 1")
    return {
        "num_experts": experts, "experts_per_token": per_token, "moe_intermediate_size": int(expert_size),
        "shared_expert_intermediate_size": int(shared), "dense_layers": dense,
    }


def _mla_fields(cfg: dict, where: str, path: str) -> dict[str, int]:
    if not cfg.get("kv_lora_rank"):
        return {}
    dims = {k: _positive_int(cfg, k, where, path) for k in ("kv_lora_rank", *_MLA_DIMS)}
    q_rank = cfg.get("q_lora_rank") or 0  # None: q is projected directly (DeepSeek-V2-Lite)
    return {**dims, "q_lora_rank": int(q_rank), "head_dim": dims["qk_nope_head_dim"] + dims["qk_rope_head_dim"]}


def _window_fields(cfg: dict, where: str, path: str) -> dict[str, int]:
    window = cfg.get("sliding_window")
    # vLLM's ModelConfig.get_hf_config_sliding_window: `use_sliding_window: false` (Qwen2) means none.
    if cfg.get("use_sliding_window") is False or window in (None, 0):
        return {}
    window = _positive_int(cfg, "sliding_window", where, path)
    layers = cfg["num_hidden_layers"]
    model_type = str(cfg.get("model_type") or "")
    layer_types = cfg.get("layer_types")
    supported = (f"layer_types of {' / '.join(LAYER_TYPES)}, sliding_window_pattern, or model_type "
                 f"{', '.join(ALL_LAYERS_SLIDE + EVEN_LAYERS_SLIDE)}")
    if isinstance(layer_types, list):
        bad = [t for t in layer_types if t not in LAYER_TYPES]
        if bad or len(layer_types) != layers:
            raise _unsupported(where, "layer_types", bad[0] if bad else len(layer_types),
                               f"{layers} entries, each {' or '.join(LAYER_TYPES)}")
        sliding = sum(t == "sliding_attention" for t in layer_types)
    elif isinstance(cfg.get("sliding_window_pattern"), int) and cfg["sliding_window_pattern"] > 0:
        sliding = layers - layers // cfg["sliding_window_pattern"]  # every pattern-th layer is global (Gemma 3)
    elif "max_window_layers" in cfg:
        raise _unsupported(where, "use_sliding_window", True,
                           "false (a window on only the layers past max_window_layers is not modelled)")
    elif model_type in ALL_LAYERS_SLIDE:
        sliding = layers
    elif model_type in EVEN_LAYERS_SLIDE:
        sliding = math.ceil(layers / 2)
    else:
        raise _unsupported(where, "sliding_window", window, f"{supported}; the layer pattern of {model_type or 'this model'} is unknown")
    return {"sliding_window": window, "sliding_window_layers": sliding} if sliding else {}


def tie_word_embeddings_default(model_type: str) -> bool:
    """What transformers assumes when config.json omits `tie_word_embeddings`."""
    return TIE_WORD_EMBEDDINGS_DEFAULT.get(model_type, TIE_WORD_EMBEDDINGS_BASE_DEFAULT)


def model_from_hf_config(path: str, field_name: str = "model") -> ModelArch:
    """Read a Hugging Face `config.json` (its real field names) into a ModelArch."""
    p = Path(path)
    cfg = read_json_file(p, field_name, "Hugging Face config.json (or a catalog model key)")
    if not isinstance(cfg, dict):
        raise InputError(field_name, path, "a JSON object with Hugging Face config fields")
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers nest the language model
        cfg = {**cfg, **cfg["text_config"]}
    missing = [k for k in _HF_REQUIRED if not isinstance(cfg.get(k), int) or cfg.get(k) <= 0]
    if missing:
        raise InputError(
            f"{field_name}.{missing[0]}",
            cfg.get(missing[0]),
            f"a positive integer in {path} (required: {', '.join(_HF_REQUIRED)})",
        )
    if cfg.get("attention_chunk_size"):  # Llama 4's chunked local attention
        raise _unsupported(field_name, "attention_chunk_size", cfg["attention_chunk_size"],
                           "null (chunked attention is not modelled)")
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    model_type = str(cfg.get("model_type") or "")
    tie = cfg.get("tie_word_embeddings")
    fields: dict[str, Any] = dict(
        key=cfg.get("_name_or_path") or (p.stem if p.stem != "config" else p.parent.name or p.stem),
        num_hidden_layers=cfg["num_hidden_layers"],
        hidden_size=cfg["hidden_size"],
        num_attention_heads=heads,
        num_key_value_heads=int(kv_heads),
        head_dim=int(head_dim),
        intermediate_size=cfg["intermediate_size"],
        vocab_size=cfg["vocab_size"],
        max_position_embeddings=int(cfg.get("max_position_embeddings") or 4096),
        tie_word_embeddings=tie_word_embeddings_default(model_type) if tie is None else bool(tie),
        hf_id=str(cfg.get("_name_or_path", "")),
        model_type=model_type,
    )
    fields.update(_moe_fields(cfg, field_name, path))
    fields.update(_mla_fields(cfg, field_name, path))
    fields.update(_window_fields(cfg, field_name, path))
    return ModelArch(**fields)
