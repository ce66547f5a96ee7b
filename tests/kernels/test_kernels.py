"""Every kernel against its float64 torch reference on fresh random inputs (TRITON_INTERPRET=1)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from triton_kernels import dispatch
from triton_kernels.attention_mass import attention_mass_reference, attention_mass_triton
from triton_kernels.compaction import compact_reference, compact_triton
from triton_kernels.mix_smooth import mix_smooth_reference, mix_smooth_triton
from triton_kernels.rerotate import rerotate_reference, rerotate_triton

SETTINGS = settings(max_examples=12, deadline=None)
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}
MROPE = [2, 3, 3]


def rope_args(mrope: bool, theta: float = 1e6, **kw) -> dict:
    """Kernel keyword arguments of one layer's unscaled RoPE over head_dim 16."""
    from sglang_hermes.policy.rope import Rope

    return Rope.uniform(16, theta, mrope_section=MROPE if mrope else None, **kw).kernel_args(layer=0)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 40), heads=st.sampled_from([1, 2, 4]),
       dtype=st.sampled_from(DTYPES), mrope=st.booleans())
def test_rerotate_matches_reference(seed, n, heads, dtype, mrope):
    g = gen(seed)
    buf = torch.randn(64, heads, 16, generator=g).to(dtype)
    slots = torch.randperm(63, generator=g)[:n] + 1
    delta = torch.randint(-40000, 40000, (n, 3) if mrope else (n,), generator=g)
    got, want = buf.clone(), buf.clone()
    rerotate_triton(got, slots, delta, **rope_args(mrope))
    rerotate_reference(want, slots, delta, **rope_args(mrope))
    assert torch.allclose(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])
    untouched = torch.ones(64, dtype=torch.bool)
    untouched[slots] = False
    assert torch.equal(got[untouched], buf[untouched])  # nothing outside the given slots moves


def test_rerotate_round_trip_and_policy_agreement():
    from sglang_hermes.policy.rope import Rope, rotate_at

    g = gen(3)
    raw = torch.randn(20, 2, 16, generator=g, dtype=torch.float64)
    pos = torch.randint(0, 20000, (20, 3), generator=g)
    new = torch.randint(0, 20000, (20, 3), generator=g)
    buf = torch.zeros(21, 2, 16, dtype=torch.float64)
    slots = torch.arange(1, 21)
    rope = Rope.uniform(16, 1e6, mrope_section=MROPE)
    buf[slots] = rotate_at(raw, pos, rope, 0)
    before = buf.clone()
    rerotate_triton(buf, slots, new - pos, **rope.kernel_args(layer=0))
    assert torch.allclose(buf[slots], rotate_at(raw, new, rope, 0), atol=1e-5)
    rerotate_triton(buf, slots, pos - new, **rope.kernel_args(layer=0))
    assert torch.allclose(buf, before, atol=1e-5)



def model_like_rope(g, layers: int, rotary_half: int, mrope: bool):
    """Per-layer frequencies (two bases alternating, like Gemma 3), interleaved M-RoPE axes (Qwen3-VL) and
    partial rotary (``rotary_half`` < 8 of a head of 16): every per-layer, axis and pair-layout path."""
    from sglang_hermes.policy.rope import Rope, axis_of_frequency, default_inv_freq

    freqs = torch.stack([default_inv_freq(2 * rotary_half, 1e4 if l % 2 else 1e6) / (1 + l % 3)
                         for l in range(layers)])
    section = [rotary_half - 2 * (rotary_half // 3), rotary_half // 3, rotary_half // 3] if mrope else None
    return Rope(freqs, axis_of_frequency(rotary_half, section, interleaved=True), 3 if mrope else 1, 16,
                torch.ones(layers, dtype=torch.float64))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rotary_half=st.sampled_from([3, 4, 8]), mrope=st.booleans(),
       dtype=st.sampled_from(DTYPES))
def test_rerotate_with_a_models_own_rope_matches_the_policy(seed, rotary_half, mrope, dtype):
    """The kernel and its reference against policy.rope for partial rotary and interleaved axes; the dims
    past the rotary part come out bit-identical."""
    from sglang_hermes.policy.rope import rotate_at

    g = gen(seed)
    rope = model_like_rope(g, 2, rotary_half, mrope)
    raw = torch.randn(20, 2, 16, generator=g, dtype=torch.float64)
    pos = torch.randint(0, 5000, (20, rope.axes), generator=g)
    new = torch.randint(0, 5000, (20, rope.axes), generator=g)
    slots = torch.arange(1, 21)
    for layer in range(2):
        buf = torch.zeros(21, 2, 16, dtype=dtype)
        buf[slots] = rotate_at(raw, pos, rope, layer).to(dtype)
        want = buf.clone()
        rerotate_triton(buf, slots, new - pos, **rope.kernel_args(layer=layer))
        rerotate_reference(want, slots, new - pos, **rope.kernel_args(layer=layer))
        assert torch.allclose(buf.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])
        assert torch.equal(buf[slots, :, 2 * rotary_half:], want[slots, :, 2 * rotary_half:])
        assert torch.allclose(buf[slots].double(), rotate_at(raw, new, rope, layer), atol=TOL[dtype] * 8)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), L=st.integers(1, 4), M=st.integers(1, 30), extra=st.integers(0, 20),
       rotary_half=st.sampled_from([3, 8]), mrope=st.booleans())
