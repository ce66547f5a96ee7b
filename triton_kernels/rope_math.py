"""Shared RoPE helpers for the kernels (neox rotate-half pairs; any per-frequency axis table; partial rotary).

A head of D dims is handled as D/2 lanes. Lane i < R (R = rotary_dim/2) is the frequency pair
(x[i], x[i+R]) turned by delta[axis_i]·θ_i; the lanes i >= R cover the dims past the rotary part in
pairs (x[i+R], x[i+D/2]) with θ = 0, i.e. copied unchanged. For a full-head rotary R = D/2 and the pairs
are the usual (x[i], x[i+D/2]).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def pair_offsets(HALF: tl.constexpr, ROT_HALF: tl.constexpr):
    """[HALF] dim offsets of each lane's two elements (see the module docstring)."""
    i = tl.arange(0, HALF)
    lo = tl.where(i < ROT_HALF, i, i + ROT_HALF)
    hi = tl.where(i < ROT_HALF, i + ROT_HALF, i + HALF)
    return lo, hi


@triton.jit
def load_rope(freq_ptr, axis_ptr, HALF: tl.constexpr, ROT_HALF: tl.constexpr):
    """[HALF] float64 frequencies (0 past the rotary lanes) and int32 axes of one layer."""
    i = tl.arange(0, HALF)
    rot = i < ROT_HALF
    inv_freq = tl.load(freq_ptr + i, mask=rot, other=0.0)
    axis = tl.load(axis_ptr + i, mask=rot, other=0)
    return inv_freq, axis


@triton.jit
def load_deltas(delta_ptr, rows, mask, A: tl.constexpr):
    """Per-token deltas of a block: three [BJ] int64 vectors (axes t/h/w; all equal for 1D)."""
    d0 = tl.load(delta_ptr + rows * A, mask=mask, other=0).to(tl.int64)
    if A == 1:
        return d0, d0, d0
    d1 = tl.load(delta_ptr + rows * A + 1, mask=mask, other=0).to(tl.int64)
    d2 = tl.load(delta_ptr + rows * A + 2, mask=mask, other=0).to(tl.int64)
    return d0, d1, d2


@triton.jit
def cos_sin(d0, d1, d2, inv_freq, axis):
    """[BJ, HALF] cos/sin of delta[axis_i]·θ_i. Angles in float64 so that deltas of tens of thousands of
    positions rotate as exactly as the storage dtype allows."""
    d = tl.where((axis == 0)[None, :], d0.to(tl.float64)[:, None],
                 tl.where((axis == 1)[None, :], d1.to(tl.float64)[:, None], d2.to(tl.float64)[:, None]))
    ang = d * inv_freq[None, :]
    return tl.cos(ang).to(tl.float32), tl.sin(ang).to(tl.float32)


def rope_tables(inv_freq: torch.Tensor, axis: torch.Tensor | None, layers: int, half: int):
    """Checked device tables for a launch: (float64 [layers, R] frequencies, int32 [R] axes, A, R).

    ``inv_freq`` is [R] (one layer, or the same for every layer) or [layers, R]; ``axis`` [R] (None: 1D RoPE).
    """
    rot_half = inv_freq.shape[-1]
    if rot_half > half or rot_half == 0:
        raise ValueError(f"{rot_half} rotary frequencies for a head of {2 * half} dims")
    freqs = inv_freq.to(torch.float64).reshape(-1, rot_half).expand(layers, -1).contiguous()
    if axis is None:
        return freqs, torch.zeros(rot_half, dtype=torch.int32, device=inv_freq.device), 1, rot_half
    if axis.shape != (rot_half,):
        raise ValueError(f"axis table {tuple(axis.shape)} for {rot_half} frequencies")
    return freqs, axis.to(torch.int32).contiguous(), 3, rot_half


def reference_cos_sin(delta: torch.Tensor, inv_freq: torch.Tensor, axis: torch.Tensor | None):
    """Torch float64 cos/sin [N, R] for deltas [N, A]: the definition the kernels are tested against."""
    delta = delta.to(torch.float64)
    d = delta[:, :1].expand(-1, inv_freq.shape[-1]) if axis is None else delta[:, axis.to(torch.long)]
    ang = d * inv_freq.to(torch.float64)[None, :]
    return ang.cos(), ang.sin()
