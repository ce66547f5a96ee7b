"""Training examples laid out exactly as hermes-eval asks them, drawn from the synthetic generator.

A stream without compression equals one stateless request holding its chunks in order (the oracle the
runtime is tested against), so a question on a stream is trained as that request: the chat prefix, each
chunk the harness would append as one video (chunks of at most ``chunk`` frames, also cut where any of
the clip's questions falls due, as ``clients.eval.schedule.steps`` cuts them), then the harness's prompt,
and the answer letter. Some examples take the stateless recent-frames layout instead (the last N frames as
images), so the SimpleStream baseline row of the report is asked in a layout the model has seen.

Frames are drawn at 112x112 like the benchmark's and JPEG-encoded as an append's image parts are; the
processor shrinks them to the model's 56x56 as the server's does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from clients.eval.questions import Question
from clients.eval.schedule import steps
from clients.eval.scoring import prompt
from clients.eval.synth import Clip, SynthQuestion, make_clip, render
from clients.frames import encode_image
from sglang_hermes.layout import IMAGE_SEGMENT, VIDEO_SEGMENT, prefix_text, question_text
from training.model import answer_text

FPS = 1.0  # what hermes-eval samples by default, and what the model is trained and measured at
SIZE = 112  # frame side: 16 merged vision tokens per 2 frames, one token row per shape lane
IMAGE_TOKEN = "<|vision_start|><|image_pad|><|vision_end|>"
assert IMAGE_SEGMENT != IMAGE_TOKEN  # Gemma's image segment is not Qwen's


@dataclass
class Example:
    text: str  # the whole prompt, answer included
    answer: str  # the answer's text (a letter + end of turn): the only tokens with a loss
    videos: list[np.ndarray]  # one [n, H, W, 3] per chunk (stream layout)
    images: list[np.ndarray]  # one [H, W, 3] per frame (recent-frames layout)
    task: str
    split: str


def eval_frames(clip: Clip) -> list[tuple[float, np.ndarray]]:
    """The (seconds, frame) pairs hermes-eval sends for this clip at 1 fps, each round-tripped through the
    JPEG an image part carries (the benchmark's near-lossless H.264 step is skipped: it costs more than
    the rest of the example and JPEG's 4:2:0 chroma already blurs colours the same way)."""
    out = []
    for i, frame in enumerate(render(clip, FPS, SIZE)):
        _, jpeg = encode_image(frame)
        out.append((i / FPS, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))))
    return out


def _as_question(q: SynthQuestion, i: int) -> Question:
    return Question(id=str(i), video="clip", time_s=q.time_s, question=q.question, options=tuple(q.options),
                    answer=q.answer, task=q.task, split=q.split)


def clip_examples(clip: Clip, rng: np.random.Generator, *, chunk: int, recent: int | None = None) -> list[Example]:
    """One example per question of ``clip``; ``recent=N`` gives the stateless layout with the last N frames."""
    frames = eval_frames(clip)
    questions = [_as_question(q, i) for i, q in enumerate(clip.questions)]
    out, chunks, seen = [], [], []
    for step in steps(frames, chunk if recent is None else max(1, recent), questions):
        if step.frames:
            chunks.append(np.stack([f for _, f in step.frames]))
            seen.extend(f for _, f in step.frames)
        for q in step.due:
            answer = answer_text(q.options[ord(q.answer) - 65], q.answer) + "<|im_end|>"
            if recent is None:
                vision, videos, images = VIDEO_SEGMENT * len(chunks), list(chunks), []
            else:
                images = seen[-recent:]
                vision, videos = IMAGE_TOKEN * len(images), []
            text = prefix_text() + vision + question_text(prompt(q)) + answer
            out.append(Example(text, answer, videos, list(images), q.task, q.split))
    return out


def random_clip(seed: int, index: int, rng: np.random.Generator, durations: tuple[int, int]) -> Clip:
    """A clip of the benchmark's generator with a duration drawn in ``durations`` (even seconds) and as
    many questions as fit."""
    lo, hi = durations
    duration = int(rng.integers(lo // 2, hi // 2 + 1)) * 2
    return make_clip(seed, index, duration_s=duration, questions=max(3, duration // 5))
