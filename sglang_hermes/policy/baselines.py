"""Baselines behind the same interface, so one server can A/B them per stream."""

from __future__ import annotations

import torch

from sglang_hermes.policy.base import Policy, StreamView, register_policy
from sglang_hermes.policy.hermes import HermesPolicy


def _age_order(view: StreamView) -> torch.Tensor:
    """Newer candidates score higher (candidates are in stream order)."""
    return torch.arange(view.num_candidates, dtype=torch.float64).expand(view.num_layers, -1)


@register_policy("full")
class FullPolicy(Policy):
    """Never compress: what SGLang's streaming sessions give today."""

    compresses = False


@register_policy("fifo")
class FifoPolicy(Policy):
    """Keep the newest M (vLLM's bounded video sessions)."""

    def scores(self, view: StreamView) -> torch.Tensor:
        return _age_order(view)


@register_policy("sink_window")
class SinkWindowPolicy(Policy):
    """Keep the first S tokens (attention sinks) and the newest M-S (StreamingLLM / StreamingVLM)."""

    def scores(self, view: StreamView) -> torch.Tensor:
        s = _age_order(view).clone()
        s[:, : self.cfg.sink_tokens] += view.num_candidates  # sinks outrank every window token
        return s


@register_policy("uniform")
class UniformPolicy(Policy):
    """HERMES scores averaged over layers: one shared keep-set, no tiers, no summary."""

    def scores(self, view: StreamView) -> torch.Tensor:
        s = HermesPolicy(self.cfg).scores(view).mean(0, keepdim=True)
        return s.expand(view.num_layers, -1)
