"""Guidance attention read from inside the forward that carries the prompts: the append's own (mode
``block``) or each score turn's (mode ``passes``), so scoring needs no forward of its own.

An AFTER hook on ``RadixAttention.forward`` (backend-independent: it runs after whichever backend,
torch-native on CPU or FlashInfer/FA3/Triton on GPU, has written this forward's K/V into the pool)
takes the guidance rows' post-RoPE queries and scores them against the stream's cached tokens with
``triton_kernels.dispatch.attention_mass`` (Triton on CUDA, torch on CPU). A layer's result is the
mean over each prompt's queries and the heads of the softmax over the stream's slots (prefix +
candidates); the candidate columns are accumulated into the turn, per layer and prompt.

Forwards without a stream append return after one dict check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

from sglang_hermes.layout import GUIDANCE_ORDER
from sglang_hermes.runtime import turn_faults
from sglang_hermes.runtime.stream_state import Turn, engine
from triton_kernels import dispatch

TARGET = "sglang.srt.layers.radix_attention.RadixAttention.forward"
NUM_PROMPTS = len(GUIDANCE_ORDER)


@dataclass
class Capture:
    turn: Turn
    req: object             # the SGLang request of the turn (aborted if scoring fails)
    q_index: torch.Tensor   # int64 [g]: this forward's token rows holding guidance queries
    seg: torch.Tensor       # int32 [g]: their prompt
    weight: torch.Tensor    # float32 [S]: share of each prompt's queries present in this forward
    slots: torch.Tensor     # int64 [P + N]: the stream's cached tokens (softmax support)
    prefix_len: int

    def score(self, layer, q: torch.Tensor) -> None:
        heads = layer.tp_q_head_num
        qg = q.reshape(q.shape[0], heads, -1).index_select(0, self.q_index)
        keys = engine.model_runner.token_to_kv_pool.get_key_buffer(layer.layer_id)
        mass = dispatch.attention_mass(qg, keys, self.slots, self.seg, NUM_PROMPTS, layer.scaling)
        self.turn.mass[layer.layer_id] += mass[:, self.prefix_len:] * self.weight[:, None]


def for_rows(turn: Turn, req, rows: torch.Tensor, offset: int, model_runner) -> Capture | None:
    """The capture for the guidance rows among `rows` (one request's part of a forward), if any."""
    if turn.guidance is None:
        return None
    g_idx = rows - (turn.start_len + turn.chunk_len)
    sel = g_idx >= 0
    if not bool(sel.any()):
        return None
    device = model_runner.device
    seg = turn.guidance[g_idx[sel]]
    present = torch.bincount(seg, minlength=NUM_PROMPTS).float()
    total = torch.bincount(turn.guidance, minlength=NUM_PROMPTS).clamp(min=1).float()
    stream_len = turn.start_len + turn.chunk_len
    slots = model_runner.req_to_token_pool.req_to_token[req.kv.req_pool_idx, :stream_len].to(torch.int64)
    if turn.mass is None:
        turn.mass = torch.zeros(engine.facts.num_layers, NUM_PROMPTS, stream_len - turn.stream.prefix_len,
                                dtype=torch.float32, device=device)
    q_index = torch.nonzero(sel).flatten() + offset
    return Capture(turn, req, q_index.to(device), seg.to(torch.int32).to(device), (present / total).to(device),
                   slots, turn.stream.prefix_len)


# Captures of the forwards about to run, by the batch's request ids. Keyed rather than attached to
# the ForwardBatch: the object the model layers receive is not always the one init_new returned.
pending: dict[tuple[str, ...], list[Capture]] = {}


def expect(rids, captures: list[Capture]) -> None:
    if captures:
        pending[tuple(rids)] = captures


def _after_attention(out, layer, q=None, k=None, v=None, forward_batch=None, *args, **kwargs):
    if not pending or q is None or forward_batch is None or forward_batch.rids is None:
        return out
    key = tuple(forward_batch.rids)
    captures = pending.get(key)
    if captures is None:
        return out
    t0 = time.perf_counter()
    for cap in list(captures):
        with turn_faults.contained("score", cap.req):
            turn_faults.inject("score", cap.req)
            cap.score(layer, q)
        if cap.req.to_finish is not None:  # failed (here or before): an aborted turn needs no scores
            captures.remove(cap)
    spent = (time.perf_counter() - t0) * 1e3  # host time: exact on CPU, launch time on GPU
    for cap in captures:
        cap.turn.score_ms += spent / len(captures)
    if layer.layer_id == engine.facts.num_layers - 1 or not captures:
        del pending[key]
    return out


def install() -> None:
    HookRegistry.register(TARGET, _after_attention, HookType.AFTER)
