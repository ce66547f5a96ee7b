"""The tiny checkpoints are real architectures: HF loads them, every HERMES tier exists, the
processors expand vision tokens, and outputs depend on the input (else no test could fail)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sglang_hermes.testing.tiny_models import (build_tiny_gemma3, build_tiny_llava_onevision, build_tiny_qwen2_5_vl,
                                               build_tiny_qwen3_vl)
from sglang_hermes.testing.video import synthetic_frames


def _logits(model, processor, image, text="What is it?"):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    with torch.no_grad():
        return inputs, model(**inputs).logits[0, -1]


# LLaVA-OneVision: an anyres image = base grid (4x4) + its one high-resolution tile (4x4 + a newline a row).
@pytest.mark.parametrize("builder, rope, image_tokens", [(build_tiny_qwen2_5_vl, "mrope", 16),
                                                         (build_tiny_gemma3, "1d", 16),
                                                         (build_tiny_llava_onevision, "1d", 36),
                                                         (build_tiny_qwen3_vl, "mrope", 16)])
def test_tiny_checkpoint_is_a_real_vlm(tmp_path, builder, rope, image_tokens):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = builder(tmp_path / "ckpt")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    text_config = model.config.get_text_config()
    assert text_config.num_hidden_layers >= 10 and int(0.1 * text_config.num_hidden_layers) >= 1
    rope_parameters = getattr(text_config, "rope_parameters", None) or {}
    has_mrope = "mrope_section" in str(rope_parameters)
    assert has_mrope == (rope == "mrope")

    a, b = (Image.fromarray(f) for f in synthetic_frames(2, size=112, seed=4))
    inputs, logits_a = _logits(model, processor, a)
    image_token = model.config.image_token_id
    assert int((inputs["input_ids"] == image_token).sum()) == image_tokens  # expanded by the processor
    _, logits_b = _logits(model, processor, b)
    assert not torch.allclose(logits_a, logits_b, atol=1e-3)


def test_tiny_qwen3_vl_has_interleaved_mrope_timestamps_and_deepstack(tmp_path):
    """What sets Qwen3-VL apart is really there: the processor writes a timestamp before each temporal
    patch, the text config asks for interleaved M-RoPE, and DeepStack changes the logits (zeroing its
    mergers' output moves them), so a test that misaligned DeepStack could fail."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.video_utils import VideoMetadata

    path = build_tiny_qwen3_vl(tmp_path / "ckpt")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    rope = model.config.get_text_config().rope_parameters
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == model.config.get_text_config().head_dim // 2
    assert len(model.config.vision_config.deepstack_visual_indexes) == 3

    frames = synthetic_frames(4, size=336, seed=1)
    meta = VideoMetadata(total_num_frames=4, fps=1.0, frames_indices=[10.0, 10.5, 11.0, 11.5])  # seconds at fps 1
    inputs = processor(text=["<|vision_start|><|video_pad|><|vision_end|>What?"], videos=[frames],
                       video_metadata=[meta], do_sample_frames=False, return_tensors="pt")
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert "<10.2 seconds>" in text and "<11.2 seconds>" in text  # mean time of each 2-frame patch
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 2 * 16

    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
        for merger in model.model.visual.deepstack_merger_list:
            merger.linear_fc2.weight.zero_()
            merger.linear_fc2.bias.zero_()
        without_deepstack = model(**inputs).logits[0, -1]
    assert not torch.allclose(logits, without_deepstack, atol=1e-2)
