"""Every token of a stream is placed at the stream's clock, never at its row index.

Positions are decided in ``ForwardBatch.init_new``; an AFTER hook re-bases each stream request's
segment of ``positions`` (and all three rows of ``mrope_positions``) to ``clock + relative``. The
relative positions are the turn's own: for a media turn, SGLang's per-turn M-RoPE table (computed by
the processor from 0 for the new ids and stitched on at some offset, so differences within the turn
are right), otherwise ``row - start_len``. SGLang's absolute values are never trusted: after
compaction its media path (table max) and text path (delta) disagree.

The same pass finds an append's chunk tokens (their positions become the new candidates') and its
guidance rows, or a score turn's prompt rows (scored by ``score_capture`` inside this very forward).
"""

from __future__ import annotations

import torch
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

from sglang_hermes.runtime import score_capture, turn_faults
from sglang_hermes.runtime.stream_state import Turn, engine

TARGET = "sglang.srt.model_executor.forward_batch_info.ForwardBatch.init_new"


def _relative(req, turn: Turn, rows: torch.Tensor, mrope: bool) -> torch.Tensor:
    """[A, n] positions of row indices `rows` relative to the turn's first token."""
    mm = getattr(req, "multimodal_inputs", None)
    table = getattr(mm, "mrope_positions", None) if mm is not None else None
    if mrope and table is not None and table.shape[1] > int(rows[-1]) and table.shape[1] > turn.start_len:
        table = table.cpu()
        return table[:, rows] - table[:, turn.start_len:turn.start_len + 1]
    return (rows - turn.start_len)[None]


def _segments(ret, batch):
    """(first row, token count) of every request's part of this forward, in batch order."""
    if ret.forward_mode.is_decode():
        return [(int(n) - 1, 1) for n in batch.seq_lens_cpu.tolist()]
    if ret.forward_mode.is_extend() and ret.extend_seq_lens_cpu is not None:
        return list(zip(ret.extend_prefix_lens_cpu, ret.extend_seq_lens_cpu))
    return None


def _after_init_new(ret, cls, batch, model_runner, *args, **kwargs):
    engine.bind(model_runner)
    turns = [getattr(req, "hermes_turn", None) for req in batch.reqs]
    if not any(turns):
        return ret
    segments = _segments(ret, batch)
    mrope = ret.mrope_positions is not None
    token_index, new_positions = [], []  # the batch tokens of stream turns, and their [A, n] positions
    captures = []
    offset = 0
    for i, (req, turn) in enumerate(zip(batch.reqs, turns)):
        first, n = segments[i] if segments is not None else (0, 0)
        if turn is not None:
            # A turn whose positions cannot be placed is aborted (and rolled back); the others go on.
            with turn_faults.contained("positions", req):
                turn_faults.inject("positions", req)
                if segments is None:
                    raise RuntimeError(f"hermes streams do not support forward mode {ret.forward_mode}")
                rows = torch.arange(first, first + n)
                pos = turn.stream.clock + _relative(req, turn, rows, mrope)  # [A, n]
                cap = None
                if turn.role == "append":
                    _record_chunk(turn, rows, pos)
                if turn.role in ("append", "score"):
                    cap = score_capture.for_rows(turn, req, rows, offset, model_runner)
                token_index.append(torch.arange(offset, offset + n))
                new_positions.append(pos.expand(3, -1) if mrope else pos[:1])
                if cap is not None:
                    captures.append(cap)
        offset += n
    if token_index:
        idx, pos = torch.cat(token_index), torch.cat(new_positions, dim=1)
        ret.positions = _overwrite(ret.positions, idx, pos[0])
        if mrope:
            ret.mrope_positions = _overwrite(ret.mrope_positions, idx, pos)
    score_capture.expect(ret.rids, captures)
    return ret


def _overwrite(target: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A copy of ``target`` with ``target[..., idx] = values``, without reading it back to the host.

    This hook runs for every batch holding a stream turn (each decode step of an ask too), under the
    overlap scheduler's forward stream: a device-to-host read would wait for the previous batch. The
    new values go up from pinned memory without blocking and are scattered on the device; the clone
    keeps any tensor SGLang shares with ``target`` untouched."""
    values = values.to(target.dtype)
    if target.is_cuda:
        idx = idx.pin_memory().to(target.device, non_blocking=True)
        values = values.pin_memory().to(target.device, non_blocking=True)
    return target.clone().index_copy_(target.dim() - 1, idx, values)


def _record_chunk(turn: Turn, rows: torch.Tensor, pos: torch.Tensor) -> None:
    """Remember the positions given to the chunk's tokens: they are the stream's new candidates."""
    axes = engine.facts.axes
    if turn.chunk_positions is None:
        turn.chunk_positions = torch.full((turn.chunk_len, axes), -1, dtype=torch.long)
    idx = rows - turn.start_len
    sel = (idx >= 0) & (idx < turn.chunk_len)
    if sel.any():
        turn.chunk_positions[idx[sel]] = pos[:axes, sel].T if pos.shape[0] >= axes else pos[:1, sel].T.expand(-1, axes)


def install() -> None:
    HookRegistry.register(TARGET, _after_init_new, HookType.AFTER)
