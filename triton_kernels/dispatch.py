"""The one place that picks Triton or torch: Triton for CUDA tensors, the torch reference for CPU
tensors, and Triton on CPU when HERMES_FORCE_TRITON=1 (only meaningful under TRITON_INTERPRET=1,
which tests set). ``calls`` counts which path ran, so tests and logs can see the choice."""

from __future__ import annotations

import os
from collections import Counter

import torch

from triton_kernels import attention_mass as _am
from triton_kernels import compaction as _co
from triton_kernels import mix_smooth as _ms
from triton_kernels import rerotate as _rr

FORCE_ENV = "HERMES_FORCE_TRITON"
calls: Counter = Counter()


def use_triton(t: torch.Tensor) -> bool:
    if t.is_cuda:
        return True
    if os.environ.get(FORCE_ENV) == "1":
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(f"{FORCE_ENV}=1 on CPU tensors needs TRITON_INTERPRET=1 (set before importing triton)")
        return True
    return False


def _pick(name: str, t: torch.Tensor, triton_fn, torch_fn):
    path = "triton" if use_triton(t) else "torch"
    calls[(name, path)] += 1
    return triton_fn if path == "triton" else torch_fn


def attention_mass(q, k_buffer, slots, seg, num_segments: int, scale: float) -> torch.Tensor:
    """[num_segments, N] float32 attention mass of guidance queries over the stream's slots."""
    fn = _pick("attention_mass", q, _am.attention_mass_triton, _am.attention_mass_reference)
    return fn(q, k_buffer, slots, seg, num_segments, scale)


def mix_smooth(attn, a, k, lam) -> torch.Tensor:
    """[L, N] smoothed HERMES scores from per-layer attention mass and tier parameters."""
    fn = _pick("mix_smooth", attn, _ms.mix_smooth_triton, _ms.mix_smooth_reference)
    return fn(attn, a, k, lam)


def rerotate(k_buffer, slots, delta, *, inv_freq, axis=None) -> None:
    """Rotate keys at `slots` in place by per-token position deltas (inv_freq/axis: the layer's rope)."""
    fn = _pick("rerotate", k_buffer, _rr.rerotate_triton, _rr.rerotate_reference)
    fn(k_buffer, slots, delta, inv_freq=inv_freq, axis=axis)


def compact(k_buffers, v_buffers, src_slots, dst_slots, rot_delta, fold_slots, fold_delta, *,
            inv_freq, axis=None) -> None:
    """Execute a compaction plan (in slot terms) on every layer's K/V buffers (inv_freq [L, R]: each layer's
    frequencies; axis [R]: M-RoPE axis of each, None for 1D)."""
    fn = _pick("compact", k_buffers[0], _co.compact_triton, _co.compact_reference)
    fn(k_buffers, v_buffers, src_slots, dst_slots, rot_delta, fold_slots, fold_delta,
       inv_freq=inv_freq, axis=axis)
