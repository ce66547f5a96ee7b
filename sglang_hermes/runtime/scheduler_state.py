"""Publishes the scheduler-side hermes state through SGLang's own ``/server_info`` internal states.

An AFTER hook on ``Scheduler.get_internal_state`` adds a ``hermes`` entry; it is the cheapest read
channel from the scheduler process to HTTP clients that SGLang already round-trips.
"""

from __future__ import annotations

import logging
import os

from sglang.srt.plugins.hook_registry import HookRegistry, HookType

logger = logging.getLogger("sglang_hermes")
TARGET = "sglang.srt.managers.scheduler.Scheduler.get_internal_state"
# Every layer's kept positions per stream: for tests and debugging (large for real budgets).
EXPOSE_POSITIONS = os.environ.get("SGLANG_HERMES_EXPOSE_POSITIONS") == "1"


def _dp_rank() -> int:
    from sglang.srt.runtime_context import get_parallel

    return get_parallel().dp_rank or 0


def hermes_state(scheduler=None) -> dict:
    from sglang_hermes import __version__
    from sglang_hermes.runtime import cache_backend, memory_map, stream_snapshot
    from sglang_hermes.runtime.stream_state import streams
    from triton_kernels import dispatch

    memory_map.prune(streams)
    cache = cache_backend.active_cache
    allocator = getattr(cache, "token_to_kv_pool_allocator", None)
    return {
        "plugin": "sglang-hermes",
        "version": __version__,
        "scheduler_pid": os.getpid(),
        "dp_rank": _dp_rank(),  # which data-parallel rank's pool and streams these are
        "cache_backend": cache_backend.BACKEND_NAME if cache is not None else None,
        "cache_class": type(cache).__name__ if cache is not None else None,
        "kv_total_slots": allocator.size if allocator is not None else None,
        # Free slots plus what the radix tree could evict: what a new stream could get.
        "kv_available_slots": allocator.available_size() + cache.evictable_size() if allocator is not None else None,
        # Which kernel path ran (triton / torch), per kernel: shows the dispatch in a live server.
        "kv_bytes_per_token": _kv_bytes_per_token(),
        "kernel_calls": {f"{name}:{path}": n for (name, path), n in dispatch.calls.items()},
        # Streams whose memory waits in host RAM (offloaded, or loaded for a restore), and its bytes.
        "parked_bytes": {sid: snap.nbytes for sid, snap in stream_snapshot.parked.items()},
        "streams": {sid: {**s.describe(with_positions=EXPOSE_POSITIONS), "turn_in_flight": _in_flight(scheduler, sid),
                          "memory_map": memory_map.memory_map(s)}
                    for sid, s in streams.items()},
    }


def _in_flight(scheduler, session_id: str) -> bool:
    """Whether SGLang still runs a turn of this stream (its streaming session's own flag): the API
    waits for it to clear before it sends a stream's next turn after one it abandoned."""
    session = getattr(getattr(scheduler, "session_controller", None), "sessions", {}).get(session_id)
    return bool(getattr(session, "_inflight", False))


def _kv_bytes_per_token() -> int | None:
    """K and V bytes of one slot over all layers: what one token a stream holds costs."""
    from sglang_hermes.runtime.stream_state import engine

    pool = getattr(engine.model_runner, "token_to_kv_pool", None)
    try:
        k, v = pool.get_kv_size_bytes()
        return int((k + v) // pool.k_buffer[0].shape[0])
    except (AttributeError, AssertionError, TypeError):
        return None


def _after_get_internal_state(result, scheduler=None, *args, **kwargs):
    try:
        result.internal_state["hermes"] = hermes_state(scheduler)
    except Exception as e:  # never let a state read take the scheduler down
        logger.exception("hermes state")
        result.internal_state["hermes"] = {"error": f"{type(e).__name__}: {e}"}
    return result


def install() -> None:
    HookRegistry.register(TARGET, _after_get_internal_state, HookType.AFTER)