def test_compaction_with_per_layer_rope_matches_reference(seed, L, M, extra, rotary_half, mrope):
    g = gen(seed)
    rope = model_like_rope(g, L, rotary_half, mrope)
    N, P, A = M + extra, 3, rope.axes
    S = P + N + 8
    row = torch.randperm(S - 1, generator=g)[: P + N] + 1
    plan = random_plan(g, L, M, N, A, row, P, {L - 1} if M >= 2 and extra > 0 else set())
    kb = [torch.randn(S, 2, 16, generator=g) for _ in range(L)]
    vb = [torch.randn(S, 2, 16, generator=g) for _ in range(L)]
    got = ([b.clone() for b in kb], [b.clone() for b in vb])
    want = ([b.clone() for b in kb], [b.clone() for b in vb])
    compact_triton(*got, *plan, **rope.kernel_args())
    compact_reference(*want, *plan, **rope.kernel_args())
    for x, y in zip(got[0] + got[1], want[0] + want[1]):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-5)

@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), G=st.integers(0, 9), kv=st.sampled_from([1, 2]), group=st.sampled_from([1, 2, 4]),
       n=st.integers(0, 75), dtype=st.sampled_from(DTYPES), segments=st.integers(1, 3))
def test_attention_mass_matches_reference(seed, G, kv, group, n, dtype, segments):
    g = gen(seed)
    q = torch.randn(G, kv * group, 16, generator=g).to(dtype)
    buf = torch.randn(96, kv, 16, generator=g).to(dtype)
    slots = torch.randperm(95, generator=g)[:n] + 1
    seg = torch.randint(0, segments, (G,), generator=g)
    got = attention_mass_triton(q, buf, slots, seg, segments, 0.25)
    want = attention_mass_reference(q, buf, slots, seg, segments, 0.25)
    assert got.shape == (segments, n) and torch.isfinite(got).all()
    assert torch.allclose(got, want, atol=TOL[dtype], rtol=TOL[dtype])
    present = torch.bincount(seg, minlength=segments) > 0
    if n:  # every present segment's mass is a probability distribution over the slots
        assert torch.allclose(got.sum(1)[present], torch.ones(int(present.sum())), atol=1e-3)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), L=st.integers(1, 14), n=st.integers(0, 300))
def test_mix_smooth_matches_reference_and_policy(seed, L, n):
    from sglang_hermes.policy.scores import mix
    from sglang_hermes.policy.smoothing import smooth

    g = gen(seed)
    attn = torch.rand(L, n, generator=g)
    a, k, lam = torch.rand(L, generator=g), torch.rand(L, generator=g) * 20, torch.rand(L, generator=g)
    got = mix_smooth_triton(attn, a, k, lam)
    assert torch.allclose(got, mix_smooth_reference(attn, a, k, lam), atol=1e-5)
    if n:
        policy = smooth(mix(attn.double(), a.double(), k.double()), lam.double())
        assert torch.allclose(got.double(), policy, atol=1e-5)


