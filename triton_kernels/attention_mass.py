"""How much attention guidance queries pay to each stream token (HERMES §3.2's A_i), per segment.

out[s, n] = mean over the segment's queries g and over heads h of softmax_n(q[g,h]·k[slots[n]]·scale).
Two passes over K in blocks of N (online softmax): pass 1 writes each block's per-row max and
exp-sum, a [blocks, G·H] reduction (torch, on device) turns them into each row's log-sum-exp, pass 2
re-scores the block and reduces p over rows into the segments with one small matmul. [G, H, N] is
never materialised; K is read twice, the minimum for an exact softmax without holding all scores.
GQA: head h reads kv head h // (H / H_kv); one program per (N block, kv head) serves all its heads.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_N = 32
BLOCK_M = 16
SEG_PAD = 16  # segments are padded to a tile so the row->segment reduction is a tl.dot


@triton.jit
def _scores(q_ptr, k_base, rows, row_mask, slots, n_mask, R, kvh, stride_qg, stride_qh, scale,
            D: tl.constexpr):
    g = rows // R
    h = kvh * R + rows % R
    dd = tl.arange(0, D)
    q = tl.load(q_ptr + g[:, None] * stride_qg + h[:, None] * stride_qh + dd[None, :], mask=row_mask[:, None], other=0.0)
    k = tl.load(k_base + slots[:, None] + dd[None, :], mask=n_mask[:, None], other=0.0)
    # Always fp32 with IEEE products: scoring is ~G·H·N·D FLOPs, negligible next to the forward, and
    # exact scores keep the top-k choice stable across dtypes.
    s = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee") * scale
    return tl.where(row_mask[:, None] & n_mask[None, :], s, float("-inf"))


@triton.jit
def _block(slots_ptr, k_ptr, N, stride_slot, stride_head, BN: tl.constexpr):
    """This program's N block and kv head: offsets, mask, scaled slot offsets, K base."""
    nb = tl.program_id(0)
    kvh = tl.program_id(1)
    n = nb * BN + tl.arange(0, BN)
    n_mask = n < N
    slots = tl.load(slots_ptr + n, mask=n_mask, other=0).to(tl.int64) * stride_slot
    return nb, kvh, n, n_mask, slots, k_ptr + kvh * stride_head


