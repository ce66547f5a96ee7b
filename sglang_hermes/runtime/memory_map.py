"""What each layer of a stream still holds, per chunk: the scheduler's compact answer to "which frames
does HERMES keep?" (the live page draws it as a layer x chunk heatmap).

A stream's candidates carry, per layer, the append they came from (``Stream.chunk`` [L, N]). The map
counts them: for the newest ``MAX_CHUNKS`` chunks still held anywhere, the tokens each layer holds
of each, and what older chunks hold as one sum per layer. It is computed only when the stream
changed (appends, compressions and re-indexing change the cache key), so reading the scheduler's
state, which the API does on every turn, costs a dictionary lookup; its size is bounded by
``layers x (MAX_CHUNKS + 1)`` integers whatever the budget.
"""

from __future__ import annotations

import torch

MAX_CHUNKS = 64

_cache: dict[str, tuple[tuple, dict]] = {}


def memory_map(stream) -> dict | None:
    if stream.chunk is None:
        return None
    key = (stream.appends, stream.compressions, stream.reindexes, stream.num_candidates, id(stream.chunk))
    hit = _cache.get(stream.session_id)
    if hit is not None and hit[0] == key:
        return hit[1]
    chunk = stream.chunk
    ids = torch.unique(chunk)                       # sorted chunk numbers held in some layer
    newest = ids[-MAX_CHUNKS:]
    slot = torch.searchsorted(newest, chunk)        # [L, N]: column of each token (0 for older ones too)
    recent = chunk >= newest[0]
    counts = torch.zeros(chunk.shape[0], len(newest), dtype=torch.long)
    counts.scatter_add_(1, slot.clamp(max=len(newest) - 1), recent.long())
    out = {"chunks": newest.tolist(), "held": counts.tolist(), "older": (~recent).sum(dim=1).tolist()}
    _cache[stream.session_id] = (key, out)
    return out


def prune(live) -> None:
    """Forget the maps of streams that are gone."""
    for sid in [sid for sid in _cache if sid not in live]:
        del _cache[sid]
