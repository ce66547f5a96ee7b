"""Runs a policy's plan on SGLang's KV pool, inside the stream's own row.

A plan speaks in candidate indices (the row's slots after the prefix, in stream order); here they
become pool slots through ``req_to_token``, and ``triton_kernels.dispatch.compact`` moves every
layer's kept keys/values into the first M memory slots of the row in one launch (re-rotating keys
whose position changes and folding the evicted ones into the summary slot). The row's slots stay
the row's: only their contents change, and the tail is freed afterwards by the caller.

Stream ordering (GPU). Compaction runs on the stream current when the turn ends: the scheduler's
own stream (``Scheduler.schedule_stream``, the event loop runs under it), the stream the slot-index
tensors below are built on. That is the stream every later forward is ordered after:
- overlap on (the default): each forward is launched with ``forward_stream.wait_stream(schedule_stream)``
  (``Scheduler.run_batch``), so a later forward, the first that could be handed the freed tail slots,
  starts after compaction has read them; the index tensors are used on the stream that allocated them,
  so the caching allocator cannot hand their memory to the next batch's preparation while the kernel is
  queued (no ``record_stream`` needed);
- overlap off (also forced by pipeline parallelism): forwards run on the scheduler's stream itself.
The forward that wrote the stream's KV has finished before the turn ends: results are processed after
``copy_done.synchronize()`` and the copy stream waits on the forward stream. Enqueueing on the model
runner's forward stream instead (as before) was ordered with neither the index tensors nor, with overlap
off, the next forward.
"""

from __future__ import annotations

import torch

from sglang_hermes.policy import CompactionPlan
from sglang_hermes.runtime.stream_state import engine
from triton_kernels import dispatch


def compact_row(plan: CompactionPlan, req_pool_idx: int, prefix_len: int, num_candidates: int) -> None:
    runner = engine.model_runner
    facts = engine.facts
    pool = runner.token_to_kv_pool
    row = runner.req_to_token_pool.req_to_token[req_pool_idx]
    cand = row[prefix_len:prefix_len + num_candidates].to(torch.int64)
    device = cand.device
    keep = plan.keep.to(device)
    src = torch.where(keep >= 0, cand[keep.clamp(min=0)], torch.full_like(keep, -1))
    dst = cand[: plan.memory_size]
    fold = plan.fold.to(device)
    fold_slots = torch.where(fold >= 0, cand[fold.clamp(min=0)], torch.full_like(fold, -1)) if fold.numel() else fold
    layers = range(facts.num_layers)
    dispatch.compact([pool.get_key_buffer(l) for l in layers], [pool.get_value_buffer(l) for l in layers],
                     src, dst, plan.rotation_delta().to(device), fold_slots, plan.fold_delta().to(device),
                     **facts.rope.kernel_args(device))