@triton.jit
def _pass1(q_ptr, k_ptr, slots_ptr, m_ptr, l_ptr, N, ROWS, R, stride_qg, stride_qh, stride_slot, stride_head,
           scale, GH, H, D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    nb, kvh, n, n_mask, slots, k_base = _block(slots_ptr, k_ptr, N, stride_slot, stride_head, BN)
    for r0 in range(0, ROWS, BM):
        rows = r0 + tl.arange(0, BM)
        row_mask = rows < ROWS
        s = _scores(q_ptr, k_base, rows, row_mask, slots, n_mask, R, kvh, stride_qg, stride_qh, scale, D)
        m = tl.max(s, axis=1)
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        l = tl.sum(tl.exp(s - m_safe[:, None]), axis=1)
        row_id = (rows // R) * H + kvh * R + rows % R  # = g·H + h
        tl.store(m_ptr + nb * GH + row_id, m, mask=row_mask)
        tl.store(l_ptr + nb * GH + row_id, l, mask=row_mask)


@triton.jit
def _pass2(q_ptr, k_ptr, slots_ptr, lse_ptr, w_ptr, seg_ptr, out_ptr, N, ROWS, R, stride_qg, stride_qh,
           stride_slot, stride_head, scale, GH, H, D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
           SP: tl.constexpr):
    nb, kvh, n, n_mask, slots, k_base = _block(slots_ptr, k_ptr, N, stride_slot, stride_head, BN)
    acc = tl.zeros([SP, BN], dtype=tl.float32)
    segs = tl.arange(0, SP)
    for r0 in range(0, ROWS, BM):
        rows = r0 + tl.arange(0, BM)
        row_mask = rows < ROWS
        s = _scores(q_ptr, k_base, rows, row_mask, slots, n_mask, R, kvh, stride_qg, stride_qh, scale, D)
        g = rows // R
        row_id = g * H + kvh * R + rows % R
        lse = tl.load(lse_ptr + row_id, mask=row_mask, other=0.0)
        p = tl.where(row_mask[:, None] & n_mask[None, :], tl.exp(s - lse[:, None]), 0.0)
        seg = tl.load(seg_ptr + g, mask=row_mask, other=-1)
        w = tl.load(w_ptr + g, mask=row_mask, other=0.0)
        onehot = tl.where(segs[:, None] == seg[None, :], w[None, :], 0.0)  # [SP, BM]
        acc += tl.dot(onehot, p, input_precision="ieee")
    tl.store(out_ptr + kvh * SP * N + segs[:, None] * N + n[None, :], acc, mask=n_mask[None, :])


def _weights(seg: torch.Tensor, num_segments: int, heads: int) -> torch.Tensor:
    """1 / (queries in the row's segment x heads). Counted with index_add_, not bincount: on CUDA
    bincount reads the maximum back to the host to size its output, a sync per layer inside the forward."""
    seg = seg.to(torch.int64)
    counts = torch.zeros(num_segments, dtype=torch.float32, device=seg.device)
    counts.index_add_(0, seg, torch.ones(seg.shape, dtype=torch.float32, device=seg.device))
    return 1.0 / (counts.clamp(min=1)[seg] * heads)


def attention_mass_triton(q: torch.Tensor, k_buffer: torch.Tensor, slots: torch.Tensor, seg: torch.Tensor,
                          num_segments: int, scale: float) -> torch.Tensor:
    G, H, D = q.shape
    N = slots.numel()
    out = torch.zeros(num_segments, N, dtype=torch.float32, device=q.device)
    if G == 0 or N == 0:
        return out
    if num_segments > SEG_PAD:
        raise ValueError(f"at most {SEG_PAD} segments")
    hkv = k_buffer.shape[1]
    R = H // hkv
    rows = G * R
    nb = triton.cdiv(N, BLOCK_N)
    gh = G * H
    m = torch.empty(nb, gh, dtype=torch.float32, device=q.device)
    l = torch.empty(nb, gh, dtype=torch.float32, device=q.device)
    slots = slots.contiguous()
    common = (rows, R, q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1), scale, gh, H)
    _pass1[(nb, hkv)](q, k_buffer, slots, m, l, N, *common, D=D, BN=BLOCK_N, BM=BLOCK_M)
    big = m.amax(0)
    lse = big + torch.log((l * torch.exp(m - big)).sum(0))
    partial = torch.empty(hkv, SEG_PAD, N, dtype=torch.float32, device=q.device)
    _pass2[(nb, hkv)](q, k_buffer, slots, lse, _weights(seg, num_segments, H), seg.to(torch.int32).contiguous(),
                      partial, N, *common, D=D, BN=BLOCK_N, BM=BLOCK_M, SP=SEG_PAD)
    return partial.sum(0)[:num_segments]


def attention_mass_reference(q: torch.Tensor, k_buffer: torch.Tensor, slots: torch.Tensor, seg: torch.Tensor,
                             num_segments: int, scale: float) -> torch.Tensor:
    """Materialises the full [G, H, N] softmax in float64: the definition."""
    G, H, D = q.shape
    N = slots.numel()
    out = torch.zeros(num_segments, N, dtype=torch.float64, device=q.device)
    if G == 0 or N == 0:
        return out.float()
    k = k_buffer[slots].to(torch.float64)  # [N, Hkv, D]
    k = k.repeat_interleave(H // k.shape[1], dim=1)  # [N, H, D]
    p = torch.softmax(torch.einsum("ghd,nhd->ghn", q.to(torch.float64), k) * scale, dim=-1).mean(1)  # [G, N]
    out.index_add_(0, seg.to(torch.int64), p)
    counts = torch.bincount(seg.to(torch.int64), minlength=num_segments).clamp(min=1)
    return (out / counts[:, None]).float()
