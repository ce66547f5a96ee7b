"""The token layout of a stream, shared by everyone who builds or checks a stream's requests.

A stream is one long user turn: the prefix is the chat template up to the user turn, each chunk is
one vision segment (Qwen2.5-VL: one video; Gemma 3 and LLaVA-OneVision: its frames as images), a
question closes the turn. Without compression this is exactly one stateless prompt holding every chunk in order, which
is what lets tests compare a stream with one ordinary request.

The guidance prompts (HERMES §3.2) are scored against the stream after a chunk and dropped. In
``block`` mode they follow the chunk in the same forward: the local, global and mixed prompts, one
after the other, each ending in a newline so that tokenizing the block gives exactly the concatenation
of its parts (the runtime finds the parts by token count). In ``passes`` mode each part is its own
prefill-only turn after the chunk, so it attends to prefix + memory + chunk only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from sglang_hermes.config import GuidancePrompts

VIDEO_SEGMENT = "<|vision_start|><|video_pad|><|vision_end|>"
IMAGE_SEGMENT = "<start_of_image>"
# The image placeholder of each architecture whose chunks are frames as images (1D RoPE). LLaVA-OneVision
# is served by SGLang 0.5.23's transformers backend, whose processor loads images but not videos from a
# request, so its frames travel as images (see docs/install.md, "Supported architectures").
IMAGE_SEGMENTS = {"gemma3": IMAGE_SEGMENT, "llava_onevision": "<image>"}
# Architectures a stream has a layout for (HF config ``model_type``); others are refused at start.
STREAM_MODEL_TYPES = ("qwen2_5_vl", *IMAGE_SEGMENTS)
DEFAULT_SYSTEM = "You are a helpful assistant."

# Order of the prompts inside the guidance block; a layer reads the one its tier asks for.
GuidancePrompt = Literal["local", "global", "mixed"]
GUIDANCE_ORDER: tuple[str, ...] = get_args(GuidancePrompt)
TIER_PROMPT = {"shallow": "local", "middle": "mixed", "deep": "global"}


def prefix_text(system: str = DEFAULT_SYSTEM) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"


def question_text(question: str) -> str:
    return f"{question}<|im_end|>\n<|im_start|>assistant\n"


def chunk_text(model_type: str, num_frames: int) -> str:
    """The text of one chunk: a video segment for M-RoPE video models, one image per frame otherwise."""
    if model_type.startswith("qwen2"):
        return VIDEO_SEGMENT
    return IMAGE_SEGMENTS.get(model_type, IMAGE_SEGMENT) * num_frames


@dataclass(frozen=True)
class GuidanceBlock:
    text: str
    token_ids: list[int]
    segment_lengths: list[int]  # tokens of each prompt, in GUIDANCE_ORDER

    @property
    def segments(self) -> list[int]:
        """The prompt index of every guidance token."""
        return [s for s, n in enumerate(self.segment_lengths) for _ in range(n)]


def guidance_parts(prompts: GuidancePrompts, last_qa: tuple[str, str] | None) -> dict[str, str]:
    """The text of each prompt (conditioned on the last Q/A), in GUIDANCE_ORDER, as the block holds it."""
    rendered = prompts.render(last_qa)
    return {name: rendered[name].strip() + "\n" for name in GUIDANCE_ORDER}


def guidance_block(prompts: GuidancePrompts, last_qa: tuple[str, str] | None,
                   tokenize: Callable[[str], Sequence[int]]) -> GuidanceBlock:
    """The three prompts (conditioned on the last Q/A) as one block; raises if the tokenizer would
    merge tokens across a boundary, since the runtime could then not tell the prompts apart."""
    parts = list(guidance_parts(prompts, last_qa).values())
    ids = [list(tokenize(p)) for p in parts]
    text = "".join(parts)
    whole = list(tokenize(text))
    if whole != [t for part in ids for t in part]:
        raise ValueError("guidance prompts do not tokenize independently; end each prompt with a newline")
    return GuidanceBlock(text, whole, [len(p) for p in ids])
