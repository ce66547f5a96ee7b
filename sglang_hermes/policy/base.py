"""A policy turns per-layer scores into a :class:`CompactionPlan`; subclasses only score.

Mirrors kvpress: each method is a small class around one scoring function, and this base does the
selection, summary folding and position bookkeeping that every method shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.policy.plan import CompactionPlan
from sglang_hermes.policy.positions import contiguous


SUMMARY_CHUNK = -1  # the chunk id of a summary token: it is made of many chunks' tokens


@dataclass(frozen=True)
class StreamView:
    """What a policy sees of a stream at compression time; every layer holds N candidates."""

    attention: torch.Tensor   # float [L, N]: guidance attention mass per candidate (tier-appropriate prompt)
    positions: torch.Tensor   # int64 [L, N, A]: position each candidate's key carries
    is_summary: torch.Tensor  # bool [L, N]: the candidate is an earlier summary token
    chunk: torch.Tensor       # int64 [L, N]: the append a candidate came from (re-indexing moves chunks whole);
                              # SUMMARY_CHUNK for a summary token
    memory_start: int = 0     # first position of the memory region (right after the prefix), for re-indexing

    @property
    def num_layers(self) -> int:
        return self.attention.shape[0]

    @property
    def num_candidates(self) -> int:
        return self.attention.shape[1]


_REGISTRY: dict[str, type["Policy"]] = {}


def register_policy(name: str):
    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def registered_policies() -> list[str]:
    return sorted(_REGISTRY)


def get_policy(cfg: HermesConfig) -> "Policy":
    # Importing the modules fills the registry.
    from sglang_hermes.policy import baselines, hermes, recent_hermes  # noqa: F401

    return _REGISTRY[cfg.policy](cfg)


class Policy:
    name = "base"
    compresses = True
    uses_attention = False  # whether scores() reads StreamView.attention (then appends carry guidance)

    def __init__(self, cfg: HermesConfig):
        self.cfg = cfg

    def scores(self, view: StreamView) -> torch.Tensor:
        """[L, N] importance, higher = keep."""
        raise NotImplementedError

    def summary_layers(self, num_layers: int) -> torch.Tensor:
        """bool [L]: layers that keep M-1 tokens and fold the rest into one summary token."""
        return torch.zeros(num_layers, dtype=torch.bool)

    def plan(self, view: StreamView, *, reindex: bool = False) -> CompactionPlan | None:
        """None when no layer holds more than the budget (compression only runs over budget)."""
        budget = self.cfg.budget_tokens
        L, N = view.num_layers, view.num_candidates
        if not self.compresses or N <= budget:
            return None
        scores = self.scores(view).to(torch.float64)
        summary = self.summary_layers(L)
        A = view.positions.shape[-1]
        keep = torch.empty(L, budget, dtype=torch.long)
        new_pos = torch.empty(L, budget, A, dtype=torch.long)
        old_pos = torch.zeros(L, budget, A, dtype=torch.long)
        folds = []
        for l in range(L):
            eligible = ~view.is_summary[l] if summary[l] else torch.ones(N, dtype=torch.bool)
            n_keep = budget - int(summary[l])
            ranked = _rank(scores[l], eligible)
            kept = ranked[:n_keep].sort().values
            pos = view.positions[l, kept]
            moved = contiguous(pos, view.chunk[l, kept], view.memory_start) if reindex else pos
            keep[l, :n_keep], old_pos[l, :n_keep], new_pos[l, :n_keep] = kept, pos, moved
            if summary[l]:
                keep[l, -1] = -1
                new_pos[l, -1] = (int(moved.max()) + 1) if n_keep else view.memory_start
                evicted = torch.ones(N, dtype=torch.bool)
                evicted[kept] = False
                folds.append(evicted.nonzero().flatten())
            else:
                folds.append(torch.empty(0, dtype=torch.long))
        E = max((f.numel() for f in folds), default=0)
        fold = torch.full((L, E), -1, dtype=torch.long)
        fold_pos = torch.zeros(L, E, A, dtype=torch.long)
        for l, f in enumerate(folds):
            fold[l, : f.numel()] = f
            fold_pos[l, : f.numel()] = view.positions[l, f]
        return CompactionPlan(keep, old_pos, new_pos, fold, fold_pos, summary.clone())


def _rank(scores: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """Eligible candidate indices by descending score; ties go to the newer token."""
    idx = eligible.nonzero().flatten()
    order = torch.argsort(scores[idx].flip(0), descending=True, stable=True)
    return idx.flip(0)[order]
