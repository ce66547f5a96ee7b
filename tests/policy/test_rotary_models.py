"""Re-rotation against each served architecture's OWN rotary module (HF transformers and SGLang 0.5.23).

The property: a key the model wrote at position p, rotated by Δ with the definition ``sglang_hermes.rotary``
reads from the model's config, equals the key the model itself writes at p + Δ (float32 tolerance), in
every layer. The oracle is the model's module (HF's rotary embedding + its ``apply_rotary_pos_emb``, or
SGLang's ``get_rope``), never ``policy.rope``. Each case also checks the test has teeth: the old single-base
contiguous definition, where it differs, misses by far more than the tolerance.

SGLang runs in a subprocess (on its CPU engine), never imported by the test process (tests/kernels/conftest.py).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sglang_hermes.policy.rope import Rope, rotate_at, rotate_by_delta
from sglang_hermes.rotary import UnsupportedRotary, rope_from_hf_config, rotary_refusal

N, HEADS = 24, 2
TOL = 2e-3  # float32 angles of positions < 3000 (the model's own rounding), |x| ~ 3
GEMMA_TYPES = ["sliding_attention"] * 5 + ["full_attention"]


def _modeling(name: str):
    return importlib.import_module(f"transformers.models.{name}.modeling_{name}")


def _positions(g, axes: int, high: int = 1500) -> torch.Tensor:
    return torch.randint(0, high, (N, axes) if axes > 1 else (N,), generator=g)


def _hf_rotate(module, apply, x: torch.Tensor, pos: torch.Tensor, **kw) -> torch.Tensor:
    """The model's key for raw x [N, H, D] at positions [N] or [N, 3], computed by HF's own modules."""
    position_ids = pos.T[:, None, :] if pos.dim() == 2 else pos[None]
    cos, sin = module(x, position_ids, **kw)
    k = x.transpose(0, 1)[None]
    _, out = apply(k, k, cos, sin)
    return out[0].transpose(0, 1)


def _gemma3_config(**kw):
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                            num_hidden_layers=6, layer_types=GEMMA_TYPES,
                            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                                             "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                                "rope_theta": 1_000_000.0}}, **kw)


def _case(name: str):
    """(config, [(layer, hf_rotate(x, pos))], axes) for one architecture / rotary variant."""
    from transformers import (LlamaConfig, LlavaOnevisionConfig, Phi3Config, Qwen2Config, Qwen3VLTextConfig,
                              SiglipVisionConfig)
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig

    if name in ("qwen2_5_vl", "qwen2_5_vl_yarn"):
        params = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
        if name.endswith("yarn"):
            params.update(rope_type="yarn", factor=4.0, original_max_position_embeddings=1024)
        cfg = Qwen2_5_VLTextConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                   num_hidden_layers=2, rope_parameters=params)
        m = _modeling("qwen2_5_vl")
        module = m.Qwen2_5_VLRotaryEmbedding(cfg)
        return cfg, [(l, lambda x, p: _hf_rotate(module, m.apply_rotary_pos_emb, x, p)) for l in range(2)], 3
    if name == "qwen3_vl":  # the released Qwen3-VL-8B's text rotary: head_dim 128, interleaved [24, 20, 20]
        cfg = Qwen3VLTextConfig(hidden_size=256, num_attention_heads=2, num_key_value_heads=1, head_dim=128,
                                num_hidden_layers=2, rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                                      "mrope_section": [24, 20, 20],
                                                                      "mrope_interleaved": True})
        m = _modeling("qwen3_vl")
        module = m.Qwen3VLTextRotaryEmbedding(cfg)
        return cfg, [(l, lambda x, p: _hf_rotate(module, m.apply_rotary_pos_emb, x, p)) for l in range(2)], 3
    if name == "gemma3":
        cfg = _gemma3_config()
        m = _modeling("gemma3")
        module = m.Gemma3RotaryEmbedding(cfg)
        return cfg, [(l, lambda x, p, t=t: _hf_rotate(module, m.apply_rotary_pos_emb, x, p, layer_type=t))
                     for l, t in enumerate(GEMMA_TYPES)], 1
    if name == "llava_onevision":  # Qwen2 language model, 1D RoPE
        text = Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6})
        cfg = LlavaOnevisionConfig(text_config=text, vision_config=SiglipVisionConfig(hidden_size=32))
        m = _modeling("qwen2")
        module = m.Qwen2RotaryEmbedding(cfg.get_text_config())
        return cfg, [(l, lambda x, p: _hf_rotate(module, m.apply_rotary_pos_emb, x, p)) for l in range(2)], 1
    if name.startswith("llama_"):
        params = {"linear": {"rope_type": "linear", "factor": 4.0},
                  "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64},
                  "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                           "beta_fast": 32.0, "beta_slow": 1.0}}[name[len("llama_"):]]
        cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                          max_position_embeddings=4096, rope_parameters={**params, "rope_theta": 10_000.0})
        m = _modeling("llama")
        module = m.LlamaRotaryEmbedding(cfg)
        return cfg, [(l, lambda x, p: _hf_rotate(module, m.apply_rotary_pos_emb, x, p)) for l in range(2)], 1
    if name == "phi3_partial":  # partial rotary: only the first half of each head rotates
        cfg = Phi3Config(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                         partial_rotary_factor=0.5, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0,
                                                                     "partial_rotary_factor": 0.5})
        m = _modeling("phi3")
        module = m.Phi3RotaryEmbedding(cfg)
        return cfg, [(l, lambda x, p: _hf_rotate(module, m.apply_rotary_pos_emb, x, p)) for l in range(2)], 1
    raise KeyError(name)


HF_CASES = ["qwen2_5_vl", "qwen2_5_vl_yarn", "qwen3_vl", "gemma3", "llava_onevision", "llama_linear", "llama_llama3",
            "llama_yarn", "phi3_partial"]


@pytest.mark.parametrize("name", HF_CASES)
def test_rotating_a_key_by_delta_equals_hf_computing_it_at_the_new_position(name):
    cfg, layers, axes = _case(name)
    rope = rope_from_hf_config(cfg)
    assert rope.axes == axes and rope.num_layers == len(layers)
    g = torch.Generator().manual_seed(len(name))
    head_dim = rope.head_dim
    for layer, hf in layers:
        x = torch.randn(N, HEADS, head_dim, generator=g)
        p, delta = _positions(g, axes), _positions(g, axes, 1500) - 700
        stored = hf(x, p)
        want = hf(x, p + delta)
        moved = rotate_by_delta(stored.double(), delta, rope, layer)
        err = (moved - want.double()).abs().max().item()
        assert err < TOL, f"{name} layer {layer}: |rotate(k_p, Δ) - k_(p+Δ)| = {err:.2e}"
        # and the from-scratch oracle of policy.rope (attention factor included) agrees with the model
        assert (rotate_at(x.double(), p, rope, layer) - stored.double()).abs().max().item() < TOL


def test_the_old_single_base_definition_misses_gemma3_sliding_layers():
    """The bug this fixes: Gemma 3's sliding layers re-rotated with the global base (and scaling)."""
    cfg, layers, _ = _case("gemma3")
    rope = rope_from_hf_config(cfg)
    assert not torch.equal(rope.inv_freq[0], rope.inv_freq[5])  # sliding vs global layer
    wrong = Rope.uniform(16, 1e6, num_layers=6)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, HEADS, 16, generator=g)
    p, delta = _positions(g, 1), _positions(g, 1) - 700
    hf = layers[0][1]
    err = (rotate_by_delta(hf(x, p).double(), delta, wrong, 0) - hf(x, p + delta).double()).abs().max().item()
    assert err > 100 * TOL


