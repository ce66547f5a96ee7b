"""Layer roles (HERMES §3.1): shallow = sensory, middle = working, deep = long-term memory."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from sglang_hermes.config import HermesConfig


class Tier(str, Enum):
    SHALLOW = "shallow"
    MIDDLE = "middle"
    DEEP = "deep"


def tier_bounds(num_layers: int, shallow_ratio: float, deep_ratio: float) -> tuple[int, int]:
    """(shallow_end, deep_start): shallow is l < int(0.1·L), deep is l >= int(0.7·L)."""
    shallow_end = int(round(shallow_ratio * num_layers, 9))
    deep_start = int(round((1.0 - deep_ratio) * num_layers, 9))
    return shallow_end, max(deep_start, shallow_end)


def layer_tiers(num_layers: int, cfg: HermesConfig) -> list[Tier]:
    shallow_end, deep_start = tier_bounds(num_layers, cfg.shallow_ratio, cfg.deep_ratio)
    return [Tier.SHALLOW if l < shallow_end else Tier.DEEP if l >= deep_start else Tier.MIDDLE
            for l in range(num_layers)]


@dataclass(frozen=True)
class LayerParams:
    """Per-layer mixing weight a, recency decay k and smoothing λ, each a float64 [L] tensor."""

    a: torch.Tensor
    k: torch.Tensor
    lam: torch.Tensor
    tiers: tuple[Tier, ...]


def layer_params(num_layers: int, cfg: HermesConfig) -> LayerParams:
    shallow_end, deep_start = tier_bounds(num_layers, cfg.shallow_ratio, cfg.deep_ratio)
    tiers = layer_tiers(num_layers, cfg)
    a, k, lam = [], [], []
    for l, tier in enumerate(tiers):
        if tier is Tier.SHALLOW:
            mix = (cfg.shallow.a, cfg.shallow.k, cfg.shallow.smoothing)
        elif tier is Tier.DEEP:
            mix = (cfg.deep.a, cfg.deep.k, cfg.deep.smoothing)
        else:
            p = (l - shallow_end) / (deep_start - shallow_end)
            s, e = cfg.middle_start, cfg.middle_end
            mix = (s.a + (e.a - s.a) * p, s.k + (e.k - s.k) * p, s.smoothing + (e.smoothing - s.smoothing) * p)
        a.append(mix[0]), k.append(mix[1]), lam.append(mix[2])
    f64 = dict(dtype=torch.float64)
    return LayerParams(torch.tensor(a, **f64), torch.tensor(k, **f64), torch.tensor(lam, **f64), tuple(tiers))
