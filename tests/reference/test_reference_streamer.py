"""The HF reference streamer: exact against one offline prefill when nothing is compressed, and a
fixed memory answered from directly when it is."""

from __future__ import annotations

import pytest
import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.reference import ReferenceStreamer
from sglang_hermes.reference.streamer import VIDEO_SEGMENT
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames

QUESTION = "Which shape moves?"


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("ref-qwen"))


def chunks(n=3, frames=4, seed=21):
    f = synthetic_frames(n * frames, seed=seed)
    return [f[i:i + frames] for i in range(0, len(f), frames)]


def offline_logits(streamer: ReferenceStreamer, video_chunks) -> torch.Tensor:
    """One prefill of [prefix + each chunk as its own video + question] through HF's own path."""
    from transformers.video_utils import VideoMetadata

    proc = streamer.processor
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            + VIDEO_SEGMENT * len(video_chunks) + f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    inputs = proc(text=[text], videos=list(video_chunks), do_sample_frames=False, return_tensors="pt",
                  video_metadata=[VideoMetadata(total_num_frames=len(c), fps=2.0) for c in video_chunks])
    with torch.no_grad():
        return streamer.model(**inputs).logits[0, -1]


def test_without_compression_the_stream_equals_one_offline_prefill(qwen):
    video = chunks()
    streamer = ReferenceStreamer(qwen, HermesConfig(budget_tokens=10_000))
    for c in video:
        assert streamer.append(c) is None
    memory = streamer.cache_len
    logits, _ = streamer._prefill_text(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    want = offline_logits(streamer, video)
    assert torch.allclose(logits, want, atol=1e-4), (logits - want).abs().max()
    streamer.cache.crop(memory)


@pytest.mark.parametrize("reindex", ["lazy", "eager"])
def test_with_compression_memory_is_fixed_and_answers_come_from_it(qwen, reindex):
    budget = 40
    streamer = ReferenceStreamer(qwen, HermesConfig(budget_tokens=budget, reindex=reindex))
    plans = [streamer.append(c) for c in chunks(n=4)]
    assert plans[0] is None and all(p is not None for p in plans[1:])  # 34 tokens per chunk
    assert streamer.compressions == 3
    assert streamer.tokens_held() == [streamer.prefix_len + budget] * streamer.num_layers
    held = streamer.tokens_held()
    answer = streamer.ask(QUESTION, max_new_tokens=5)
    # One prefill of the question plus one forward per further token: no scoring or re-encoding pass.
    assert answer.forwards == max(1, min(len(answer.token_ids) + 1, 5))
    assert streamer.tokens_held() == held  # the question and answer were dropped
    again = streamer.ask(QUESTION, max_new_tokens=5)
    assert again.token_ids == answer.token_ids  # nothing of the first ask stayed behind
    if reindex == "eager":
        last = streamer.kept_history[-1]
        assert int(last[:, 0, 0].min()) == streamer.prefix_len  # memory starts right after the prefix
    # Layers chose differently: shallow keeps the newest, deep the most attended.
    first, deep = streamer.kept_history[-1][0], streamer.kept_history[-1][-1]
    assert not torch.equal(first, deep)
