"""``GET /v1/sessions/{id}/memory``: which frames' tokens each layer of a stream still holds.

HERMES keeps different tokens in different layers (shallow layers favour recent detail, deep layers
a sparse summary), which a single ``tokens_held`` cannot show. This view answers from the scheduler's
per-layer chunk counts (``runtime.memory_map``), joined with what only the API knows of each chunk:
its frames on the stream's time line and how many tokens it brought. Bounded: the newest 64 chunks
still held, older ones summed per layer; cheap enough for a page to poll every second.
"""

from __future__ import annotations

from sglang_hermes.api import service
from sglang_hermes.api.registry import SessionRecord
from sglang_hermes.runtime import engine_client

UNKNOWN_CHUNK = {"first_frame": None, "frames": None, "tokens": None}


async def memory(record: SessionRecord) -> dict:
    state = await engine_client.hermes_state(record.id)
    stream = state.get("streams", {}).get(record.id, {})
    m = stream.get("memory_map") or {"chunks": [], "held": [], "older": [], "summary": []}
    stats = await service.stats(record, state)
    return {"id": record.id, "object": "hermes.memory",
            "tokens_held": stats["tokens_held"], "tokens_seen": stats["tokens_seen"],
            "prefix_tokens": int(stream.get("prefix_len", 0)), "budget_tokens": record.cfg.budget_tokens,
            "frames": record.frames, "compressions": stats["compressions"], "layers": len(m["held"]),
            "chunks": [{"chunk": c, **record.chunk_log.get(c, UNKNOWN_CHUNK)} for c in m["chunks"]],
            "held": m["held"], "older_held": m["older"], "summary_held": m["summary"]}
