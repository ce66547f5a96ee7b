"""Per-architecture tier constants: the authors' LLaVA-OneVision code mixes middle layers differently
from their Qwen code (a = 1 - 0.9p, k = 20 - 19.5p vs a = 0.75 - 0.6p, k = 20 - 12p)."""

from __future__ import annotations

import torch

from sglang_hermes.config import HermesConfig, TierMixing
from sglang_hermes.policy.tiers import Tier, layer_params, tier_bounds


def middle_p(num_layers: int, cfg: HermesConfig) -> torch.Tensor:
    s, d = tier_bounds(num_layers, cfg.shallow_ratio, cfg.deep_ratio)
    return (torch.arange(num_layers, dtype=torch.float64) - s) / (d - s)


def test_llava_onevision_middle_layers_follow_the_authors_llava_constants():
    cfg = HermesConfig.for_architecture("llava_onevision")
    params = layer_params(28, cfg)
    middle = torch.tensor([t is Tier.MIDDLE for t in params.tiers])
    p = middle_p(28, cfg)[middle]
    assert torch.allclose(params.a[middle], 1 - 0.9 * p) and torch.allclose(params.k[middle], 20 - 19.5 * p)


def test_qwen_keeps_the_paper_constants_and_a_client_setting_wins():
    for model_type in ("qwen2_5_vl", "gemma3", "qwen3_vl"):
        assert HermesConfig.for_architecture(model_type) == HermesConfig()
    cfg = HermesConfig()
    params = layer_params(28, cfg)
    middle = torch.tensor([t is Tier.MIDDLE for t in params.tiers])
    p = middle_p(28, cfg)[middle]
    assert torch.allclose(params.a[middle], 0.75 - 0.6 * p) and torch.allclose(params.k[middle], 20 - 12 * p)
    mine = TierMixing(a=0.5, k=1.0, smoothing=0.3)
    assert HermesConfig.for_architecture("llava_onevision", middle_end=mine).middle_end == mine
