"""The tiny checkpoints are real architectures: HF loads them, every HERMES tier exists, the
processors expand vision tokens, and outputs depend on the input (else no test could fail)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sglang_hermes.testing.tiny_models import build_tiny_gemma3, build_tiny_llava_onevision, build_tiny_qwen2_5_vl
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
                                                         (build_tiny_llava_onevision, "1d", 36)])
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
