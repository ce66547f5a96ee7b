"""HERMES with a recent window: the newest W tokens whole in every layer, HERMES for everything older.

HERMES keeps the current chunk only partly in middle and deep layers (their recency weight is low or
zero), which costs perception of what is on screen right now, where a recent-window cache (fifo) is
strong. This hybrid gives the newest W tokens of the stream a place in every layer, so the current
scene is seen in full, and lets HERMES' hierarchy (tiers, mixing, smoothing, the deep layers'
summary token) choose among the older tokens with the rest of the budget M. W = 0 is HERMES.

"Newest" is stream order: in every layer the candidates are the memory then the new chunk, so the
last W non-summary candidates are the same W stream tokens in every layer (by induction: they were
kept everywhere at the last compression). The older part is scored by HERMES on its own, as if the
window were not there: its recency, min-max normalisation and smoothing run over the older tokens.
"""

from __future__ import annotations

import torch

from sglang_hermes.policy.base import Policy, StreamView, register_policy
from sglang_hermes.policy.hermes import HermesPolicy


def newest_tokens(is_summary: torch.Tensor, window: int) -> torch.Tensor:
    """bool [L, N]: each layer's last `window` candidates that are not a summary token."""
    real = ~is_summary
    from_end = real.flip(1).cumsum(1).flip(1)  # real candidates at or after each index
    return real & (from_end <= window)


def select(view: StreamView, idx: torch.Tensor) -> StreamView:
    """The candidates idx [L, K] of every layer, as a view of their own."""
    return StreamView(view.attention.gather(1, idx),
                      view.positions.gather(1, idx[..., None].expand(-1, -1, view.positions.shape[-1])),
                      view.is_summary.gather(1, idx), view.chunk.gather(1, idx), view.memory_start)


@register_policy("recent_hermes")
class RecentHermesPolicy(Policy):
    uses_attention = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.hermes = HermesPolicy(cfg)

    def scores(self, view: StreamView) -> torch.Tensor:
        recent = newest_tokens(view.is_summary, self.cfg.recent_window)
        L, N = recent.shape
        older = (~recent).nonzero()[:, 1].view(L, -1)  # the same count in every layer, ascending
        out = torch.full((L, N), torch.inf, dtype=torch.float64)  # the window outranks every older token
        return out.scatter(1, older, self.hermes.scores(select(view, older)))

    def summary_layers(self, num_layers: int) -> torch.Tensor:
        return self.hermes.summary_layers(num_layers)
