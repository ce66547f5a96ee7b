"""Execute a compaction plan on every layer's KV buffer in ONE launch (HERMES §3.4 + §3.5).

For layer l, memory slot j receives the K/V of pool slot src[l, j], its key re-rotated by
rot_delta[l, j] with layer l's own frequencies (``rope_math``: per-layer bases, M-RoPE axes, partial rotary); a slot with src = -1 (the last one, deep layers) receives the summary token: the
mean of the layer's folded keys, each re-rotated to the summary position, and the mean of their values.

Overlap: memory is compacted inside the stream's own row, so sources and destinations overlap. We
ORDER the copies instead of staging through scratch (which would cost another L·M·H·D·2 bytes of
memory and traffic): each program owns one (layer, kv head) and walks memory slots in increasing j,
a block of BJ at a time, loading the whole block before storing it. A plan's kept candidates are
ascending and candidate c sits in row slot P+c, so src of slot j is row slot P+keep[j] with
keep[j] >= j: a source is only ever overwritten by a destination at or after its own slot, i.e.
after it was read. The summary reads the folded tokens first, before any store, and is written last.
Precondition (checked by tests, guaranteed by the policy's plans): for j' < j, src[j'] != dst[j]
unless j' and j are in the same block.

"Loaded before stored" must hold across the threads of a program, not only in program order: a
block's rows are spread over warps that run independently, so without a barrier one warp could
store dst[j] (of this block, or of a later block) before another warp has loaded it as src[j'].
Hence a ``tl.debug_barrier()`` (a CTA-wide ``__syncthreads``) after each block's loads and before its
stores. By induction over blocks, every thread's loads of blocks 0..b (and of the summary's folded
tokens, which precede the first block) happen before any thread's store of block b, and the summary's
store comes after the last block's barrier; so every read sees the value from before compaction, which
is what the precondition needs. The interpreter (TRITON_INTERPRET) runs a program's rows in lockstep
and cannot show this race; the barrier makes it impossible by construction.

Per-layer buffers are separate tensors in SGLang, so the kernel takes device tables of their base
pointers: the launch count does not depend on the number of layers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from triton_kernels.rope_math import cos_sin, load_deltas, load_rope, pair_offsets, rope_tables

BLOCK_TOKENS = 16


@triton.jit
def _compact_kernel(k_tab, v_tab, src_ptr, dst_ptr, rot_ptr, fold_ptr, fold_delta_ptr, freq_ptr, axis_ptr, M, E,
                    stride_slot, stride_head,
                    BJ: tl.constexpr, HALF: tl.constexpr, ROT_HALF: tl.constexpr, A: tl.constexpr,
                    DTYPE: tl.constexpr):
    layer = tl.program_id(0)
    head = tl.program_id(1)
    k_base = tl.load(k_tab + layer).to(tl.pointer_type(DTYPE))
    v_base = tl.load(v_tab + layer).to(tl.pointer_type(DTYPE))
    lo, hi = pair_offsets(HALF, ROT_HALF)
    inv_freq, axis = load_rope(freq_ptr + layer * ROT_HALF, axis_ptr, HALF, ROT_HALF)
    head_off = head * stride_head

    # 1. The summary token (if this layer has one) from the folded tokens, before any store.
    has_summary = tl.load(src_ptr + layer * M + M - 1) < 0
    sk1 = tl.zeros([HALF], dtype=tl.float32)
    sk2 = tl.zeros([HALF], dtype=tl.float32)
    sv1 = tl.zeros([HALF], dtype=tl.float32)
    sv2 = tl.zeros([HALF], dtype=tl.float32)
    count = 0.0
    if has_summary:
        for e0 in range(0, E, BJ):
            rows = e0 + tl.arange(0, BJ)
            inb = rows < E
            slot = tl.load(fold_ptr + layer * E + rows, mask=inb, other=-1).to(tl.int64)
            valid = slot >= 0
            m2 = valid[:, None]
            off = slot[:, None] * stride_slot + head_off
            x1 = tl.load(k_base + off + lo[None, :], mask=m2, other=0.0).to(tl.float32)
            x2 = tl.load(k_base + off + hi[None, :], mask=m2, other=0.0).to(tl.float32)
            d0, d1, d2 = load_deltas(fold_delta_ptr + layer * E * A, rows, inb, A)
            cos, sin = cos_sin(d0, d1, d2, inv_freq, axis)
            sk1 += tl.sum(tl.where(m2, x1 * cos - x2 * sin, 0.0), axis=0)
            sk2 += tl.sum(tl.where(m2, x2 * cos + x1 * sin, 0.0), axis=0)
            sv1 += tl.sum(tl.load(v_base + off + lo[None, :], mask=m2, other=0.0).to(tl.float32), axis=0)
            sv2 += tl.sum(tl.load(v_base + off + hi[None, :], mask=m2, other=0.0).to(tl.float32), axis=0)
            count += tl.sum(valid.to(tl.float32), axis=0)

    # 2. Kept tokens, in increasing memory slot order (see the module docstring).
    for j0 in range(0, M, BJ):
        rows = j0 + tl.arange(0, BJ)
        inb = rows < M
        src = tl.load(src_ptr + layer * M + rows, mask=inb, other=-1).to(tl.int64)
        dst = tl.load(dst_ptr + rows, mask=inb, other=0).to(tl.int64)
        valid = src >= 0
        m2 = valid[:, None]
        s_off = src[:, None] * stride_slot + head_off
        x1 = tl.load(k_base + s_off + lo[None, :], mask=m2, other=0.0).to(tl.float32)
        x2 = tl.load(k_base + s_off + hi[None, :], mask=m2, other=0.0).to(tl.float32)
        v1 = tl.load(v_base + s_off + lo[None, :], mask=m2, other=0.0)
        v2 = tl.load(v_base + s_off + hi[None, :], mask=m2, other=0.0)
        d0, d1, d2 = load_deltas(rot_ptr + layer * M * A, rows, inb, A)
        cos, sin = cos_sin(d0, d1, d2, inv_freq, axis)
        d_off = dst[:, None] * stride_slot + head_off
        tl.debug_barrier()  # every thread's loads so far before any thread's store (module docstring)
        tl.store(k_base + d_off + lo[None, :], (x1 * cos - x2 * sin).to(DTYPE), mask=m2)
        tl.store(k_base + d_off + hi[None, :], (x2 * cos + x1 * sin).to(DTYPE), mask=m2)
        tl.store(v_base + d_off + lo[None, :], v1, mask=m2)
        tl.store(v_base + d_off + hi[None, :], v2, mask=m2)

    # 3. The summary goes into the last memory slot.
    if has_summary:
        inv = 1.0 / tl.maximum(count, 1.0)
        d_last = tl.load(dst_ptr + M - 1).to(tl.int64) * stride_slot + head_off
        tl.store(k_base + d_last + lo, (sk1 * inv).to(DTYPE))
        tl.store(k_base + d_last + hi, (sk2 * inv).to(DTYPE))
        tl.store(v_base + d_last + lo, (sv1 * inv).to(DTYPE))
        tl.store(v_base + d_last + hi, (sv2 * inv).to(DTYPE))


_TL_DTYPE = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def _check(k_buffers, v_buffers, src_slots, dst_slots, rot_delta, fold_slots, fold_delta):
    L, M = src_slots.shape
    if len(k_buffers) != L or len(v_buffers) != L:
        raise ValueError(f"{len(k_buffers)} K / {len(v_buffers)} V buffers for a plan of {L} layers")
    ref = k_buffers[0]
    for b in (*k_buffers, *v_buffers):
        if b.shape != ref.shape or b.stride() != ref.stride() or b.dtype != ref.dtype or b.device != ref.device:
            raise ValueError("all K/V buffers must share shape, strides, dtype and device")
    if dst_slots.shape != (M,) or rot_delta.shape[:2] != (L, M) or fold_slots.shape[0] != L:
        raise ValueError("plan tensors disagree on L / M")
    if fold_delta.shape[:2] != fold_slots.shape:
        raise ValueError("fold_delta must be [L, E, A]")


def compact_triton(k_buffers: list[torch.Tensor], v_buffers: list[torch.Tensor], src_slots: torch.Tensor,
                   dst_slots: torch.Tensor, rot_delta: torch.Tensor, fold_slots: torch.Tensor,
                   fold_delta: torch.Tensor, *, inv_freq: torch.Tensor, axis: torch.Tensor | None = None) -> None:
    """inv_freq: [L, R] float64 frequencies of every layer (or [R], the same for all); axis: [R] position axis
    of each frequency (None for 1D RoPE); deltas [L, M(E), A]."""
    _check(k_buffers, v_buffers, src_slots, dst_slots, rot_delta, fold_slots, fold_delta)
    L, M = src_slots.shape
    if L == 0 or M == 0:
        return
    ref = k_buffers[0]
    _, heads, d = ref.shape
    dev = ref.device
    freqs, axes, a, rot_half = rope_tables(inv_freq.to(dev), axis, L, d // 2)
    k_tab = torch.tensor([b.data_ptr() for b in k_buffers], dtype=torch.int64, device=dev)
    v_tab = torch.tensor([b.data_ptr() for b in v_buffers], dtype=torch.int64, device=dev)
    E = fold_slots.shape[1]
    _compact_kernel[(L, heads)](
        k_tab, v_tab, src_slots.to(torch.int64).contiguous(), dst_slots.to(torch.int64).contiguous(),
        rot_delta.reshape(L, M, a).to(torch.int64).contiguous(),
        fold_slots.to(torch.int64).contiguous() if E else torch.full((L, 1), -1, dtype=torch.int64, device=dev),
        fold_delta.reshape(L, E, a).to(torch.int64).contiguous() if E else torch.zeros(L, 1, a, dtype=torch.int64, device=dev),
        freqs, axes.to(dev), M, E, ref.stride(0), ref.stride(1),
        BJ=BLOCK_TOKENS, HALF=d // 2, ROT_HALF=rot_half, A=a, DTYPE=_TL_DTYPE[ref.dtype])


def compact_reference(k_buffers: list[torch.Tensor], v_buffers: list[torch.Tensor], src_slots: torch.Tensor,
                      dst_slots: torch.Tensor, rot_delta: torch.Tensor, fold_slots: torch.Tensor,
                      fold_delta: torch.Tensor, *, inv_freq: torch.Tensor, axis: torch.Tensor | None = None) -> None:
    """Torch, float64 math, staged (all reads before any write): the definition of the result."""
    from triton_kernels.rerotate import rerotate_reference

    _check(k_buffers, v_buffers, src_slots, dst_slots, rot_delta, fold_slots, fold_delta)
    L, M = src_slots.shape
    freqs = inv_freq.to(torch.float64).reshape(-1, inv_freq.shape[-1]).expand(L, -1)
    for l in range(L):
        rope = dict(inv_freq=freqs[l], axis=axis)
        k, v = k_buffers[l], v_buffers[l]
        kept = src_slots[l] >= 0
        staged_k = k[src_slots[l][kept]].to(torch.float64)
        staged_v = v[src_slots[l][kept]].clone()
        tmp = staged_k.clone()
        idx = torch.arange(len(tmp), device=k.device)
        rerotate_reference(tmp, idx, rot_delta[l][kept], **rope)
        summary = None
        if not bool(kept[-1]):
            f = fold_slots[l] >= 0 if fold_slots.numel() else torch.zeros(0, dtype=torch.bool)
            fk = k[fold_slots[l][f]].to(torch.float64)
            rerotate_reference(fk, torch.arange(len(fk), device=k.device), fold_delta[l][f], **rope)
            count = max(int(f.sum()), 1)
            summary = (fk.sum(0) / count, v[fold_slots[l][f]].to(torch.float64).sum(0) / count)
        k[dst_slots[kept]] = tmp.to(k.dtype)
        v[dst_slots[kept]] = staged_v
        if summary is not None:
            k[dst_slots[-1]] = summary[0].to(k.dtype)
            v[dst_slots[-1]] = summary[1].to(v.dtype)
