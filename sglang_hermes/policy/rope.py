"""RoPE arithmetic on stored keys, for any rotary layout a served model uses (neox rotate-half pairs).

Keys sit in the KV cache after RoPE, so a token's position lives inside its key. Moving a key from
position p to p' is one more rotation by (p'-p)·θ_i of every frequency pair i. What θ_i is, which
position axis drives it and which dims form the pair is the MODEL's choice, and it can differ per
layer, so every function here takes a :class:`Rope` (built from the model's config by
``sglang_hermes.rotary``) and a layer index:

- the frequencies θ_i of each layer: its own base (Gemma 3's sliding layers use another base than its
  global ones) and its scaling (linear / llama3 / YaRN change θ_i, not the arithmetic);
- the axis (t, h, w) of each frequency for M-RoPE: contiguous sections (Qwen2.5-VL) or interleaved
  (Qwen3-VL), any assignment is a table;
- partial rotary: only the first ``rotary_dim`` dims rotate, as pairs (x[i], x[i + rotary_dim/2]); the
  rest of the head passes through.

A scaling's attention factor (YaRN's mscale multiplies cos and sin) is inside the stored key already,
so re-rotation never applies it again; only :func:`rotate_at`, which computes a key from scratch the
way the model does, uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Rope:
    """A model's rotary embedding, per layer, as re-rotation needs it.

    inv_freq: [L, R] float64 frequencies θ_i of each layer, R = rotary_dim/2 (the values the model itself
    computes, in its own precision). axis: [R] int64, the position axis driving frequency i (all 0 for
    1D RoPE). attention_scaling: [L] float64, the factor the model multiplies cos/sin by.
    """

    inv_freq: torch.Tensor
    axis: torch.Tensor
    axes: int  # 1 for 1D RoPE, 3 for M-RoPE (t, h, w)
    head_dim: int
    attention_scaling: torch.Tensor

    def __post_init__(self):
        L, R = self.inv_freq.shape
        if 2 * R > self.head_dim or self.axis.shape != (R,) or self.attention_scaling.shape != (L,):
            raise ValueError(f"inconsistent rope: inv_freq {tuple(self.inv_freq.shape)}, axis "
                             f"{tuple(self.axis.shape)}, head_dim {self.head_dim}")
        if self.axis.numel() and int(self.axis.max()) >= self.axes:
            raise ValueError(f"axis table names axis {int(self.axis.max())} of a {self.axes}-axis rope")

    @property
    def num_layers(self) -> int:
        return self.inv_freq.shape[0]

    @property
    def rotary_dim(self) -> int:
        return 2 * self.inv_freq.shape[1]

    @classmethod
    def uniform(cls, head_dim: int, rope_theta: float, *, num_layers: int = 1,
                mrope_section: Sequence[int] | None = None, interleaved: bool = False) -> "Rope":
        """Every layer the same unscaled full-head RoPE (tests and benchmarks)."""
        freqs = default_inv_freq(head_dim, rope_theta)
        return cls(freqs.expand(num_layers, -1).contiguous(), axis_of_frequency(head_dim // 2, mrope_section, interleaved),
                   3 if mrope_section is not None else 1, head_dim, torch.ones(num_layers, dtype=torch.float64))

    def kernel_args(self, device=None, *, layer: int | None = None) -> dict:
        """Keyword arguments of the ``triton_kernels`` launchers: every layer's frequencies (or one layer's)."""
        freqs = self.inv_freq if layer is None else self.inv_freq[layer]
        return dict(inv_freq=freqs.to(device), axis=self.axis.to(device) if self.axes > 1 else None)


def default_inv_freq(rotary_dim: int, base: float) -> torch.Tensor:
    """θ_i = base^(-2i/d), computed in float32 as HF and SGLang compute it, returned as float64 [d/2]."""
    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.int64).to(torch.float32) / rotary_dim
    return (1.0 / (base ** exponent)).to(torch.float64)


def axis_of_frequency(half: int, mrope_section: Sequence[int] | None, interleaved: bool = False) -> torch.Tensor:
    """The position axis (0=t, 1=h, 2=w) that drives each of ``half`` frequencies.

    Sectioned M-RoPE (Qwen2.5-VL, section [16, 24, 24]): the first 16 frequencies follow t, the next 24 h,
    the last 24 w. Interleaved M-RoPE (Qwen3-VL, [24, 20, 20]): frequencies cycle t, h, w, i.e. i%3 == 1
    is h and i%3 == 2 is w while that axis has frequencies left (i < 3·section), every other one is t.
    """
    if mrope_section is None:
        return torch.zeros(half, dtype=torch.int64)
    section = [int(s) for s in mrope_section]
    if len(section) != 3 or sum(section) != half:
        raise ValueError(f"mrope_section {section} must have 3 parts summing to rotary_dim/2 = {half}")
    if not interleaved:
        return torch.repeat_interleave(torch.arange(3), torch.tensor(section))
    axis = torch.zeros(half, dtype=torch.int64)
    for a in (1, 2):
        axis[a: min(3 * section[a], half): 3] = a
    if [int((axis == a).sum()) for a in range(3)] != section:
        raise ValueError(f"interleaved mrope_section {section} does not fit {half} frequencies")
    return axis


def _angles(rope: Rope, layer: int, pos: torch.Tensor) -> torch.Tensor:
    """Rotation angle per token and frequency, float64 [N, R]; pos is [N] or [N, 1] (1D), [N, 3] (M-RoPE)."""
    pos = pos.to(torch.float64)
    if pos.dim() == 1:
        pos = pos[:, None]
    if pos.shape[1] != rope.axes:
        raise ValueError(f"positions must be [N, {rope.axes}] for this rope, got {tuple(pos.shape)}")
    freqs = rope.inv_freq[layer].to(pos.device)
    return pos[:, rope.axis.to(pos.device)] * freqs[None, :]


def rotate_by_delta(keys: torch.Tensor, delta: torch.Tensor, rope: Rope, layer: int) -> torch.Tensor:
    """Rotate layer ``layer``'s keys [N, H, D] by per-token position deltas ([N] for 1D RoPE, [N, 3] for
    M-RoPE). Angles in float64, result in the keys' dtype; dims past ``rotary_dim`` are left as they are."""
    n, _, d = keys.shape
    r = rope.rotary_dim // 2
    ang = _angles(rope, layer, delta.reshape(n, -1))
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x = keys.to(torch.float64)
    x1, x2, rest = x[..., :r], x[..., r: 2 * r], x[..., 2 * r:]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)
    return out.to(keys.dtype)


