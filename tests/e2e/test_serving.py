"""A real hermes-serve process answers image and video requests from the real openai client exactly
as HF transformers does on the same checkpoint, and the hermes plugin is live inside it."""

from __future__ import annotations

import base64

import httpx
import pytest

from sglang_hermes.plugin import LOADED_MESSAGE
from sglang_hermes.testing.video import decode_frames, encode_mp4, encode_png, synthetic_frames

from . import hf_oracle

MAX_TOKENS = 8
LOGPROB_TOL = 1e-3  # float32 on both sides (SGLang would downcast to fp16 under --dtype auto)


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def served_greedy(client, content: list[dict]):
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": content}],
        max_tokens=MAX_TOKENS, temperature=0, logprobs=True,
    )
    choice = r.choices[0]
    return choice.message.content, [t.logprob for t in choice.logprobs.content], r.usage


def assert_same_greedy(served, oracle):
    text, logprobs, _ = served
    assert text == oracle.text
    assert len(logprobs) == len(oracle.logprobs) > 0
    assert max(abs(a - b) for a, b in zip(logprobs, oracle.logprobs)) < LOGPROB_TOL


def test_plugin_is_loaded_in_every_server_process(qwen_server):
    info = httpx.get(f"{qwen_server.base_url}/v1/hermes").json()
    assert info["plugin"] == "sglang-hermes"
    state = httpx.get(f"{qwen_server.base_url}/server_info").json()["internal_states"][0]
    assert state["radix_cache_backend"] == "hermes"
    assert state["hermes"]["cache_backend"] == "hermes"  # the scheduler built the cache through us
    assert state["hermes"]["scheduler_pid"] != info["http_pid"]
    assert qwen_server.log_text().count(LOADED_MESSAGE) >= 2  # HTTP process and scheduler
    # hermes-serve turns on SGLang's idle sleep: an idle CPU scheduler would otherwise spin
    assert httpx.get(f"{qwen_server.base_url}/server_info").json()["sleep_on_idle"] is True


@pytest.mark.parametrize("seed", [0, 1])
def test_image_request_matches_hf(qwen_client, qwen_dir, seed):
    from PIL import Image

    frame = synthetic_frames(1, seed=seed)[0]
    served = served_greedy(qwen_client, [
        {"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(frame))}},
        {"type": "text", "text": "What is in the picture?"},
    ])
    oracle = hf_oracle.greedy(qwen_dir, [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "What is in the picture?"}]}], MAX_TOKENS,
        images=[Image.fromarray(frame)])
    assert_same_greedy(served, oracle)
    assert served[2].prompt_tokens_details.image_tokens == 16


def test_video_url_request_matches_hf(qwen_client, qwen_dir):
    """A 2-frame mp4 (one temporal patch). Longer videos agree on greedy tokens but their log-probs
    drift by ~0.1 between SGLang's and HF's vision towers; see test_long_video_url_same_greedy_text."""
    # 336x336: SGLang's Qwen video path first resizes frames to at least 128*28*28 pixels, then the
    # processor shrinks them to its max_pixels; at 336x336 the first step is the identity, so HF
    # sees the same pixels with a single resize.
    mp4 = encode_mp4(synthetic_frames(2, size=336, seed=3), fps=2.0)
    served = served_greedy(qwen_client, [
        {"type": "video_url", "video_url": {"url": data_url("video/mp4", mp4)}},
        {"type": "text", "text": "What happens in the video?"},
    ])
    oracle = hf_oracle.greedy(qwen_dir, [{"role": "user", "content": [
        {"type": "video"}, {"type": "text", "text": "What happens in the video?"}]}], MAX_TOKENS,
        videos=[decode_frames(mp4)], do_sample_frames=False)
    assert served[2].prompt_tokens_details.video_tokens == 16  # 2 frames -> 1 temporal patch of 4x4 merged
    assert_same_greedy(served, oracle)


def test_answers_depend_on_the_image(qwen_client):
    """Guards the tiny model itself: if outputs ignored the input, the tests above could not fail."""
    answers = set()
    for seed in range(3):
        frame = synthetic_frames(1, seed=seed)[0]
        text, _, _ = served_greedy(qwen_client, [
            {"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(frame))}},
            {"type": "text", "text": "What is in the picture?"}])
        answers.add(text)
    assert len(answers) >= 2
