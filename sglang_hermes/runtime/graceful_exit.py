"""Work that must run when the server is asked to stop (SIGTERM), before SGLang stops its schedulers.

SGLang's tokenizer manager turns SIGTERM into a flag that its ``sigterm_watchdog`` task polls; once set,
the watchdog drains requests and shuts the schedulers down. An AROUND hook on that watchdog waits for
the flag itself, runs the registered callbacks (the session API snapshots every open stream: it needs
the schedulers alive), then lets SGLang's watchdog go on as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("sglang_hermes")
TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager.sigterm_watchdog"
POLL_SECONDS = 0.1

_callbacks: list[Callable[[], Awaitable[None]]] = []


def on_graceful_exit(callback: Callable[[], Awaitable[None]]) -> None:
    if callback not in _callbacks:
        _callbacks.append(callback)


async def _around_watchdog(original, tokenizer_manager, *args, **kwargs):
    while not tokenizer_manager.gracefully_exit:
        await asyncio.sleep(POLL_SECONDS)
    for callback in _callbacks:
        try:
            await callback()
        except Exception:
            logger.exception("hermes: work before shutdown failed")
    return await original(tokenizer_manager, *args, **kwargs)


def install() -> None:
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    HookRegistry.register(TARGET, _around_watchdog, HookType.AROUND)
