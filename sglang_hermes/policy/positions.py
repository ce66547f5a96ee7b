"""Position bookkeeping (HERMES §3.5): when to re-index, and the contiguous positions to move to.

Kept keys keep their original positions (RoPE is relative, so gaps are harmless) until the stream's
clock nears the model's limit (lazy, the streaming default) or at every compression (eager). A
re-index shifts a layer's memory so it starts right after the prefix, keeping stream order.
"""

from __future__ import annotations

import torch


def needs_reindex(mode: str, next_position: int, max_position_embeddings: int, margin: int) -> bool:
    if mode == "eager":
        return True
    if mode == "lazy":
        return next_position >= max_position_embeddings - margin
    raise ValueError(f"unknown reindex mode {mode!r}")


def contiguous(old_pos: torch.Tensor, start: int) -> torch.Tensor:
    """Re-index kept positions [M, A] (stream order) to start at `start` without gaps.

    1D: start, start+1, …. M-RoPE: the temporal axis of a frame's tokens is shared and h/w spread
    within a frame, so each token moves by ONE offset for all three axes: the amount that closes
    the gap before its group of tokens (tokens with equal temporal position form a group). This
    keeps every frame's spatial layout and the order of frames.
    """
    m, a = old_pos.shape
    if m == 0:
        return old_pos.clone()
    if a == 1:
        return torch.arange(start, start + m, dtype=old_pos.dtype, device=old_pos.device)[:, None]
    t = old_pos[:, 0]
    group_start = torch.ones(m, dtype=torch.bool, device=old_pos.device)
    group_start[1:] = t[1:] != t[:-1]
    new = torch.empty_like(old_pos)
    cursor = start
    i = 0
    while i < m:
        j = i + 1
        while j < m and not group_start[j]:
            j += 1
        group = old_pos[i:j]
        shift = cursor - int(group.min())
        new[i:j] = group + shift
        cursor = int(new[i:j].max()) + 1
        i = j
    return new
