"""What each layer of a stream still holds, per chunk: the scheduler's compact answer to "which frames
does HERMES keep?" (the live page draws it as a layer x chunk heatmap).

A stream's candidates carry, per layer, the append they came from (``Stream.chunk`` [L, N]). The map
counts them: for the newest ``MAX_CHUNKS`` chunks still held anywhere, the tokens each layer holds
of each, what older chunks hold as one sum per layer, and each layer's summary tokens (HERMES' deep
layers fold what they drop into one). It is computed only when the stream
changed (appends, compressions and re-indexing change the cache key), so reading the scheduler's
state, which the API does on every turn, costs a dictionary lookup; its size is bounded by
``layers x (MAX_CHUNKS + 2)`` integers whatever the budget.
"""

from __future__ import annotations

import torch

from sglang_hermes.policy.base import SUMMARY_CHUNK

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
    summary = chunk == SUMMARY_CHUNK                # deep layers' summary tokens: made of many chunks
    ids = torch.unique(chunk[~summary])             # sorted chunk numbers held in some layer
    newest = ids[-MAX_CHUNKS:]
    counts = torch.zeros(chunk.shape[0], len(newest), dtype=torch.long)
    recent = torch.zeros_like(summary)
    if len(newest):
        recent = (chunk >= newest[0]) & ~summary
        slot = torch.searchsorted(newest, chunk).clamp(max=len(newest) - 1)  # [L, N]: column of each token
        counts.scatter_add_(1, slot, recent.long())
    out = {"chunks": newest.tolist(), "held": counts.tolist(), "older": (~recent & ~summary).sum(dim=1).tolist(),
           "summary": summary.sum(dim=1).tolist()}
    _cache[stream.session_id] = (key, out)
    return out


def prune(live) -> None:
    """Forget the maps of streams that are gone."""
    for sid in [sid for sid in _cache if sid not in live]:
        del _cache[sid]
