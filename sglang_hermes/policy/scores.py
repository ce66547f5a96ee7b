"""Token importance per layer (HERMES §3.2): recency, attention, min-max normalisation and the mix.

Vectorised over layers: in a stream every layer holds the same number of candidate tokens, so the
whole model's scores are one [L, N] tensor.
"""

from __future__ import annotations

import torch


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each row to [0, 1]; a constant row carries no preference and becomes 0."""
    lo = x.amin(dim=-1, keepdim=True)
    span = x.amax(dim=-1, keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(x))


def normalised_age(n: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """d_i = (n-1-i)/(n-1): 0 for the newest token, 1 for the oldest (0 for a single token)."""
    if n <= 1:
        return torch.zeros(n, dtype=dtype, device=device)
    return (n - 1 - torch.arange(n, dtype=dtype, device=device)) / (n - 1)


def recency(n: int, k: torch.Tensor) -> torch.Tensor:
    """R[l, i] = exp(-k_l · d_i) for every layer's decay k [L]."""
    return torch.exp(-k.to(torch.float64)[:, None] * normalised_age(n, device=k.device)[None, :])


def mix(attention: torch.Tensor, a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """S = (1-a)·minmax(A) + a·minmax(R), per layer, in float64."""
    attention = attention.to(torch.float64)
    r = recency(attention.shape[-1], k.to(attention.device))
    a = a.to(attention)[:, None]
    return (1 - a) * minmax(attention) + a * minmax(r)
