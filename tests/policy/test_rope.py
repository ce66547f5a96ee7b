"""Re-rotation against an independent computation: rotating at p then by p'-p equals rotating at p'."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang_hermes.policy.positions import contiguous
from sglang_hermes.policy.rope import fold_summary, rotate_at, rotate_by_delta

MROPE = [2, 3, 3]  # the tiny Qwen2.5-VL's section over head_dim 16


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), heads=st.integers(1, 4), mrope=st.booleans(), seed=st.integers(0, 10**6))
def test_delta_rotation_equals_rotation_at_the_new_position_float64(n, heads, mrope, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, heads, 16, generator=g, dtype=torch.float64)
    shape = (n, 3) if mrope else (n,)
    p = torch.randint(0, 30000, shape, generator=g)
    q = torch.randint(0, 30000, shape, generator=g)
    section = MROPE if mrope else None
    moved = rotate_by_delta(rotate_at(x, p, rope_theta=1e6, mrope_section=section), q - p,
                            rope_theta=1e6, mrope_section=section)
    assert torch.allclose(moved, rotate_at(x, q, rope_theta=1e6, mrope_section=section), atol=1e-9, rtol=0)


def test_delta_rotation_in_bf16_stays_within_bf16_tolerance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 128, generator=g)
    p, q = torch.randint(0, 8000, (64, 3), generator=g), torch.randint(0, 8000, (64, 3), generator=g)
    kw = dict(rope_theta=1e6, mrope_section=[16, 24, 24])
    stored = rotate_at(x, p, **kw).to(torch.bfloat16)
    moved = rotate_by_delta(stored, q - p, **kw).float()
    assert torch.allclose(moved, rotate_at(x, q, **kw), atol=0.05, rtol=0.02)


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
    ours = rotate_at(x, pos, rope_theta=1e6, mrope_section=MROPE)
    assert torch.allclose(hf[0].transpose(0, 1), ours, atol=1e-4)
    back = rotate_by_delta(ours.double(), -pos, rope_theta=1e6, mrope_section=MROPE)
    assert torch.allclose(back, x.double(), atol=1e-5)


def test_summary_key_is_the_mean_of_evicted_keys_rerotated():
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(5, 2, 16, generator=g, dtype=torch.float64)
    pos = torch.tensor([[3, 3, 3], [3, 4, 5], [9, 9, 9], [10, 11, 12], [20, 20, 20]])
    keys = rotate_at(raw, pos, rope_theta=1e6, mrope_section=MROPE)
    values = torch.randn(5, 2, 16, generator=g, dtype=torch.float64)
    target = torch.tensor([40, 40, 40])
    k, v = fold_summary(keys, values, pos, target, rope_theta=1e6, mrope_section=MROPE)
    want = rotate_at(raw, target.expand(5, 3), rope_theta=1e6, mrope_section=MROPE).mean(0)
    assert torch.allclose(k, want, atol=1e-9) and torch.allclose(v, values.mean(0))


def test_contiguous_reindex_keeps_frame_layout_and_order():
    old = torch.tensor([[5, 5, 5], [5, 6, 5], [9, 9, 10], [9, 10, 10], [30, 30, 30]])
    new = contiguous(old, start=2)
    assert new[0].tolist() == [2, 2, 2] and (new[1] - new[0]).tolist() == (old[1] - old[0]).tolist()
    assert int(new[2].min()) == int(new[:2].max()) + 1 and (new[3] - new[2]).tolist() == [0, 1, 0]
    assert new[4].tolist() == [int(new[:4].max()) + 1] * 3
    assert contiguous(torch.tensor([[4], [9], [11]]), 0).flatten().tolist() == [0, 1, 2]


def _contiguous_by_groups(old: torch.Tensor, start: int) -> torch.Tensor:
    """The definition, one temporal group at a time: each group starts right after the previous one ends."""
    new, cursor, i = old.clone(), start, 0
    while i < len(old):
        j = i + 1
        while j < len(old) and old[j, 0] == old[j - 1, 0]:
            j += 1
        new[i:j] = old[i:j] + cursor - int(old[i:j].min())
        cursor, i = int(new[i:j].max()) + 1, j
    return new


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=30),
       start=st.integers(0, 50))
def test_vectorised_mrope_reindex_equals_the_group_by_group_definition(steps, start):
    t = torch.cumsum(torch.tensor([s[0] for s in steps]), 0)  # non-decreasing temporal axis: stream order
    old = torch.stack([t, t + torch.tensor([s[1] for s in steps]), t + torch.tensor([s[2] for s in steps])], 1)
    assert torch.equal(contiguous(old, start), _contiguous_by_groups(old, start))
