"""Properties of the engine-free HERMES policy and its baselines (hypothesis)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sglang_hermes.config import HermesConfig, TierMixing
from sglang_hermes.policy import StreamView, get_policy, recent_hermes, registered_policies
from sglang_hermes.policy.smoothing import smooth, smooth_layers
from sglang_hermes.policy.tiers import Tier, layer_params, layer_tiers

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def stream_views(draw, max_layers=14, max_candidates=40, axes=(1, 3)):
    L = draw(st.integers(2, max_layers))
    N = draw(st.integers(2, max_candidates))
    A = draw(st.sampled_from(axes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    attention = torch.rand(L, N, generator=g, dtype=torch.float64)
    base = torch.sort(torch.randint(0, 10 * N, (N,), generator=g)).values + torch.arange(N)
    positions = base.view(1, N, 1).expand(L, N, A).clone()
    chunk = torch.sort(torch.randint(0, 4, (N,), generator=g)).values.expand(L, N).clone()
    return StreamView(attention, positions, torch.zeros(L, N, dtype=torch.bool), chunk, memory_start=7)


def one_chunk(L: int, N: int) -> torch.Tensor:
    return torch.zeros(L, N, dtype=torch.long)


def cfg_for(policy: str, budget: int, **kw) -> HermesConfig:
    return HermesConfig(policy=policy, budget_tokens=budget, sink_tokens=min(1, budget - 1), **kw)


@SETTINGS
@given(view=stream_views(), frac=st.floats(0.05, 0.95),
       policy=st.sampled_from(["hermes", "fifo", "sink_window", "uniform", "recent_hermes"]), reindex=st.booleans())
def test_plan_keeps_exactly_the_budget_and_is_a_valid_selection(view, frac, policy, reindex):
    budget = max(2, int(frac * view.num_candidates))
    plan = get_policy(cfg_for(policy, budget)).plan(view, reindex=reindex)
    if view.num_candidates <= budget:
        assert plan is None
        return
    assert plan.keep.shape == (view.num_layers, budget)  # every layer keeps exactly M slots
    plan.validate(view.num_candidates)  # ascending, in range, summary last, folds are evicted
    for l in range(view.num_layers):
        kept = plan.keep[l][plan.keep[l] >= 0]
        folded = plan.fold[l][plan.fold[l] >= 0]
        if plan.has_summary[l]:  # nothing lost: kept + folded = all candidates
            assert kept.numel() + folded.numel() == view.num_candidates
        assert torch.equal(plan.old_pos[l, : kept.numel()], view.positions[l, kept])
        if reindex:
            starts = plan.new_pos[l, : kept.numel(), 0]
            assert int(starts[0]) == view.memory_start and bool((starts[1:] > starts[:-1]).all())
        else:
            assert torch.equal(plan.new_pos[l, : kept.numel()], plan.old_pos[l, : kept.numel()])


def test_summary_position_follows_the_last_kept_token():
    view = StreamView(torch.rand(10, 9, dtype=torch.float64), torch.arange(9).view(1, 9, 1).expand(10, 9, 1) * 3,
                      torch.zeros(10, 9, dtype=torch.bool), one_chunk(10, 9))
    plan = get_policy(cfg_for("hermes", 4)).plan(view)
    for l in plan.has_summary.nonzero().flatten().tolist():
        assert int(plan.summary_position()[l, 0]) == int(plan.new_pos[l, -2, 0]) + 1
    assert bool(plan.has_summary[-1]) and not bool(plan.has_summary[0])


@SETTINGS
@given(view=stream_views())
def test_pure_recency_layers_keep_exactly_the_newest(view):
    budget = max(2, view.num_candidates // 2)
    no_smoothing = dict(shallow=TierMixing(a=1.0, k=20.0, smoothing=0.0))
    plan = get_policy(cfg_for("hermes", budget, **no_smoothing)).plan(view)
    if plan is None:
        return
    tiers = layer_tiers(view.num_layers, cfg_for("hermes", budget))
    for l, tier in enumerate(tiers):
        if tier is Tier.SHALLOW:
            assert plan.keep[l].tolist() == list(range(view.num_candidates - budget, view.num_candidates))


@SETTINGS
@given(view=stream_views())
def test_pure_attention_layers_keep_exactly_the_top_mass(view):
    budget = max(2, view.num_candidates // 2)
    cfg = cfg_for("hermes", budget, deep=TierMixing(a=0.0, k=0.0, smoothing=0.0), summary_token=False)
    plan = get_policy(cfg).plan(view)
    if plan is None:
        return
    last = view.num_layers - 1  # the deepest layer is never smoothed by anything
    want = torch.topk(view.attention[last], budget).indices.sort().values
    assert plan.keep[last].tolist() == want.tolist()


@SETTINGS
@given(L=st.integers(1, 12), N=st.integers(1, 30), seed=st.integers(0, 1000))
def test_smoothing_with_zero_lambda_is_the_identity(L, N, seed):
    s = torch.rand(L, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.equal(smooth(s, torch.zeros(L)), s)
    assert all(torch.equal(a, b) for a, b in zip(smooth_layers(list(s), torch.zeros(L)), s))


def test_smoothing_recurrence_and_length_interpolation():
    s = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 4.0]], dtype=torch.float64)
    lam = torch.tensor([0.5, 0.5, 0.5])
    out = smooth(s, lam)
    assert torch.allclose(out[2], s[2]) and torch.allclose(out[1], 0.5 * s[1] + 0.5 * s[2])
    assert torch.allclose(out[0], 0.5 * s[0] + 0.5 * out[1])
    ragged = smooth_layers([torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64)], lam)
    assert torch.allclose(ragged[0], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))


def test_baselines_behave_as_named():
    L, N, M = 10, 12, 5
    view = StreamView(torch.rand(L, N, dtype=torch.float64), torch.arange(N).view(1, N, 1).expand(L, N, 1).clone(),
                      torch.zeros(L, N, dtype=torch.bool), one_chunk(L, N))
    fifo = get_policy(cfg_for("fifo", M)).plan(view)
    assert all(row == list(range(N - M, N)) for row in fifo.keep.tolist())
    sink = get_policy(HermesConfig(policy="sink_window", budget_tokens=M, sink_tokens=2)).plan(view)
    assert all(row == [0, 1] + list(range(N - M + 2, N)) for row in sink.keep.tolist())
    uniform = get_policy(cfg_for("uniform", M)).plan(view)
    assert all(row == uniform.keep[0].tolist() for row in uniform.keep.tolist()) and not uniform.has_summary.any()
    assert get_policy(cfg_for("full", M)).plan(view) is None
    assert set(registered_policies()) == {"hermes", "full", "fifo", "sink_window", "uniform", "recent_hermes"}


def test_tier_parameters_follow_the_paper():
    p = layer_params(12, HermesConfig())
    assert [t.value for t in p.tiers] == ["shallow"] + ["middle"] * 7 + ["deep"] * 4
    assert p.a[0] == 1.0 and p.k[0] == 20.0 and p.a[-1] == 0.0 and p.k[-1] == 0.0
    assert float(p.a[1]) == pytest.approx(0.75) and float(p.k[1]) == pytest.approx(20.0)
    assert float(p.lam[0]) == 0.1 and float(p.lam[5]) == 0.3 and float(p.lam[-1]) == 0.4


@pytest.mark.parametrize("bad", [dict(budget_tokens=0), dict(shallow_ratio=1.5), dict(deep_ratio=-0.1),
                                 dict(shallow_ratio=0.6, deep_ratio=0.6), dict(policy="lru"),
                                 dict(reindex="sometimes"), dict(policy="sink_window", budget_tokens=8, sink_tokens=8),
                                 dict(policy="recent_hermes", budget_tokens=8, recent_tokens=8),
                                 dict(recent_tokens=-1)])
def test_config_rejects_bad_values_with_a_clear_error(bad):
    with pytest.raises(ValidationError) as err:
        HermesConfig(**bad)
    assert str(err.value)


# -- recent_hermes ---------------------------------------------------------------------------------

def test_recent_window_defaults_to_a_quarter_of_the_budget():
    assert HermesConfig(policy="recent_hermes", budget_tokens=100).recent_window == 25
    assert HermesConfig(policy="recent_hermes", budget_tokens=100, recent_tokens=0).recent_window == 0


@SETTINGS
@given(view=stream_views(), frac=st.floats(0.05, 0.95), reindex=st.booleans())
def test_recent_hermes_with_an_empty_window_is_hermes(view, frac, reindex):
    budget = max(2, int(frac * view.num_candidates))
    recent = get_policy(cfg_for("recent_hermes", budget, recent_tokens=0)).plan(view, reindex=reindex)
    hermes = get_policy(cfg_for("hermes", budget)).plan(view, reindex=reindex)
    assert (recent is None) == (hermes is None)
    if recent is not None:
        for name in ("keep", "old_pos", "new_pos", "fold", "fold_pos", "has_summary"):
            assert torch.equal(getattr(recent, name), getattr(hermes, name)), name


@SETTINGS
@given(view=stream_views(), frac=st.floats(0.3, 0.95), wfrac=st.floats(0.0, 0.9))
def test_recent_hermes_keeps_the_window_and_runs_hermes_on_the_rest_with_what_is_left(view, frac, wfrac):
    budget = max(3, int(frac * view.num_candidates))
    window = min(int(wfrac * budget), budget - 2)
    if view.num_candidates <= budget:
        return
    plan = get_policy(cfg_for("recent_hermes", budget, recent_tokens=window)).plan(view)
    N = view.num_candidates
    older = torch.arange(N - window).expand(view.num_layers, -1)
    alone = get_policy(cfg_for("hermes", budget - window)).plan(recent_hermes.select(view, older))
    for l in range(view.num_layers):
        kept = plan.keep[l][plan.keep[l] >= 0]
        assert kept[kept >= N - window].tolist() == list(range(N - window, N))  # the newest W, in every layer
        hermes_kept = alone.keep[l][alone.keep[l] >= 0]
        assert kept[kept < N - window].tolist() == hermes_kept.tolist()  # older: HERMES' choice at budget M-W
        assert torch.equal(plan.fold[l], alone.fold[l]) and bool(plan.has_summary[l]) == bool(alone.has_summary[l])


@SETTINGS
@given(L=st.integers(4, 12), budget=st.integers(6, 30), wfrac=st.floats(0.0, 0.9),
       chunk_sizes=st.lists(st.integers(1, 20), min_size=2, max_size=8), seed=st.integers(0, 2**31 - 1))
def test_recent_hermes_stream_always_holds_the_newest_window_in_every_layer(L, budget, wfrac, chunk_sizes, seed):
    """Executed like the runtime does it, append after append (summaries included): every layer holds
    exactly the budget once over it, and always the newest W stream tokens."""
    window = int(wfrac * (budget - 1))
    policy = get_policy(cfg_for("recent_hermes", budget, recent_tokens=window))
    g = torch.Generator().manual_seed(seed)
    token = torch.empty(L, 0, dtype=torch.long)  # stream index of each candidate, -1 = summary
    summary = torch.empty(L, 0, dtype=torch.bool)
    chunk = torch.empty(L, 0, dtype=torch.long)
    seen = 0
    for k, size in enumerate(chunk_sizes):
        new = torch.arange(seen, seen + size).expand(L, -1)
        seen += size
        token, chunk = torch.cat([token, new], 1), torch.cat([chunk, torch.full((L, size), k)], 1)
        summary = torch.cat([summary, torch.zeros(L, size, dtype=torch.bool)], 1)
        view = StreamView(torch.rand(token.shape, generator=g, dtype=torch.float64),
                          token.clamp(min=0)[..., None], summary, chunk)
        plan = policy.plan(view, reindex=bool(k % 2))
        if plan is None:
            assert token.shape[1] <= budget
            continue
        plan.validate(token.shape[1])
        token, chunk, summary = plan.carry(token, -1), plan.carry(chunk, -1), plan.keep < 0
        assert token.shape == (L, budget)
        newest = set(range(seen - min(window, seen), seen))
        assert all(newest <= set(row) for row in token.tolist())