def rotate_at(x: torch.Tensor, pos: torch.Tensor, rope: Rope, layer: int) -> torch.Tensor:
    """Apply layer ``layer``'s RoPE from scratch at absolute positions, attention factor included: the
    independent oracle for re-rotation tests.

    Written as complex multiplication (pairs (x[i], x[i+R]) as one complex number), not with the cos/sin
    formula above, so tests compare two different computations.
    """
    n, _, d = x.shape
    r = rope.rotary_dim // 2
    ang = _angles(rope, layer, pos.reshape(n, -1))
    z = torch.complex(x[..., :r].to(torch.float64), x[..., r: 2 * r].to(torch.float64))
    z = z * torch.polar(torch.ones_like(ang), ang)[:, None, :] * float(rope.attention_scaling[layer])
    rest = x[..., 2 * r:].to(torch.float64)
    return torch.cat([z.real, z.imag, rest], dim=-1).to(x.dtype)


def fold_summary(keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
                 summary_position: torch.Tensor, rope: Rope, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One summary token for evicted tokens (HERMES §3.4): keys re-rotated to the summary position
    then averaged, values averaged. keys/values [E, H, D]; positions [E] or [E, 3]."""
    delta = summary_position.to(positions) - positions
    k = rotate_by_delta(keys, delta, rope, layer)
    return (k.to(torch.float64).mean(0).to(keys.dtype), values.to(torch.float64).mean(0).to(values.dtype))