def random_plan(g, L, M, N, A, row, P, summary_layers):
    """A plan shaped like the policy's: kept candidates ascending, row slot of candidate c = row[P+c]."""
    src = torch.empty(L, M, dtype=torch.long)
    fold = torch.full((L, N), -1, dtype=torch.long)
    for l in range(L):
        n_keep = M - int(l in summary_layers)
        keep = torch.randperm(N, generator=g)[:n_keep].sort().values
        src[l, :n_keep] = row[P + keep]
        if l in summary_layers:
            src[l, -1] = -1
            evicted = torch.ones(N, dtype=torch.bool)
            evicted[keep] = False
            f = evicted.nonzero().flatten()
            fold[l, : len(f)] = row[P + f]
    return (src, row[P:P + M].clone(), torch.randint(-3000, 3000, (L, M, A), generator=g), fold,
            torch.randint(-3000, 3000, (L, N, A), generator=g))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), L=st.integers(1, 5), M=st.integers(1, 40), extra=st.integers(0, 30),
       heads=st.sampled_from([1, 2]), dtype=st.sampled_from(DTYPES), mrope=st.booleans())
def test_compaction_with_overlapping_slots_matches_reference(seed, L, M, extra, heads, dtype, mrope):
    g = gen(seed)
    N, P, A = M + extra, 3, 3 if mrope else 1
    S = P + N + 8
    row = torch.randperm(S - 1, generator=g)[: P + N] + 1  # the stream's row: overlapping src and dst
    summary = {L - 1} if M >= 2 and extra > 0 else set()
    plan = random_plan(g, L, M, N, A, row, P, summary)
    kb = [torch.randn(S, heads, 16, generator=g).to(dtype) for _ in range(L)]
    vb = [torch.randn(S, heads, 16, generator=g).to(dtype) for _ in range(L)]
    got = ([b.clone() for b in kb], [b.clone() for b in vb])
    want = ([b.clone() for b in kb], [b.clone() for b in vb])
    kw = rope_args(mrope, 1e4)
    compact_triton(*got, *plan, **kw)
    compact_reference(*want, *plan, **kw)
    for x, y in zip(got[0] + got[1], want[0] + want[1]):
        assert torch.allclose(x.float(), y.float(), atol=TOL[dtype] * 4, rtol=TOL[dtype] * 4)


def test_compaction_writes_every_memory_slot():
    """Poison the destination slots with NaN: a slot the kernel forgot would stay NaN."""
    g = gen(7)
    L, M, N, P = 3, 12, 20, 2
    row = torch.arange(1, P + N + 1)
    plan = random_plan(g, L, M, N, 3, row, P, {2})
    kb = [torch.randn(P + N + 1, 2, 16, generator=g) for _ in range(L)]
    vb = [torch.randn(P + N + 1, 2, 16, generator=g) for _ in range(L)]
    src, dst = plan[0], plan[1]
    for l in range(L):  # sources that are not also destinations get poisoned... only slots never read
        never_read = ~torch.isin(dst, src[l]) & ~torch.isin(dst, plan[3][l])
        kb[l][dst[never_read]] = float("nan")
        vb[l][dst[never_read]] = float("nan")
    compact_triton(kb, vb, *plan, **rope_args(True, 1e4))
    assert all(torch.isfinite(b[dst]).all() for b in kb + vb)


def test_empty_inputs_are_no_ops():
    buf = torch.randn(8, 2, 16)
    before = buf.clone()
    rerotate_triton(buf, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), **rope_args(False))
    compact_triton([buf], [buf.clone()], torch.empty(1, 0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                   torch.empty(1, 0, 1, dtype=torch.long), torch.empty(1, 0, dtype=torch.long),
                   torch.empty(1, 0, 1, dtype=torch.long), **rope_args(False))
    assert torch.equal(buf, before)
    assert attention_mass_triton(torch.randn(0, 2, 16), buf, torch.arange(3), torch.empty(0, dtype=torch.long), 2, 1.0).abs().sum() == 0


def test_dispatch_picks_torch_on_cpu_and_triton_when_forced(monkeypatch):
    buf = torch.randn(8, 1, 16)
    slots, delta = torch.tensor([1, 2]), torch.tensor([5, 6])
    dispatch.calls.clear()
    monkeypatch.delenv(dispatch.FORCE_ENV, raising=False)
    dispatch.rerotate(buf, slots, delta, **rope_args(False))
    monkeypatch.setenv(dispatch.FORCE_ENV, "1")
    dispatch.rerotate(buf, slots, -delta, **rope_args(False))
    assert dispatch.calls == {("rerotate", "torch"): 1, ("rerotate", "triton"): 1}
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError):
        dispatch.rerotate(buf, slots, delta, **rope_args(False))
