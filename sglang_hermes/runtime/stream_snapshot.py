"""A stream's memory out of the KV pool and back: snapshot files, and idle streams parked in host RAM.

Scheduler side. The HTTP process asks for it over SGLang's own control channel
(``runtime.scheduler_commands``); the file format is ``sglang_hermes.snapshots.format``'s.

What a stream's next turn depends on is saved whole: every layer's keys and values of its memory
(the row after the prefix), its clock, each kept token's positions per layer, summary flags, chunk
ids, counters and config. The prefix is not saved as KV: it is the system prompt, prefilled again by
the restoring stream's opening turn (and its token ids are checked against the saved ones).

Restoring is two turns on a fresh streaming session, so that SGLang does all of its own bookkeeping:
the usual opening turn (prefix), then a prefill-only ``restore`` turn of ``memory_len`` filler ids
(the same neutral ids ``stream_rows`` gives a compacted memory) whose slots are then overwritten with
the saved keys and values, and whose stream state is replaced by the saved one. Only that second
turn's slots are written: the prefix may be shared with other requests through the radix tree, the
memory slots are the session's own (checked). Its prefill is wasted work (one forward over the
memory); writing the row without it would mean allocating slots behind SGLang's back.

Parked snapshots (loaded from a file, or an offloaded stream's memory) wait here, keyed by the
stream id, until the restore turn takes them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from sglang_hermes import __version__
from sglang_hermes.config import HermesConfig
from sglang_hermes.runtime import cache_backend
from sglang_hermes.runtime.stream_state import Stream
from sglang_hermes.snapshots import format as snapfmt

logger = logging.getLogger("sglang_hermes")

STREAM_FIELDS = ("prefix_len", "clock", "appends", "asks", "compressions", "reindexes", "tokens_seen")


@dataclass
class Parked:
    header: dict
    tensors: dict[str, torch.Tensor]

    @property
    def memory_len(self) -> int:
        return int(self.header["stream"]["memory_len"])

    @property
    def prefix_len(self) -> int:
        return int(self.header["stream"]["prefix_len"])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


parked: dict[str, Parked] = {}


class SnapshotRefused(ValueError):
    """A snapshot that cannot be taken or loaded now; ``status`` is the HTTP status it means."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _pool():
    cache = cache_backend.active_cache
    return cache.token_to_kv_pool_allocator.get_kvcache(), cache.req_to_token_pool.req_to_token


def _layers(pool) -> range:
    start = getattr(pool, "start_layer", 0) or 0
    return range(start, start + len(pool.k_buffer))


def identity() -> dict:
    """What a snapshot must have been written by to load here: model, KV dtype and layout, plugin."""
    from sglang.srt.runtime_context import get_serving

    pool, _ = _pool()
    hf = cache_backend.model_config.hf_config if cache_backend.model_config is not None else None
    return {"model": get_serving().served_model_name, "dtype": str(pool.dtype).removeprefix("torch."),
            "layout": {"layers": len(pool.k_buffer), "kv_heads": int(pool.head_num), "head_dim": int(pool.head_dim),
                       "kv_layout": "nhd", "model_type": getattr(hf, "model_type", None)},
            "plugin_version": __version__}


def capture(scheduler, stream: Stream, record: dict) -> Parked:
    """The stream's memory and state, copied off the pool (it stays in the pool)."""
    session = scheduler.session_controller.sessions.get(stream.session_id)
    store = cache_backend.active_cache.session
    slot = store.slots.get(stream.session_id)
    if session is None or slot is None or not session.req_nodes:
        raise SnapshotRefused(f"stream {stream.session_id} has no row to snapshot")
    if getattr(session, "_inflight", False):
        raise SnapshotRefused(f"stream {stream.session_id} is running a turn; snapshot it between turns")
    pool, req_to_token = _pool()
    n_mem, p = stream.memory_len, stream.prefix_len
    row = req_to_token[slot.kv.req_pool_idx, p:n_mem].to(torch.int64)
    [node] = session.req_nodes.values()
    prefix_ids = torch.tensor(list(node.req.origin_input_ids[:p]), dtype=torch.int64)
    tensors = {"prefix_ids": prefix_ids}
    if n_mem > p:
        tensors["k"] = torch.stack([pool.get_key_buffer(l)[row] for l in _layers(pool)]).cpu()
        tensors["v"] = torch.stack([pool.get_value_buffer(l)[row] for l in _layers(pool)]).cpu()
        tensors["positions"] = stream.positions.clone()
        tensors["is_summary"] = stream.is_summary.clone()
        tensors["chunk"] = stream.chunk.clone()
    state = {f: int(getattr(stream, f)) for f in STREAM_FIELDS}
    if stream.pending is not None:  # an aborted passes append left its chunk: the stream is as before it
        state["clock"] = int(stream.pending.clock_before)
    state["memory_len"] = n_mem
    header = {**identity(), "session_id": stream.session_id, "created": time.time(),
              "config": stream.cfg.model_dump(mode="json", by_alias=True), "stream": state, "record": record}
    return Parked(header, tensors)


