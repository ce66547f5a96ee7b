"""Score mixing and cross-layer smoothing for every layer in one launch (HERMES §3.2-3.3).

S_l = (1-a_l)·minmax(A_l) + a_l·minmax(R_l), R_l,i = exp(-k_l·d_i), d_i = (N-1-i)/(N-1);
S~_{L-1} = S_{L-1}, S~_l = (1-λ_l)·S_l + λ_l·S~_{l+1}. Parallel over tokens (blocks of N), sequential
over layers inside each program. The recency extremes are analytic (exp(-k) and 1), so only the
attention rows need a min/max, taken by one torch reduction on device before the launch.
A constant row (or N = 1) carries no preference and normalises to 0, as in sglang_hermes.policy.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_N = 128


@triton.jit
def _mix_smooth_kernel(attn_ptr, amin_ptr, amax_ptr, a_ptr, k_ptr, lam_ptr, out_ptr, L, N,
                       BN: tl.constexpr):
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mask = n < N
    denom = tl.maximum(N - 1, 1).to(tl.float32)
    age = (N - 1 - n).to(tl.float32) / denom
    prev = tl.zeros([BN], dtype=tl.float32)
    for step in range(0, L):
        l = L - 1 - step
        a = tl.load(a_ptr + l)
        k = tl.load(k_ptr + l)
        lo = tl.load(amin_ptr + l)
        hi = tl.load(amax_ptr + l)
        x = tl.load(attn_ptr + l * N + n, mask=mask, other=0.0).to(tl.float32)
        norm_a = tl.where(hi > lo, (x - lo) / tl.where(hi > lo, hi - lo, 1.0), 0.0)
        r_lo = tl.exp(-k)
        span = 1.0 - r_lo
        r_ok = (span > 0) & (N > 1)
        norm_r = tl.where(r_ok, (tl.exp(-k * age) - r_lo) / tl.where(r_ok, span, 1.0), 0.0)
        s = (1.0 - a) * norm_a + a * norm_r
        if step > 0:
            lam = tl.load(lam_ptr + l)
            s = (1.0 - lam) * s + lam * prev
        tl.store(out_ptr + l * N + n, s, mask=mask)
        prev = s


def mix_smooth_triton(attn: torch.Tensor, a: torch.Tensor, k: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    L, N = attn.shape
    out = torch.empty(L, N, dtype=torch.float32, device=attn.device)
    if L == 0 or N == 0:
        return out
    attn = attn.to(torch.float32).contiguous()
    f32 = dict(dtype=torch.float32, device=attn.device)
    _mix_smooth_kernel[(triton.cdiv(N, BLOCK_N),)](
        attn, attn.amin(1), attn.amax(1), a.to(**f32).contiguous(), k.to(**f32).contiguous(),
        lam.to(**f32).contiguous(), out, L, N, BN=BLOCK_N)
    return out


def mix_smooth_reference(attn: torch.Tensor, a: torch.Tensor, k: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Float64 torch, written out independently of sglang_hermes.policy."""
    L, N = attn.shape
    x = attn.to(torch.float64)
    out = torch.empty(L, N, dtype=torch.float64, device=attn.device)
    age = ((N - 1 - torch.arange(N, dtype=torch.float64, device=attn.device)) / max(N - 1, 1))
    prev = None
    for l in range(L - 1, -1, -1):
        row = x[l]
        span = row.max() - row.min() if N else torch.tensor(0.0)
        na = (row - row.min()) / span if N and span > 0 else torch.zeros_like(row)
        r = torch.exp(-float(k[l]) * age)
        rs = r.max() - r.min() if N else torch.tensor(0.0)
        nr = (r - r.min()) / rs if N > 1 and rs > 0 else torch.zeros_like(r)
        s = (1 - float(a[l])) * na + float(a[l]) * nr
        if prev is not None:
            s = (1 - float(lam[l])) * s + float(lam[l]) * prev
        out[l] = s
        prev = s
    return out.float()
