"""Re-rotation against an independent computation: rotating at p then by p'-p equals rotating at p'."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang_hermes.policy.positions import contiguous
from sglang_hermes.policy.rope import Rope, fold_summary, rotate_at, rotate_by_delta

MROPE = [2, 3, 3]  # the tiny Qwen2.5-VL's section over head_dim 16
ROPE_1D, ROPE_M = Rope.uniform(16, 1e6), Rope.uniform(16, 1e6, mrope_section=MROPE)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), heads=st.integers(1, 4), mrope=st.booleans(), seed=st.integers(0, 10**6))
def test_delta_rotation_equals_rotation_at_the_new_position_float64(n, heads, mrope, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, heads, 16, generator=g, dtype=torch.float64)
    shape = (n, 3) if mrope else (n,)
    p = torch.randint(0, 30000, shape, generator=g)
    q = torch.randint(0, 30000, shape, generator=g)
    rope = ROPE_M if mrope else ROPE_1D
    moved = rotate_by_delta(rotate_at(x, p, rope, 0), q - p, rope, 0)
    assert torch.allclose(moved, rotate_at(x, q, rope, 0), atol=1e-9, rtol=0)


def test_delta_rotation_in_bf16_stays_within_bf16_tolerance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 128, generator=g)
    p, q = torch.randint(0, 8000, (64, 3), generator=g), torch.randint(0, 8000, (64, 3), generator=g)
    rope = Rope.uniform(128, 1e6, mrope_section=[16, 24, 24])
    stored = rotate_at(x, p, rope, 0).to(torch.bfloat16)
    moved = rotate_by_delta(stored, q - p, rope, 0).float()
    assert torch.allclose(moved, rotate_at(x, q, rope, 0), atol=0.05, rtol=0.02)


def test_mrope_matches_hf_qwen2_5_vl_and_round_trips():
    """Our M-RoPE equals HF Qwen2.5-VL's rotary module + apply_rotary_pos_emb on the same positions."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VLRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    cfg = Qwen2_5_VLTextConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                               rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": MROPE})
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 2, 16, generator=g)
    pos = torch.randint(0, 500, (7, 3), generator=g)
    cos, sin = Qwen2_5_VLRotaryEmbedding(cfg)(x, pos.T[:, None, :])
    q = x.transpose(0, 1)[None]  # [1, H, N, D]
    hf, _ = apply_rotary_pos_emb(q, q, cos, sin)
    ours = rotate_at(x, pos, ROPE_M, 0)
    assert torch.allclose(hf[0].transpose(0, 1), ours, atol=1e-4)
    back = rotate_by_delta(ours.double(), -pos, ROPE_M, 0)
    assert torch.allclose(back, x.double(), atol=1e-5)


def test_summary_key_is_the_mean_of_evicted_keys_rerotated():
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(5, 2, 16, generator=g, dtype=torch.float64)
    pos = torch.tensor([[3, 3, 3], [3, 4, 5], [9, 9, 9], [10, 11, 12], [20, 20, 20]])
    keys = rotate_at(raw, pos, ROPE_M, 0)
    values = torch.randn(5, 2, 16, generator=g, dtype=torch.float64)
    target = torch.tensor([40, 40, 40])
    k, v = fold_summary(keys, values, pos, target, ROPE_M, 0)
    want = rotate_at(raw, target.expand(5, 3), ROPE_M, 0).mean(0)
    assert torch.allclose(k, want, atol=1e-9) and torch.allclose(v, values.mean(0))


def qwen_chunk(start: int, frames: int = 3, side: int = 2, t_step: int = 2) -> torch.Tensor:
    """Positions [frames*side*side, 3] of one chunk in Qwen2.5-VL's layout: frames share h/w."""
    t, h, w = torch.meshgrid(torch.arange(frames) * t_step, torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([t, h, w], -1).reshape(-1, 3) + start


def test_reindex_without_evictions_is_a_uniform_shift_per_chunk():
    # Three chunks with gaps before and between them (earlier chunks evicted whole, asks in between).
    chunks = [qwen_chunk(40), qwen_chunk(60), qwen_chunk(90, frames=2)]
    old = torch.cat(chunks)
    chunk = torch.cat([torch.full((len(c),), k) for k, c in enumerate(chunks)])
    new = contiguous(old, chunk, start=7)
    cursor = 7
    for k, c in enumerate(chunks):
        shift = new[chunk == k] - c
        assert bool((shift == shift[0, 0]).all())  # one offset for every token and axis of the chunk
        assert int(new[chunk == k].min()) == cursor  # the gap before it is closed
        cursor = int(new[chunk == k].max()) + 1
    assert cursor - 7 == sum(int(c.max() - c.min()) + 1 for c in chunks)  # span = the chunks' own spans
    same_patch_next_frame = new[4] - new[0]  # frame 0 and frame 1 of chunk 0, same h/w
    assert same_patch_next_frame.tolist() == [2, 0, 0]


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5), gaps=st.lists(st.integers(0, 50), min_size=5,
       max_size=5), seed=st.integers(0, 10**6))
def test_reindex_keeps_each_chunk_rigid_and_chunks_apart_in_order(sizes, gaps, seed):
    g = torch.Generator().manual_seed(seed)
    parts, clock = [], 30
    for frames, gap in zip(sizes, gaps):
        c = qwen_chunk(clock + gap, frames=frames)
        clock = int(c.max()) + 1
        parts.append(c[torch.rand(len(c), generator=g) < 0.6])  # random evictions inside the chunk
    chunk = torch.cat([torch.full((len(p),), k) for k, p in enumerate(parts)])
    old = torch.cat(parts)
    if len(old) == 0:
        return
    new = contiguous(old, chunk, start=5)
    assert int(new.min()) == 5 and int(new.max()) <= int(old.max())  # moved down, never spread out
    prev_max = 4
    for k in chunk.unique().tolist():
        d = new[chunk == k] - old[chunk == k]
        assert bool((d == d[0, 0]).all()) and int(new[chunk == k].min()) == prev_max + 1
        prev_max = int(new[chunk == k].max())


def test_reindex_in_1d_closes_every_gap():
    assert contiguous(torch.tensor([[4], [9], [11]]), torch.tensor([0, 0, 1]), 0).flatten().tolist() == [0, 1, 2]