def save(scheduler, stream: Stream, path: str | None, record: dict) -> dict:
    """Snapshot a stream to ``path``, or park it in host RAM (``path`` None: an idle stream's offload)."""
    t0 = time.perf_counter()
    snap = capture(scheduler, stream, record)
    if path is None:
        parked[stream.session_id] = snap
        size = snap.nbytes
    else:
        size = snapfmt.save(path, snap.header, snap.tensors)
    return {"bytes": size, "ms": (time.perf_counter() - t0) * 1e3, "memory_len": snap.memory_len,
            "kv_tokens": snap.memory_len - snap.prefix_len}


def save_parked(session_id: str, path: str, record: dict) -> dict:
    """Write an offloaded stream's parked memory to a snapshot file (it stays parked)."""
    t0 = time.perf_counter()
    snap = parked[session_id]
    size = snapfmt.save(path, {**snap.header, "record": record}, snap.tensors)
    return {"bytes": size, "ms": (time.perf_counter() - t0) * 1e3, "memory_len": snap.memory_len,
            "kv_tokens": snap.memory_len - snap.prefix_len}


def load(session_id: str, path: str | None) -> dict:
    """Park a snapshot file for stream ``session_id`` (``path`` None: it is already parked, offloaded);
    returns its header, which the HTTP process restores the stream from."""
    t0 = time.perf_counter()
    if path is not None:
        try:
            header, tensors = snapfmt.load(path, identity())
        except snapfmt.SnapshotError as e:
            raise SnapshotRefused(str(e), status=422) from None
        parked[session_id] = Parked(header, tensors)
    snap = parked.get(session_id)
    if snap is None:
        raise SnapshotRefused(f"stream {session_id} has no parked memory", status=404)
    ids = snap.tensors["prefix_ids"]
    filler = int(ids[-1]) if len(ids) else 0
    return {"header": snap.header, "filler_id": filler, "kv_tokens": snap.memory_len - snap.prefix_len,
            "ms": (time.perf_counter() - t0) * 1e3}


def drop(session_id: str) -> bool:
    return parked.pop(session_id, None) is not None


def check_restore_turn(stream: Stream, req, new_len: int) -> Parked:
    """The restore turn may run: a freshly opened stream, its parked snapshot, the same prefix."""
    snap = parked.get(stream.session_id)
    if snap is None:
        raise SnapshotRefused(f"no snapshot is parked for stream {stream.session_id}")
    if stream.num_candidates or stream.appends or stream.pending is not None:
        raise SnapshotRefused("a restore turn must follow the opening turn directly")
    if stream.prefix_len != snap.prefix_len or \
            list(req.origin_input_ids[:stream.prefix_len]) != snap.tensors["prefix_ids"].tolist():
        raise SnapshotRefused("the restoring stream's prefix (system prompt) is not the snapshot's", status=422)
    if new_len != snap.memory_len - snap.prefix_len:
        raise SnapshotRefused(f"the restore turn carries {new_len} tokens, the snapshot "
                              f"{snap.memory_len - snap.prefix_len}", status=400)
    if HermesConfig.model_validate(snap.header["config"]) != stream.cfg:
        raise SnapshotRefused("the restoring stream was opened with another config than the snapshot's", status=422)
    return snap


def write_row(stream: Stream, slot) -> None:
    """Finish a restore turn: its slots get the saved keys and values, the stream the saved state."""
    snap = parked[stream.session_id]
    p, n_mem = snap.prefix_len, snap.memory_len
    if slot.kv.cache_protected_len > p:  # never write slots the radix tree shares with other requests
        raise RuntimeError(f"the restore turn's slots are shared with the prefix cache "
                           f"({slot.kv.cache_protected_len} > {p})")
    pool, req_to_token = _pool()
    if n_mem > p:
        row = req_to_token[slot.kv.req_pool_idx, p:n_mem].to(torch.int64)
        k, v = snap.tensors["k"], snap.tensors["v"]
        for i, layer in enumerate(_layers(pool)):
            dst_k, dst_v = pool.get_key_buffer(layer), pool.get_value_buffer(layer)
            dst_k[row.to(dst_k.device)] = k[i].to(dst_k.device, dst_k.dtype)
            dst_v[row.to(dst_v.device)] = v[i].to(dst_v.device, dst_v.dtype)
        stream.positions = snap.tensors["positions"].clone()
        stream.is_summary = snap.tensors["is_summary"].clone()
        stream.chunk = snap.tensors["chunk"].clone()
    for f in STREAM_FIELDS:
        setattr(stream, f, int(snap.header["stream"][f]))
    stream.media_pending = stream.answer_pending = False
    parked.pop(stream.session_id, None)
    logger.info("hermes stream %s: restored %d memory tokens", stream.session_id, n_mem - p)
