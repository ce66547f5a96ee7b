"""Guidance modes of the HF reference streamer: in ``passes`` each prompt is scored on its own (prefix +
memory + chunk only), in ``block`` the three share one causal forward (later prompts see earlier ones).

Changing the local prompt's text is the probe: it comes first in the block, so in ``block`` mode the
global and mixed scores move with it, while in ``passes`` mode they must not move at all; the local
prompt's own scores move in both (the probe does reach the model).
"""

from __future__ import annotations

import pytest
import torch

from sglang_hermes.config import GuidancePrompts, HermesConfig
from sglang_hermes.layout import GUIDANCE_ORDER
from sglang_hermes.reference import ReferenceStreamer
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames

LOCAL, GLOBAL, MIXED = (GUIDANCE_ORDER.index(n) for n in ("local", "global", "mixed"))
OTHER_LOCAL = GuidancePrompts(local="List every object in the last frames and where it is.")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="module")
def masses(qwen_dir):
    """[L, 3, N] guidance mass after two chunks, per (mode, prompts), on the same frames."""
    frames = synthetic_frames(4, size=336, seed=3)
    out = {}
    for guidance in ("passes", "block"):
        for name, prompts in (("default", GuidancePrompts()), ("other_local", OTHER_LOCAL)):
            ref = ReferenceStreamer(qwen_dir, HermesConfig(budget_tokens=10_000, guidance=guidance, prompts=prompts))
            ref.append(frames[:2])
            ref.append(frames[2:])
            out[guidance, name] = ref.guidance_mass()
    return out


def test_in_passes_mode_each_prompt_is_scored_independently_of_the_others(masses):
    base, probe = masses["passes", "default"], masses["passes", "other_local"]
    assert not torch.allclose(base[:, LOCAL], probe[:, LOCAL])
    assert torch.equal(base[:, GLOBAL], probe[:, GLOBAL])
    # The mixed prompt embeds the local text, so it changes too; what it must not see is another prompt.
    assert not torch.allclose(base[:, MIXED], probe[:, MIXED])


def test_in_block_mode_later_prompts_see_the_earlier_ones(masses):
    base, probe = masses["block", "default"], masses["block", "other_local"]
    assert not torch.allclose(base[:, GLOBAL], probe[:, GLOBAL])  # the block is still one causal forward
    # The first prompt of the block sees nothing but the stream: it is scored as its own pass would be.
    assert torch.allclose(masses["block", "default"][:, LOCAL], masses["passes", "default"][:, LOCAL], atol=1e-6)


def test_the_two_modes_score_the_later_prompts_differently(masses):
    for prompt in (GLOBAL, MIXED):
        assert not torch.allclose(masses["block", "default"][:, prompt], masses["passes", "default"][:, prompt])
