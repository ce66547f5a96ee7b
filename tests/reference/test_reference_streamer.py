"""The HF reference streamer: exact against one offline prefill when nothing is compressed, a fixed
memory answered from directly when it is, for M-RoPE (Qwen2.5-VL) and 1D RoPE (Gemma 3)."""

from __future__ import annotations

import pytest
import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.policy.rope import rotate_by_delta
from sglang_hermes.reference import ReferenceStreamer
from sglang_hermes.layout import IMAGE_SEGMENT, VIDEO_SEGMENT
from sglang_hermes.testing.tiny_models import build_tiny_gemma3, build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames

QUESTION = "Which shape moves?"
PREFIX = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
SUFFIX = f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
BUILDERS = {"qwen2_5_vl": build_tiny_qwen2_5_vl, "gemma3": build_tiny_gemma3}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def model(request, tmp_path_factory):
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def chunks(n=3, frames=4, seed=21):
    f = synthetic_frames(n * frames, seed=seed)
    return [f[i:i + frames] for i in range(0, len(f), frames)]


def offline_logits(arch: str, streamer: ReferenceStreamer, video_chunks) -> torch.Tensor:
    """One prefill of [prefix + every chunk in order + question] through HF's own forward."""
    proc = streamer.processor
    if arch == "qwen2_5_vl":
        from transformers.video_utils import VideoMetadata

        inputs = proc(text=[PREFIX + VIDEO_SEGMENT * len(video_chunks) + SUFFIX], videos=list(video_chunks),
                      do_sample_frames=False, return_tensors="pt",
                      video_metadata=[VideoMetadata(total_num_frames=len(c), fps=2.0) for c in video_chunks])
    else:
        from PIL import Image

        frames = [f for c in video_chunks for f in c]
        inputs = proc(text=[PREFIX + IMAGE_SEGMENT * len(frames) + SUFFIX], images=[Image.fromarray(f) for f in frames],
                      return_tensors="pt")
        inputs.pop("token_type_ids", None)  # causal image attention, as the streamer (and SGLang on CPU)
    with torch.no_grad():
        return streamer.model(**inputs).logits[0, -1]


def question_logits(streamer: ReferenceStreamer) -> torch.Tensor:
    memory, clock = streamer.cache_len, streamer.clock
    logits, _ = streamer._prefill_text(SUFFIX)
    streamer.cache.crop(memory)
    streamer.clock = clock
    return logits


def test_without_compression_the_stream_equals_one_offline_prefill(model):
    arch, path = model
    video = chunks()
    streamer = ReferenceStreamer(path, HermesConfig(budget_tokens=10_000))
    for c in video:
        assert streamer.append(c) is None
    got, want = question_logits(streamer), offline_logits(arch, streamer, video)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("reindex", ["lazy", "eager"])
def test_with_compression_memory_is_fixed_and_answers_come_from_it(model, reindex):
    budget = 40
    streamer = ReferenceStreamer(model[1], HermesConfig(budget_tokens=budget, reindex=reindex))
    plans = []
    for c in chunks(n=4):
        plans.append(streamer.append(c))
        held = streamer.tokens_held()
        assert len(set(held)) == 1 and held[0] <= streamer.prefix_len + budget  # after every chunk
    assert all(p is not None for p in plans[1:])
    assert streamer.compressions >= 3
    assert streamer.tokens_held() == [streamer.prefix_len + budget] * streamer.num_layers
    held = streamer.tokens_held()
    answer = streamer.ask(QUESTION, max_new_tokens=5)
    # One prefill of the question plus one forward per further token: no scoring or re-encoding pass.
    assert answer.forwards == max(1, min(len(answer.token_ids) + 1, 5))
    assert streamer.tokens_held() == held  # the question and answer were dropped
    assert streamer.ask(QUESTION, max_new_tokens=5).token_ids == answer.token_ids
    last = streamer.plans[-1]
    if reindex == "eager":
        assert int(last.new_pos[:, 0, 0].min()) == streamer.prefix_len
    assert not torch.equal(last.keep[0], last.keep[-1])  # shallow and deep layers kept different tokens
    assert torch.equal(streamer.memory.positions[-1], last.new_pos[-1])  # positions tracked per layer


def test_a_uniform_position_shift_leaves_question_logits_unchanged(model):
    """Re-indexing moves keys by re-rotation; with relative offsets kept, attention is unchanged."""
    streamer = ReferenceStreamer(model[1], HermesConfig(budget_tokens=40))
    for c in chunks(n=3):
        streamer.append(c)
    before = question_logits(streamer)
    shift = 777
    for l, layer in enumerate(streamer.cache.layers):
        k = layer.keys[0].transpose(0, 1)
        delta = torch.full((k.shape[0], streamer.rope.axes), shift)
        layer.keys = rotate_by_delta(k, delta, streamer.rope, l).transpose(0, 1)[None].contiguous()
    streamer.clock += shift
    after = question_logits(streamer)
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
    assert not torch.allclose(before, after, atol=0)  # the keys really moved (float rounding differs)
