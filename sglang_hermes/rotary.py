"""A model's rotary definition, per layer, read from its HF config: what re-rotating a stored key needs.

Re-rotation (the summary token on every compression, every kept key on re-indexing) is exact only if
it turns each key with the very frequencies the model used to write it. Those differ by model and by
layer, so they are read here once, the same way for the HF reference and the runtime, and handed to
``policy.rope`` as a :class:`~sglang_hermes.policy.rope.Rope`:

- per layer base and scaling: a config may give one ``rope_parameters`` dict per attention type
  (transformers 5: Gemma 3 ``{"sliding_attention": …, "full_attention": …}``) with ``layer_types``
  saying which layer is which; Gemma 3's sliding layers rotate with base ``rope_local_base_freq``
  (10,000 in the released models) and its global ones with ``rope_theta`` and the config's scaling;
- M-RoPE: ``mrope_section`` with ``mrope_interleaved`` (Qwen3-VL, whose HF code always interleaves) or
  contiguous sections (Qwen2.5-VL);
- partial rotary (``partial_rotary_factor``): only the first dims of a head rotate;
- scaling: ``linear``, ``llama3`` and ``yarn`` only change the frequencies (YaRN also scales cos/sin by
  an attention factor that is already inside a stored key). They are computed here in float32 as HF and
  SGLang compute them, so a re-rotated key lands where the model would have put it.

Refused (:class:`UnsupportedRotary`, turned into a startup refusal by ``runtime.capabilities``):
``dynamic`` and ``longrope`` change the frequencies with the sequence length (HF recomputes them as a
sequence grows past the original length; SGLang fixes them once), so a stored key's rotation is not a
function of its position alone and no re-rotation is exact; every other or unknown ``rope_type``;
M-RoPE variants other than sectioned/interleaved (GLM's interleaving, Bailing's video RoPE); keys whose
pairs are not neox rotate-half (``rope_is_neox_style: false``).
"""

from __future__ import annotations

import math

import torch

from sglang_hermes.policy.rope import Rope, axis_of_frequency, default_inv_freq

SUPPORTED_SCALING = ("default", "linear", "llama3", "yarn")
_SEQUENCE_DEPENDENT = ("dynamic", "longrope")
_INTERLEAVED_BY_CODE = ("qwen3_vl_text", "qwen3_vl_moe_text")  # HF's Qwen3-VL interleaves without the flag


