"""Re-rotate stored keys in place by a per-token position delta (HERMES §3.5 re-indexing).

One program per (block of 16 tokens, kv head): loads the two elements of each frequency pair, rotates them by
delta[axis_i]·θ_i with the layer's own frequency table (angles in float64, math in float32), stores back in the
buffer's dtype. Reads and writes each key byte once: the minimum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from triton_kernels.rope_math import cos_sin, load_deltas, load_rope, pair_offsets, reference_cos_sin, rope_tables


@triton.jit
def _rerotate_kernel(k_ptr, slots_ptr, delta_ptr, freq_ptr, axis_ptr, n, stride_slot, stride_head,
                     BJ: tl.constexpr, HALF: tl.constexpr, ROT_HALF: tl.constexpr, A: tl.constexpr):
    rows = tl.program_id(0) * BJ + tl.arange(0, BJ)
    head = tl.program_id(1)
    mask = rows < n
    slot = tl.load(slots_ptr + rows, mask=mask, other=0).to(tl.int64)
    lo, hi = pair_offsets(HALF, ROT_HALF)
    inv_freq, axis = load_rope(freq_ptr, axis_ptr, HALF, ROT_HALF)
    base = k_ptr + slot[:, None] * stride_slot + head * stride_head
    m2 = mask[:, None]
    x1 = tl.load(base + lo[None, :], mask=m2, other=0.0).to(tl.float32)
    x2 = tl.load(base + hi[None, :], mask=m2, other=0.0).to(tl.float32)
    d0, d1, d2 = load_deltas(delta_ptr, rows, mask, A)
    cos, sin = cos_sin(d0, d1, d2, inv_freq, axis)
    tl.store(base + lo[None, :], (x1 * cos - x2 * sin).to(k_ptr.dtype.element_ty), mask=m2)
    tl.store(base + hi[None, :], (x2 * cos + x1 * sin).to(k_ptr.dtype.element_ty), mask=m2)


BLOCK_TOKENS = 16


def rerotate_triton(k_buffer: torch.Tensor, slots: torch.Tensor, delta: torch.Tensor, *, inv_freq: torch.Tensor,
                    axis: torch.Tensor | None = None) -> None:
    """inv_freq: [R] float64 frequencies of this layer (R = rotary_dim/2); axis: [R] position axis of each
    (None for 1D RoPE); delta: [n] or [n, 3] per-token position deltas."""
    n = slots.numel()
    if n == 0:
        return
    _, heads, d = k_buffer.shape
    freqs, axes, a, rot_half = rope_tables(inv_freq.to(k_buffer.device), axis, 1, d // 2)
    delta = delta.reshape(n, a).to(torch.int64).contiguous()
    grid = (triton.cdiv(n, BLOCK_TOKENS), heads)
    _rerotate_kernel[grid](k_buffer, slots.contiguous(), delta, freqs, axes.to(k_buffer.device), n,
                           k_buffer.stride(0), k_buffer.stride(1),
                           BJ=BLOCK_TOKENS, HALF=d // 2, ROT_HALF=rot_half, A=a)


def rerotate_reference(k_buffer: torch.Tensor, slots: torch.Tensor, delta: torch.Tensor, *, inv_freq: torch.Tensor,
                       axis: torch.Tensor | None = None) -> None:
    """Plain torch, float64 math: the definition the kernel is tested against."""
    if slots.numel() == 0:
        return
    r = inv_freq.shape[-1]
    a = 1 if axis is None else 3
    cos, sin = reference_cos_sin(delta.reshape(slots.numel(), a), inv_freq.reshape(r).to(k_buffer.device),
                                 None if axis is None else axis.to(k_buffer.device))
    cos, sin = cos[:, None], sin[:, None]
    x = k_buffer[slots].to(torch.float64)
    x1, x2, rest = x[..., :r], x[..., r: 2 * r], x[..., 2 * r:]
    k_buffer[slots] = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], -1).to(k_buffer.dtype)
