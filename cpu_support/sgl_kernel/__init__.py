"""A pure-torch stand-in for ``sgl_kernel`` on CPU machines without AMX.

Why: SGLang 0.5.23's CPU engine imports ``sgl_kernel`` at start, and PyPI has no CPU build of it.
Without AMX every layer takes its ``forward_native`` path, so only two helpers are actually called:
the req_to_token index assignment and the all-layer KV row copy. Every other name SGLang reaches for at
import time resolves to a stub that raises if called, so a missing kernel fails loudly, not silently.

The names SGLang probes to detect AMX support are deliberately NOT provided, so
``cpu_has_amx_support()`` stays False and SGLang keeps to its native paths.

This package is installed only by ``scripts/setup-cpu.sh``; it must never shadow a real sgl_kernel.
"""

from __future__ import annotations

import ctypes

import torch

from sgl_kernel._stubs import PROBED_NAMES, make_stub, register_stub_ops

__version__ = "0.0.1+cpu-standin"
IS_STANDIN = True

register_stub_ops()


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    max_context_len: int,
) -> None:
    """Write each request's newly allocated slots into its req_to_token row, in batch order."""
    cursor = 0
    for row, start, end in zip(
        req_pool_indices.tolist(), start_offset.tolist(), end_offset.tolist()
    ):
        n = end - start
        req_to_token[row, start:end] = out_cache_loc[cursor : cursor + n].to(req_to_token.dtype)
        cursor += n


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor, strides: torch.Tensor, tgt_loc: torch.Tensor, src_loc: torch.Tensor
) -> None:
    """Copy token rows src -> tgt in every KV buffer, addressed by raw base pointer and byte stride.

    SGLang hands buffers over as pointers (its GPU kernel needs them that way), so we copy bytes.
    Sources are read before any target is written, so overlapping moves stay correct.
    """
    tgt = tgt_loc.tolist()
    src = src_loc.tolist()
    for base, stride in zip(data_ptrs.tolist(), strides.tolist()):
        staged = []
        for s in src:
            buf = ctypes.create_string_buffer(stride)
            ctypes.memmove(buf, base + s * stride, stride)
            staged.append(buf)
        for t, buf in zip(tgt, staged):
            ctypes.memmove(base + t * stride, buf, stride)


def __getattr__(name: str):
    if name.startswith("__") or name in PROBED_NAMES:
        raise AttributeError(name)
    return make_stub(name)
