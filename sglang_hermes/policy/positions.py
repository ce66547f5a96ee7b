"""Position bookkeeping (HERMES §3.5): when to re-index, and the contiguous positions to move to.

Kept keys keep their original positions (RoPE is relative, so gaps are harmless) until the stream's
clock nears the model's limit (lazy, the streaming default) or at every compression (eager). A
re-index shifts a layer's memory so it starts right after the prefix, keeping stream order and each
chunk's own layout.
"""

from __future__ import annotations

import torch


def needs_reindex(mode: str, next_position: int, max_position_embeddings: int, margin: int) -> bool:
    if mode == "eager":
        return True
    if mode == "lazy":
        return next_position >= max_position_embeddings - margin
    raise ValueError(f"unknown reindex mode {mode!r}")


def contiguous(old_pos: torch.Tensor, chunk: torch.Tensor, start: int) -> torch.Tensor:
    """Re-index kept positions [M, A] (stream order) to start at `start`, closing the gaps between chunks.

    1D: start, start+1, … (order is a 1D chunk's only geometry). M-RoPE: every token of one chunk
    (chunk [M]: the append each token came from) moves by ONE offset on all three axes, the amount
    that puts the chunk's smallest position (over its tokens and axes) right after the previous
    chunk's largest. A chunk keeps its native geometry: in Qwen2.5-VL's layout the frames of a chunk
    share h/w and differ in t, so moving frames on their own would pull apart the same patch in
    consecutive frames and spread the chunk over more positions than it had. Gaps that evictions
    left inside a chunk stay; a memory without evictions is shifted uniformly, chunk by chunk.
    """
    m, a = old_pos.shape
    if m == 0:
        return old_pos.clone()
    if a == 1:
        return torch.arange(start, start + m, dtype=old_pos.dtype, device=old_pos.device)[:, None]
    # Vectorised (this runs per layer on the scheduler thread): group k starts where the groups before
    # it end, cursor_k = start + sum_{j<k} (max_j - min_j + 1), and all its tokens move by cursor_k - min_k.
    group_start = torch.ones(m, dtype=torch.bool, device=old_pos.device)
    group_start[1:] = chunk[1:] != chunk[:-1]
    gid = torch.cumsum(group_start.to(torch.int64), 0) - 1
    groups = int(gid[-1]) + 1
    row_min, row_max = old_pos.min(dim=1).values, old_pos.max(dim=1).values
    gmin = torch.full((groups,), torch.iinfo(old_pos.dtype).max, dtype=old_pos.dtype, device=old_pos.device)
    gmax = torch.full((groups,), torch.iinfo(old_pos.dtype).min, dtype=old_pos.dtype, device=old_pos.device)
    gmin = gmin.scatter_reduce(0, gid, row_min, "amin")
    gmax = gmax.scatter_reduce(0, gid, row_max, "amax")
    span = gmax - gmin + 1
    cursor = start + torch.cumsum(span, 0) - span
    return old_pos + (cursor - gmin)[gid][:, None]
