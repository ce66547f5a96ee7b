"""The shipped tiny shapes model (models/tiny-shapes-qwen2.5-vl) is what the docs say it is: a real
Qwen2.5-VL of >= 12 layers that fits the repository (<= 25 MB), whose processor turns a 112x112 frame pair
into 4 vision tokens, and whose weights are the trained ones (it answers in the taught form), with the
training log that documents how it was made. No server: HF loads it in a second."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-shapes-qwen2.5-vl"


def test_shipped_model_is_a_small_real_qwen2_5_vl():
    from transformers import AutoConfig

    assert sum(f.stat().st_size for f in MODEL.iterdir()) <= 25 * 2**20
    config = AutoConfig.from_pretrained(MODEL)
    assert config.model_type == "qwen2_5_vl" and config.architectures == ["Qwen2_5_VLForConditionalGeneration"]
    text = config.get_text_config()
    assert text.num_hidden_layers >= 12
    # SGLang 0.5.23 reads these at the top level of config.json (see testing.tiny_models)
    raw = json.loads((MODEL / "config.json").read_text())
    assert raw["num_hidden_layers"] == text.num_hidden_layers and "mrope_section" in raw["rope_scaling"]
    log = json.loads((MODEL / "train_log.json").read_text())
    assert log["steps"] == log["log"][-1]["step"] and log["wall_s"] > 0 and log["cpu_s"] > 0


@pytest.mark.parametrize("recent", [None, 4])
def test_shipped_model_answers_in_the_trained_form(recent):
    """Greedy on a held-out clip's question, in the stream layout and the recent-frames one: a random
    model would not say "<option>. Answer: <letter>" (whether it is right is the eval's business)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from training.data import clip_examples
    from training.train import encode
    from clients.eval.synth import make_clip

    processor = AutoProcessor.from_pretrained(MODEL)
    model = AutoModelForImageTextToText.from_pretrained(MODEL, dtype=torch.float32).eval()
    clip = make_clip(7, 1, duration_s=20, questions=2)
    ex = clip_examples(clip, np.random.default_rng(0), chunk=4, recent=recent)[0]
    ex.text = ex.text[: -len(ex.answer)]
    ex.answer = "\n"  # encode() wants the text to end in its answer: the newline before the reply
    inputs, _ = encode(processor, [ex])
    n_video = int((inputs["input_ids"] == model.config.video_token_id).sum())
    n_image = int((inputs["input_ids"] == model.config.image_token_id).sum())
    frames = min(recent, clip.questions[0].time_s + 1) if recent else clip.questions[0].time_s + 1
    assert (n_image, n_video > 0) == ((4 * frames, False) if recent else (0, True))  # 56x56: 4 tokens an image
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    said = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert re.fullmatch(r"\w+\. Answer: [A-D]", said.strip()), said
