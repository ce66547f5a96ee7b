"""Registers every hermes extension with SGLang by name: the cache backend, hooks and HTTP routes.

Kept in one place so it is obvious what we change in the engine, and so nothing else in SGLang
needs to import us.
"""

from __future__ import annotations

import multiprocessing
import os

from sglang.srt.mem_cache.registry import (
    get_radix_cache_factory,
    register_radix_cache_backend,
)

from sglang_hermes.runtime.cache_backend import BACKEND_NAME, hermes_cache_factory

_done = False


def process_pid() -> int:
    return os.getpid()


def process_role() -> str:
    """'main' for the HTTP/tokenizer process, else the child process name SGLang gave it."""
    return "main" if multiprocessing.parent_process() is None else multiprocessing.current_process().name


def register_all() -> None:
    global _done
    if _done:
        return
    if get_radix_cache_factory(BACKEND_NAME) is None:
        register_radix_cache_backend(BACKEND_NAME, hermes_cache_factory)
    from sglang_hermes.runtime import clock, scheduler_commands, scheduler_state, score_capture, stream_rows

    scheduler_state.install()
    scheduler_commands.install()  # after: its AROUND hook wraps the state hook
    stream_rows.install()
    clock.install()
    score_capture.install()
    if process_role() == "main":
        from sglang_hermes.runtime import graceful_exit, http_routes, video_times

        http_routes.install()
        video_times.install()  # SGLang's tokenizer processes media in this process
        graceful_exit.install()
    _done = True
