"""The compaction plan: what a policy decided, as plain tensors that any executor can run.

The runtime runs it on SGLang's KV pool (through triton_kernels), the HF reference on its per-layer
caches. Indices are candidate indices: a layer's N video tokens (its memory plus the new chunk, in
stream order); the fixed prefix is outside this index space, so no plan can drop it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CompactionPlan:
    keep: torch.Tensor         # int64 [L, M]: candidate copied into memory slot j; ascending; -1 = summary slot
    old_pos: torch.Tensor      # int64 [L, M, A]: position the kept key carries now (A = 1 or 3)
    new_pos: torch.Tensor      # int64 [L, M, A]: position it carries after compaction; summary: its position
    fold: torch.Tensor         # int64 [L, E]: candidates folded into layer l's summary, -1 padded
    fold_pos: torch.Tensor     # int64 [L, E, A]: their positions
    has_summary: torch.Tensor  # bool [L]

    @property
    def num_layers(self) -> int:
        return self.keep.shape[0]

    @property
    def memory_size(self) -> int:
        return self.keep.shape[1]

    def carry(self, per_candidate: torch.Tensor, summary_value: int) -> torch.Tensor:
        """[L, M] a per-candidate attribute [L, N] (e.g. its chunk) for the new memory slots; the
        summary slot, made of many candidates, gets `summary_value`."""
        kept = per_candidate.gather(1, self.keep.clamp(min=0))
        return torch.where(self.keep >= 0, kept, torch.full_like(kept, summary_value))

    def rotation_delta(self) -> torch.Tensor:
        """Per kept key, the position change to rotate it by (0 for the summary slot)."""
        delta = self.new_pos - self.old_pos
        return torch.where((self.keep >= 0)[..., None], delta, torch.zeros_like(delta))

    def summary_position(self) -> torch.Tensor:
        """[L, A] the summary slot's position per layer (meaningful where has_summary)."""
        return self.new_pos[:, -1, :]

    def fold_delta(self) -> torch.Tensor:
        """[L, E, A] the rotation bringing each folded key to its layer's summary position."""
        delta = self.summary_position()[:, None, :] - self.fold_pos
        return torch.where((self.fold >= 0)[..., None], delta, torch.zeros_like(delta))

    def validate(self, num_candidates: int) -> None:
        """Raise if the plan could write a slot twice or read outside the candidates."""
        L, M = self.keep.shape
        for l in range(L):
            kept = self.keep[l][self.keep[l] >= 0]
            if kept.numel() and (kept.min() < 0 or kept.max() >= num_candidates):
                raise ValueError(f"layer {l}: kept index out of range")
            if kept.numel() > 1 and not bool((kept[1:] > kept[:-1]).all()):
                raise ValueError(f"layer {l}: kept indices must be strictly ascending")
            n_summary = int((self.keep[l] < 0).sum())
            if n_summary != int(self.has_summary[l]) or (n_summary and self.keep[l, -1] >= 0):
                raise ValueError(f"layer {l}: summary slot must be the last slot, iff has_summary")
            folded = self.fold[l][self.fold[l] >= 0]
            if folded.numel() and (folded.max() >= num_candidates or bool(torch.isin(folded, kept).any())):
                raise ValueError(f"layer {l}: folded tokens must be evicted candidates")
