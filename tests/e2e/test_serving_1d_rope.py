"""The 1D-RoPE architecture (tiny Gemma 3) served by hermes-serve matches HF transformers exactly:
text, one image, and several images in one message (how a 1D-RoPE stream appends frames)."""

from __future__ import annotations

import pytest
from PIL import Image

from sglang_hermes.testing.video import encode_png, synthetic_frames

from . import hf_oracle
from .test_serving import MAX_TOKENS, assert_same_greedy, data_url, served_greedy


def image_part(frame):
    return {"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(frame))}}


def test_text_matches_hf(gemma_client, gemma_dir):
    served = served_greedy(gemma_client, [{"type": "text", "text": "Describe the scene."}])
    oracle = hf_oracle.greedy(gemma_dir, [{"role": "user", "content": [
        {"type": "text", "text": "Describe the scene."}]}], MAX_TOKENS)
    assert_same_greedy(served, oracle)


@pytest.mark.parametrize("frames", [1, 3])
def test_images_match_hf(gemma_client, gemma_dir, frames):
    video = synthetic_frames(frames, size=112, seed=frames)
    served = served_greedy(gemma_client, [*map(image_part, video), {"type": "text", "text": "What moves?"}])
    oracle = hf_oracle.greedy(
        gemma_dir, [{"role": "user", "content": [{"type": "image"}] * frames + [{"type": "text", "text": "What moves?"}]}],
        MAX_TOKENS, images=[Image.fromarray(f) for f in video], causal_images=True)
    assert_same_greedy(served, oracle)
    assert served[2].prompt_tokens > 16 * frames  # every image expanded to its 16 soft tokens


def test_answers_depend_on_the_images(gemma_client):
    answers = {served_greedy(gemma_client, [image_part(synthetic_frames(1, size=112, seed=s)[0]),
                                            {"type": "text", "text": "What moves?"}])[0] for s in range(4)}
    assert len(answers) >= 2