class UnsupportedRotary(ValueError):
    """A rotary variant keys cannot be re-rotated for exactly; the message says what is supported."""


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def rope_from_hf_config(config) -> Rope:
    """The model's :class:`Rope` (every layer), or :class:`UnsupportedRotary` with the reason."""
    text = text_config(config)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    layers = [_layer_parameters(text, l) for l in range(text.num_hidden_layers)]
    if not getattr(text, "rope_is_neox_style", True):
        raise UnsupportedRotary("RoPE with GPT-J style (interleaved pair) keys: the kernels rotate neox "
                                f"rotate-half pairs; supported: {_SUPPORTED}")
    partial = {float(p.get("partial_rotary_factor", getattr(text, "partial_rotary_factor", None) or 1.0))
               for p in layers}
    rotary_dims = {int(head_dim * f) for f in partial}
    mrope = {_mrope_key(text, p) for p in layers}
    if len(rotary_dims) != 1 or len(mrope) != 1:
        raise UnsupportedRotary("layers with different rotary dims or M-RoPE layouts; supported: one layout "
                                "for every layer")
    rotary_dim, (section, interleaved) = rotary_dims.pop(), mrope.pop()
    if rotary_dim % 2 or rotary_dim <= 0:
        raise UnsupportedRotary(f"rotary dim {rotary_dim} (head_dim {head_dim} × partial factor): needs an even "
                                f"number of rotated dims; supported: {_SUPPORTED}")
    axis = axis_of_frequency(rotary_dim // 2, section, interleaved)
    freqs, scaling = zip(*(_frequencies(p, rotary_dim, text) for p in layers))
    return Rope(torch.stack(freqs), axis, 3 if section is not None else 1, head_dim,
                torch.tensor(scaling, dtype=torch.float64))


def rotary_refusal(config) -> str | None:
    """Why the model's RoPE cannot be re-rotated exactly (one line), or None when it can."""
    try:
        rope_from_hf_config(config)
    except UnsupportedRotary as e:
        return str(e)
    return None


_SUPPORTED = ("RoPE or M-RoPE (sectioned or Qwen3-VL interleaved), per-layer bases, partial rotary, "
              f"scaling {'/'.join(SUPPORTED_SCALING)}")


def _layer_parameters(text, layer: int) -> dict:
    """This layer's RoPE parameters as one flat dict with ``rope_type`` and ``rope_theta``."""
    params = getattr(text, "rope_parameters", None)
    if params is None:  # transformers 4 style
        params = dict(getattr(text, "rope_scaling", None) or {})
        params.setdefault("rope_theta", getattr(text, "rope_theta", 10000.0))
    layer_types = getattr(text, "layer_types", None)
    if isinstance(params, dict) and layer_types and layer_types[layer] in params:
        params = params[layer_types[layer]]
    elif layer_types and layer_types[layer] == "sliding_attention" and hasattr(text, "rope_local_base_freq"):
        params = {"rope_type": "default", "rope_theta": text.rope_local_base_freq}  # Gemma 3, flat config
    if any(isinstance(v, dict) for v in params.values()):
        raise UnsupportedRotary(f"per-attention-type RoPE parameters {sorted(params)} without a matching "
                                f"`layer_types`; supported: {_SUPPORTED}")
    params = dict(params)
    kind = params.get("rope_type", params.get("type")) or "default"
    params["rope_type"] = "default" if kind == "mrope" else kind  # Qwen2-VL's legacy name for sectioned M-RoPE
    if "rope_theta" not in params:
        params["rope_theta"] = getattr(text, "rope_theta", 10000.0)
    return params


def _mrope_key(text, params: dict) -> tuple[tuple[int, ...] | None, bool]:
    if params.get("mrope_interleaved_glm") or params.get("video_rope"):
        raise UnsupportedRotary("an M-RoPE variant other than sectioned or Qwen3-VL interleaved "
                                f"(GLM interleaving or video RoPE); supported: {_SUPPORTED}")
    section = params.get("mrope_section")
    if not section:
        return None, False
    interleaved = bool(params.get("mrope_interleaved") or getattr(text, "mrope_interleaved", False)
                       or getattr(text, "model_type", "") in _INTERLEAVED_BY_CODE)
    return tuple(int(s) for s in section), interleaved


def _frequencies(params: dict, dim: int, text) -> tuple[torch.Tensor, float]:
    """(θ [dim/2] float64, attention factor) of one layer, computed in float32 like the model does."""
    kind, base = params["rope_type"], float(params["rope_theta"])
    if kind in _SEQUENCE_DEPENDENT:
        raise UnsupportedRotary(f"RoPE scaling {kind!r}: its frequencies change with the sequence length, so a "
                                f"stored key cannot be re-rotated exactly; supported: {_SUPPORTED}")
    if kind not in SUPPORTED_SCALING:
        raise UnsupportedRotary(f"RoPE type {kind!r}: compaction does not know its frequencies; supported: "
                                f"{_SUPPORTED}")
    plain = default_inv_freq(dim, base).to(torch.float32)
    if kind == "default":
        return plain.to(torch.float64), 1.0
    factor = float(params["factor"])
    if kind == "linear":
        return (plain / factor).to(torch.float64), 1.0
    if kind == "llama3":
        return _llama3(plain, params, factor).to(torch.float64), 1.0
    return _yarn(params, dim, base, factor, text)


def _llama3(plain: torch.Tensor, params: dict, factor: float) -> torch.Tensor:
    """Llama 3.1: long wavelengths divided by the factor, short ones kept, a smooth blend in between."""
    context = float(params["original_max_position_embeddings"])
    low, high = float(params.get("low_freq_factor", 1.0)), float(params.get("high_freq_factor", 4.0))
    wavelength = 2 * math.pi / plain
    blend = ((context / wavelength - low) / (high - low)).clamp(0, 1)
    blended = (1 - blend) * plain / factor + blend * plain
    return torch.where(wavelength > context / low, plain / factor,
                       torch.where(wavelength < context / high, plain, blended))


def _yarn(params: dict, dim: int, base: float, factor: float, text) -> tuple[torch.Tensor, float]:
    """YaRN: per frequency a ramp between the interpolated (θ/factor) and the original θ, plus the
    attention factor 0.1·ln(factor)+1 (or the config's own) on cos/sin."""
    original = float(params.get("original_max_position_embeddings") or text.max_position_embeddings)
    fast, slow = float(params.get("beta_fast") or 32), float(params.get("beta_slow") or 1)

    def dim_of(rotations: float) -> float:  # the dimension whose wavelength fits `rotations` times in `original`
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = dim_of(fast), dim_of(slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    wavelengths = base ** (torch.arange(0, dim, 2).to(torch.float32) / dim)
    keep_original = 1 - ramp
    freqs = (1.0 / (factor * wavelengths)) * (1 - keep_original) + (1.0 / wavelengths) * keep_original
    attention = params.get("attention_factor")
    if attention is None:
        def mscale(m: float) -> float:
            return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention = mscale(float(m)) / mscale(float(m_all)) if m and m_all else mscale(1.0)
    return freqs.to(torch.float64), float(attention)
