"""The ``hermes`` radix-cache backend.

Selected with ``--radix-cache-backend hermes`` (``hermes-serve`` does this). It builds SGLang's
default cache and records that it did, so the rest of the runtime can find the live cache; stream
memory management hooks onto this cache's streaming-session rows. SGLang calls the factory in each
scheduler once the model, the KV pool and the hooks are in place, so this is where the startup gate
refuses what only they reveal (``runtime.capabilities``).
"""

from __future__ import annotations

import logging

from sglang.srt.mem_cache.registry import TreeCacheBuildContext, default_radix_cache_factory

from sglang_hermes.runtime import capabilities

logger = logging.getLogger("sglang_hermes")

BACKEND_NAME = "hermes"

# The cache built in this (scheduler) process, for the runtime to reach the KV pool through.
active_cache = None
# The served model's config (``ModelConfig``), for snapshots to name what their KV belongs to.
model_config = None


def hermes_cache_factory(ctx: TreeCacheBuildContext):
    global active_cache, model_config
    capabilities.refuse(capabilities.engine_refusals(ctx))
    active_cache = default_radix_cache_factory(ctx)
    model_config = ctx.model_config
    logger.info("hermes cache backend active: %s", type(active_cache).__name__)
    return active_cache
