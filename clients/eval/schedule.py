"""Which frames precede which question: the stream has seen exactly the video up to a question's time.

Frames go out in chunks of at most ``chunk`` frames, and a chunk also ends where a question falls due, so a
question at T is asked once every sampled frame at or before T is in and no later frame is (a plain
fixed-size chunking would let a question see up to ``chunk - 1`` frames of its future). Reading stops
after the last question: the rest of the video is never decoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from clients.eval.questions import Question


@dataclass
class Step:
    """Frames to send now (possibly none), then the questions due once they are in."""
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    due: list[Question] = field(default_factory=list)


def steps(frames: Iterable[tuple[float, np.ndarray]], chunk: int, questions: Iterable[Question]) -> Iterator[Step]:
    """(seconds, frame) pairs in time order -> Steps; questions in time order (ties keep their order)."""
    pending = sorted(questions, key=lambda q: q.time_s)
    current: list = []
    for t, frame in frames:
        if not pending:
            return
        due = [q for q in pending if q.time_s < t]
        if due:
            pending = pending[len(due):]
            yield Step(current, due)
            current = []
            if not pending:
                return
        current.append((t, frame))
        if len(current) == chunk:
            yield Step(current)
            current = []
    if current or pending:
        yield Step(current, pending)


@dataclass
class Episode:
    """One stream: a video from ``start_s`` on, and the questions asked on it."""
    video: str
    start_s: float
    questions: list[Question]


def episodes(questions: Iterable[Question], context_seconds: float | None = None) -> list[Episode]:
    """One stream per video from its start (every question of the video asked on it, in time order), or,
    with ``context_seconds``, one stream per question starting that long before it (StreamingBench's
    fixed-context setting); videos in order of first appearance."""
    if context_seconds is not None:
        return [Episode(q.video, max(0.0, q.time_s - context_seconds), [q]) for q in questions]
    by_video: dict[str, list[Question]] = {}
    for q in questions:
        by_video.setdefault(q.video, []).append(q)
    return [Episode(v, 0.0, sorted(qs, key=lambda q: q.time_s)) for v, qs in by_video.items()]
