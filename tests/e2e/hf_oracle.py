"""Greedy decoding with HF transformers on the same checkpoint: the independent oracle for serving tests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass
class Greedy:
    text: str
    token_ids: list[int]
    logprobs: list[float]


@lru_cache(maxsize=4)
def load(model_dir: str):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    return processor, model


@torch.no_grad()
def greedy(model_dir: str, messages: list[dict], max_new_tokens: int, *, causal_images: bool = False,
           **media) -> Greedy:
    """Render `messages` with the checkpoint's chat template, then decode greedily step by step.

    causal_images: drop the token types that make HF Gemma 3 attend bidirectionally inside an image;
    SGLang's CPU attention backend (torch_native) is causal for every token.
    """
    processor, _ = load(str(model_dir))
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], return_tensors="pt", **media)
    if causal_images:
        inputs.pop("token_type_ids", None)
        inputs.pop("mm_token_type_ids", None)
    return greedy_from_inputs(model_dir, inputs, max_new_tokens)


@torch.no_grad()
def greedy_from_inputs(model_dir: str, inputs, max_new_tokens: int) -> Greedy:
    """Greedy decoding of processor outputs the caller built (e.g. a raw prompt with video metadata)."""
    processor, model = load(str(model_dir))
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                         output_scores=True, return_dict_in_generate=True)
    ids = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    logprobs = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, ids)]
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    if eos in ids:  # the server stops at EOS and does not report it
        cut = ids.index(eos)
        ids, logprobs = ids[:cut], logprobs[:cut]
    return Greedy(processor.tokenizer.decode(ids, skip_special_tokens=True), ids, logprobs)
