"""Re-rotate stored keys in place by a per-token position delta (HERMES §3.5 re-indexing).

One program per (block of 16 tokens, kv head): loads the two halves of a head vector, rotates each frequency pair
by delta·θ_i (angles in float64, math in float32), stores back in the buffer's dtype. Reads and
writes each key byte once: the minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from triton_kernels.rope_math import cos_sin, load_deltas, sections


@triton.jit
def _rerotate_kernel(k_ptr, slots_ptr, delta_ptr, n, stride_slot, stride_head,
                     BJ: tl.constexpr, HALF: tl.constexpr, A: tl.constexpr, S0: tl.constexpr, S1: tl.constexpr,
                     LOG2_THETA: tl.constexpr):
    rows = tl.program_id(0) * BJ + tl.arange(0, BJ)
    head = tl.program_id(1)
    mask = rows < n
    slot = tl.load(slots_ptr + rows, mask=mask, other=0).to(tl.int64)
    i = tl.arange(0, HALF)
    base = k_ptr + slot[:, None] * stride_slot + head * stride_head + i[None, :]
    m2 = mask[:, None]
    x1 = tl.load(base, mask=m2, other=0.0).to(tl.float32)
    x2 = tl.load(base + HALF, mask=m2, other=0.0).to(tl.float32)
    d0, d1, d2 = load_deltas(delta_ptr, rows, mask, A)
    cos, sin = cos_sin(d0, d1, d2, HALF, S0, S1, LOG2_THETA)
    tl.store(base, (x1 * cos - x2 * sin).to(k_ptr.dtype.element_ty), mask=m2)
    tl.store(base + HALF, (x2 * cos + x1 * sin).to(k_ptr.dtype.element_ty), mask=m2)


BLOCK_TOKENS = 16


def rerotate_triton(k_buffer: torch.Tensor, slots: torch.Tensor, delta: torch.Tensor, *, rope_theta: float,
                    mrope_section: Sequence[int] | None = None) -> None:
    n = slots.numel()
    if n == 0:
        return
    _, heads, d = k_buffer.shape
    a, s0, s1 = sections(mrope_section, d // 2)
    delta = delta.reshape(n, a).to(torch.int64).contiguous()
    grid = (triton.cdiv(n, BLOCK_TOKENS), heads)
    _rerotate_kernel[grid](k_buffer, slots.contiguous(), delta, n, k_buffer.stride(0), k_buffer.stride(1),
                           BJ=BLOCK_TOKENS, HALF=d // 2, A=a, S0=s0, S1=s1, LOG2_THETA=math.log2(rope_theta))


def rerotate_reference(k_buffer: torch.Tensor, slots: torch.Tensor, delta: torch.Tensor, *, rope_theta: float,
                       mrope_section: Sequence[int] | None = None) -> None:
    """Plain torch, float64 math: the definition the kernel is tested against."""
    if slots.numel() == 0:
        return
    d = k_buffer.shape[-1]
    half = d // 2
    a, s0, s1 = sections(mrope_section, half)
    delta = delta.reshape(slots.numel(), a).to(torch.float64)
    i = torch.arange(half, dtype=torch.float64, device=k_buffer.device)
    inv = rope_theta ** (-2.0 * i / d)
    if a == 1:
        ang = delta[:, :1] * inv
    else:
        axis = torch.where(i < s0, 0, torch.where(i < s0 + s1, 1, 2)).to(k_buffer.device)
        ang = delta[:, axis] * inv
    cos, sin = ang.cos()[:, None], ang.sin()[:, None]
    x = k_buffer[slots].to(torch.float64)
    x1, x2 = x[..., :half], x[..., half:]
    k_buffer[slots] = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).to(k_buffer.dtype)