def test_interleaved_axes_are_qwen3_vl_s():
    """Frequencies cycle t, h, w while h and w have some left (HF's Qwen3-VL ``recomposition_frequencies``)."""
    cfg, _, _ = _case("qwen3_vl")
    axis = rope_from_hf_config(cfg).axis.tolist()
    assert axis[:9] == [0, 1, 2] * 3 and axis[57:] == [0, 1, 2, 0, 0, 0, 0]
    assert [axis.count(a) for a in range(3)] == [24, 20, 20]


@pytest.mark.parametrize("params, words", [
    ({"rope_type": "dynamic", "factor": 2.0}, "RoPE scaling 'dynamic'"),
    ({"rope_type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8,
      "original_max_position_embeddings": 1024}, "RoPE scaling 'longrope'"),
    ({"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved_glm": True}, "GLM interleaving"),
])
def test_sequence_dependent_and_unknown_variants_are_refused(params, words):
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=4096,
                      rope_parameters={**params, "rope_theta": 10_000.0})
    with pytest.raises(UnsupportedRotary, match=words):
        rope_from_hf_config(cfg)
    assert "supported:" in rotary_refusal(cfg)


def test_an_unknown_rope_type_is_refused():
    from types import SimpleNamespace

    text = SimpleNamespace(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=64,
                           rope_parameters={"rope_type": "proportional", "rope_theta": 1e4})
    assert "RoPE type 'proportional'" in rotary_refusal(text)


