"""Shared RoPE helpers for the kernels (neox rotate-half layout, optional M-RoPE sections)."""

from __future__ import annotations

import triton
import triton.language as tl


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
def cos_sin(d0, d1, d2, HALF: tl.constexpr, S0: tl.constexpr, S1: tl.constexpr, LOG2_THETA: tl.constexpr):
    """[BJ, HALF] cos/sin of delta·θ_i. Angles in float64 so that deltas of tens of thousands of
    positions rotate as exactly as the storage dtype allows; frequencies [0, S0) follow axis 0,
    [S0, S0+S1) axis 1, the rest axis 2 (for 1D RoPE the three axes are equal)."""
    i = tl.arange(0, HALF)
    inv_freq = tl.exp2(-(2.0 * i.to(tl.float64) / (2 * HALF)) * LOG2_THETA)
    d = tl.where((i < S0)[None, :], d0.to(tl.float64)[:, None],
                 tl.where((i < S0 + S1)[None, :], d1.to(tl.float64)[:, None], d2.to(tl.float64)[:, None]))
    ang = d * inv_freq[None, :]
    return tl.cos(ang).to(tl.float32), tl.sin(ang).to(tl.float32)


def sections(mrope_section, half: int) -> tuple[int, int, int]:
    """(A, S0, S1) kernel constants for a RoPE layout."""
    if mrope_section is None:
        return 1, half, 0
    if sum(mrope_section) != half or len(mrope_section) != 3:
        raise ValueError(f"mrope_section {list(mrope_section)} must have 3 parts summing to {half}")
    return 3, int(mrope_section[0]), int(mrope_section[1])
