"""Runs a policy's plan on SGLang's KV pool, inside the stream's own row.

A plan speaks in candidate indices (the row's slots after the prefix, in stream order); here they
become pool slots through ``req_to_token``, and ``triton_kernels.dispatch.compact`` moves every
layer's kept keys/values into the first M memory slots of the row in one launch (re-rotating keys
whose position changes and folding the evicted ones into the summary slot). The row's slots stay
the row's: only their contents change, and the tail is freed afterwards by the caller.

On GPU the kernel is enqueued on the model runner's forward stream, so it is ordered after the
stream's last forward and before any forward that could reuse the freed tail slots.
"""

from __future__ import annotations

import contextlib

import torch

from sglang_hermes.policy import CompactionPlan
from sglang_hermes.runtime.stream_state import engine
from triton_kernels import dispatch


def _on_forward_stream(model_runner):
    stream = getattr(model_runner, "forward_stream", None)
    if stream is not None and torch.cuda.is_available() and str(model_runner.device).startswith("cuda"):
        return torch.cuda.stream(stream)
    return contextlib.nullcontext()


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
    with _on_forward_stream(runner):
        dispatch.compact([pool.get_key_buffer(l) for l in layers], [pool.get_value_buffer(l) for l in layers],
                         src, dst, plan.rotation_delta().to(device), fold_slots, plan.fold_delta().to(device),
                         rope_theta=facts.rope_theta,
                         mrope_section=list(facts.mrope_section) if facts.mrope_section else None)