# -- SGLang's own rotary modules ------------------------------------------------------------------------------

SGLANG_CASES = {  # name: (head_dim, base, rope_scaling, partial factor, config the rotary is read from)
    "default_1d": (64, 1e6, None, 1.0, {"rope_type": "default"}),
    "linear": (16, 1e6, {"rope_type": "linear", "factor": 8.0}, 1.0, None),
    "llama3": (64, 5e5, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64}, 1.0, None),
    "yarn": (64, 1e4, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}, 1.0, None),
    "partial": (64, 1e4, None, 0.5, {"rope_type": "default"}),
    "mrope_sectioned": (16, 1e6, {"rope_type": "default", "mrope_section": [2, 3, 3]}, 1.0, None),
    "mrope_interleaved": (128, 5e6, {"rope_type": "default", "mrope_section": [24, 20, 20],
                                     "mrope_interleaved": True}, 1.0, None),
    "mrope_yarn": (16, 1e6, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024,
                             "mrope_section": [2, 3, 3]}, 1.0, None),
}


def _config_for(head_dim: int, base: float, scaling, partial: float, params):
    from types import SimpleNamespace

    rope = {**(params or scaling), "rope_theta": base}
    if partial != 1.0:
        rope["partial_rotary_factor"] = partial
    return SimpleNamespace(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim, num_hidden_layers=1,
                           max_position_embeddings=4096, rope_parameters=rope)


def sglang_errors() -> dict[str, tuple[float, float]]:
    """Per case: (max |rotate(k_p, Δ) - k_(p+Δ)|, max |rotate_at(x, p) - k_p|) against SGLang's ``get_rope``
    module. Runs in a subprocess on SGLang's CPU engine (the switch is read when SGLang is imported)."""
    from sglang.srt.layers.rotary_embedding import get_rope

    g = torch.Generator().manual_seed(7)
    errors = {}
    for name, (head_dim, base, scaling, partial, params) in SGLANG_CASES.items():
        module = get_rope(head_dim, head_dim, 4096, base, True, scaling, torch.float32, partial_rotary_factor=partial)
        rope = rope_from_hf_config(_config_for(head_dim, base, scaling, partial, params))
        axes = rope.axes

        def sglang_key(x, pos):
            positions = pos.T.contiguous() if pos.dim() == 2 else pos
            _, k = module.forward_native(positions, x.reshape(N, -1).clone(), x.reshape(N, -1).clone())
            return k.reshape(N, HEADS, head_dim)

        x = torch.randn(N, HEADS, head_dim, generator=g)
        # SGLang's cos/sin cache covers [0, max_position): YaRN's here is 256 · 4 positions long
        p, delta = _positions(g, axes, 200) + 300, _positions(g, axes, 600) - 300
        stored, want = sglang_key(x, p), sglang_key(x, p + delta)
        moved = (rotate_by_delta(stored.double(), delta, rope, 0) - want.double()).abs().max().item()
        fresh = (rotate_at(x.double(), p, rope, 0) - stored.double()).abs().max().item()
        errors[f"{name} ({type(module).__name__})"] = (moved, fresh)
    return errors


def test_rotating_a_key_by_delta_equals_sglang_computing_it_at_the_new_position():
    script = ("import json; from tests.policy.test_rotary_models import sglang_errors; "
              "print('ERRORS', json.dumps(sglang_errors()))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=600,
                         env={**os.environ, "SGLANG_USE_CPU_ENGINE": "1",
                              "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])})
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERRORS ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    errors = json.loads(lines[-1][len("ERRORS "):])
    assert len(errors) == len(SGLANG_CASES)
    for name, (moved, fresh) in errors.items():
        assert moved < TOL and fresh < TOL, f"{name}: re-rotated {moved:.2e}, from scratch {fresh:.2e}"
