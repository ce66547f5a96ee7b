"""HERMES (arXiv 2601.14724): per-layer tiers, recency/attention mixing, deep-to-shallow smoothing,
and one summary token per deep layer for everything it evicts."""

from __future__ import annotations

import torch

from sglang_hermes.policy.base import Policy, StreamView, register_policy
from sglang_hermes.policy.scores import mix
from sglang_hermes.policy.smoothing import smooth
from sglang_hermes.policy.tiers import Tier, layer_params


@register_policy("hermes")
class HermesPolicy(Policy):
    uses_attention = True

    def scores(self, view: StreamView) -> torch.Tensor:
        p = layer_params(view.num_layers, self.cfg)
        return smooth(mix(view.attention, p.a, p.k), p.lam)

    def summary_layers(self, num_layers: int) -> torch.Tensor:
        if not self.cfg.summary_token:
            return torch.zeros(num_layers, dtype=torch.bool)
        return torch.tensor([t is Tier.DEEP for t in layer_params(num_layers, self.cfg).tiers])
