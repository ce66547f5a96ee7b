"""RoPE arithmetic on stored keys (neox rotate-half layout), 1D and Qwen2.5-VL's 3-axis M-RoPE.

Keys sit in the KV cache after RoPE, so a token's position lives inside its key. Moving a key from
position p to p' is one more rotation by (p'-p)·θ_i per frequency pair i = (x[i], x[i+D/2]). For
M-RoPE the D/2 frequencies are split into t/h/w sections (e.g. [16, 24, 24]); each band rotates by
the delta of its own axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def inv_freq(head_dim: int, rope_theta: float, *, device=None) -> torch.Tensor:
    """θ_i = theta^(-2i/D), float64 [D/2]."""
    return rope_theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)


def axis_of_frequency(head_dim: int, mrope_section: Sequence[int] | None, *, device=None) -> torch.Tensor | None:
    """For M-RoPE, the position axis (0=t, 1=h, 2=w) that drives each of the D/2 frequencies."""
    if mrope_section is None:
        return None
    if sum(mrope_section) != head_dim // 2:
        raise ValueError(f"mrope_section {list(mrope_section)} must sum to head_dim/2 = {head_dim // 2}")
    return torch.repeat_interleave(torch.arange(len(mrope_section), device=device),
                                   torch.tensor(list(mrope_section), device=device))


def _angles(pos: torch.Tensor, head_dim: int, rope_theta: float, mrope_section) -> torch.Tensor:
    """Rotation angle per token and frequency, float64 [N, D/2]; pos is [N] (1D) or [N, 3] (M-RoPE)."""
    freqs = inv_freq(head_dim, rope_theta, device=pos.device)
    axes = axis_of_frequency(head_dim, mrope_section, device=pos.device)
    pos = pos.to(torch.float64)
    if axes is None:
        if pos.dim() == 2:  # [N, 1]
            pos = pos[:, 0]
        return pos[:, None] * freqs[None, :]
    if pos.dim() != 2 or pos.shape[1] != len(mrope_section):
        raise ValueError(f"M-RoPE positions must be [N, {len(mrope_section)}], got {tuple(pos.shape)}")
    return pos[:, axes] * freqs[None, :]


def rotate_by_delta(keys: torch.Tensor, delta: torch.Tensor, *, rope_theta: float,
                    mrope_section: Sequence[int] | None = None) -> torch.Tensor:
    """Rotate keys [N, H, D] by per-token position deltas ([N] for 1D RoPE, [N, 3] for M-RoPE).

    Angles in float64, result in the keys' dtype.
    """
    n, _, d = keys.shape
    ang = _angles(delta.reshape(n, -1) if delta.dim() == 1 else delta, d, rope_theta, mrope_section)
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x = keys.to(torch.float64)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(keys.dtype)


def rotate_at(x: torch.Tensor, pos: torch.Tensor, *, rope_theta: float,
              mrope_section: Sequence[int] | None = None) -> torch.Tensor:
    """Apply RoPE from scratch at absolute positions: the independent oracle for re-rotation tests.

    Written as complex multiplication (pairs (x[i], x[i+D/2]) as one complex number), not with the
    cos/sin formula above, so tests compare two different computations.
    """
    n, _, d = x.shape
    ang = _angles(pos.reshape(n, -1) if pos.dim() == 1 else pos, d, rope_theta, mrope_section)
    z = torch.complex(x[..., : d // 2].to(torch.float64), x[..., d // 2:].to(torch.float64))
    z = z * torch.polar(torch.ones_like(ang), ang)[:, None, :]
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def fold_summary(keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
                 summary_position: torch.Tensor, *, rope_theta: float,
                 mrope_section: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One summary token for evicted tokens (HERMES §3.4): keys re-rotated to the summary position
    then averaged, values averaged. keys/values [E, H, D]; positions [E] or [E, 3]."""
    delta = summary_position.to(positions) - positions
    k = rotate_by_delta(keys, delta, rope_theta=rope_theta, mrope_section=mrope_section)
    return (k.to(torch.float64).mean(0).to(keys.dtype), values.to(torch.float64).mean(0).to(values.dtype))
