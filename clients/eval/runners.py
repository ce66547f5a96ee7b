"""The systems a benchmark is run against: a hermes-serve stream per policy, or a stateless request.

``SessionRunner`` opens one stream per episode with a policy and budget, appends the video chunk by chunk
(timestamps of the file), and asks each question when it falls due (``schedule.steps``). ``StatelessRunner``
is the SimpleStream protocol (arXiv 2604.02317): no memory at all; each question is one chat completion
carrying only the last N sampled frames, to any OpenAI-compatible server, so a user can compare a stream's
memory with what a plain recent-frames request gets.

Both produce one row (a dict, see ``results``) per question; a refused append or ask is a row with an
``error`` (a rerun tries it again), never an exception, except an unreachable server.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import openai
from PIL import Image

from clients.eval.questions import Question
from clients.eval.schedule import Episode, steps
from clients.eval.scoring import grade, prompt
from clients.frames import VideoError, image_part, sample_video
from clients.session import HermesClient, error_message

OnRow = Callable[[dict], None]


def sampled(ep: Episode, fps: float, side: int | None) -> Iterator[tuple[float, np.ndarray]]:
    """The episode's frames at ``fps``; with ``side``, shrunk so the longer side is at most that many
    pixels (the vision tokens a frame costs grow with its area; both systems see the same pixels)."""
    for t, frame in sample_video(ep.video, fps, ep.start_s):
        h, w = frame.shape[:2]
        if side is not None and max(h, w) > side:
            scale = side / max(h, w)
            size = (max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2))
            frame = np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))
        yield t, frame


def question_row(system: str, ep: Episode, q: Question, **measured) -> dict:
    return {"system": system, "video": q.video, "question_id": q.id, "start_s": ep.start_s, "time_s": q.time_s,
            "task": q.task, "split": q.split, "kind": q.kind, "answer": q.answer, **measured}


def answered(system: str, ep: Episode, q: Question, text: str, **measured) -> dict:
    said, correct = grade(q, text)
    return question_row(system, ep, q, text=text, said=said, correct=correct, error=None, **measured)


def failed(system: str, ep: Episode, questions: Iterable[Question], message: str, on_row: OnRow) -> None:
    for q in questions:
        on_row(question_row(system, ep, q, text=None, said=None, correct=False, error=message))


class SessionRunner:
    """Episodes streamed into hermes-serve sessions with one policy at one budget."""

    def __init__(self, client: HermesClient, policy: str, *, budget: int | None, fps: float, chunk: int,
                 max_tokens: int, side: int | None = None, window: dict | None = None):
        self.client, self.policy, self.budget = client, policy, budget
        self.window = {k: v for k, v in (window or {}).items() if v is not None}  # sink_tokens, recent_tokens
        self.fps, self.chunk, self.max_tokens, self.side = fps, chunk, max_tokens, side
        self.name = policy if budget is None else f"{policy}@{budget}"

    def run(self, ep: Episode, todo: set[str], on_row: OnRow) -> None:
        """Stream ``ep`` and ask the questions whose id is in ``todo`` (the others are done already, but
        the stream still has to see their frames)."""
        remaining = [q for q in ep.questions if q.id in todo]
        if not remaining:
            return
        last = max(q.time_s for q in remaining)  # chunks still end at every question, done ones included
        scheduled = [q for q in ep.questions if q.time_s <= last]
        ingest_s, frames_sent = 0.0, 0
        try:
            with self.client.open_stream(policy=self.policy, budget_tokens=self.budget, fps=self.fps,
                                         chunk_frames=self.chunk, **self.window) as stream:
                for step in steps(sampled(ep, self.fps, self.side), self.chunk, scheduled):
                    if step.frames:
                        r = stream.append([f for _, f in step.frames], timestamps=[t for t, _ in step.frames])
                        ingest_s += r.ms / 1000.0
                        frames_sent += len(step.frames)
                    for q in step.due:
                        if q.id not in todo:
                            continue
                        remaining.remove(q)
                        on_row(self._ask(stream, ep, q, ingest_s, frames_sent))
        except (VideoError, openai.APIStatusError) as e:  # a refused open or append: this episode is lost
            failed(self.name, ep, remaining, error_message(e), on_row)

    def _ask(self, stream, ep: Episode, q: Question, ingest_s: float, frames_sent: int) -> dict:
        try:
            a = stream.ask(prompt(q), max_tokens=self.max_tokens, temperature=0.0, stream=True)
        except openai.APIStatusError as e:
            return question_row(self.name, ep, q, text=None, said=None, correct=False, error=error_message(e))
        return answered(self.name, ep, q, a.text, ttft_s=a.ttft_s, total_s=a.total_s,
                        tokens_held=a.stats.get("tokens_held"), frames_seen=a.stats.get("frames"),
                        frames_sent=frames_sent, ingest_s=round(ingest_s, 6))


class StatelessRunner:
    """Each question alone with the last ``recent`` frames sampled at or before its time."""

    def __init__(self, client: openai.OpenAI, recent: int, *, model: str | None, fps: float, max_tokens: int,
                 side: int | None = None):
        self.client, self.recent, self._model = client, recent, model
        self.fps, self.max_tokens, self.side = fps, max_tokens, side
        self.name = f"recent-{recent}"

    @property
    def model(self) -> str:
        if self._model is None:
            self._model = self.client.models.list().data[0].id
        return self._model

    def run(self, ep: Episode, todo: set[str], on_row: OnRow) -> None:
        window: deque = deque(maxlen=self.recent)
        remaining = [q for q in ep.questions if q.id in todo]
        try:
            for step in steps(sampled(ep, self.fps, self.side), self.recent, list(remaining)):
                window.extend(step.frames)
                for q in step.due:
                    remaining.remove(q)
                    on_row(self._ask(ep, q, list(window)))
        except VideoError as e:
            failed(self.name, ep, remaining, str(e), on_row)

    def _ask(self, ep: Episode, q: Question, frames: list) -> dict:
        content = [image_part(f) for _, f in frames] + [{"type": "text", "text": prompt(q)}]
        t0 = time.perf_counter()
        ttft, pieces, usage = None, [], None
        try:
            chunks = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}], max_tokens=self.max_tokens,
                temperature=0.0, stream=True, stream_options={"include_usage": True})
            for chunk in chunks:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    piece = choice.delta.content if choice.delta is not None else None
                    if piece:
                        ttft = ttft if ttft is not None else time.perf_counter() - t0
                        pieces.append(piece)
        except openai.APIStatusError as e:
            return question_row(self.name, ep, q, text=None, said=None, correct=False, error=error_message(e))
        total = time.perf_counter() - t0
        return answered(self.name, ep, q, "".join(pieces), ttft_s=ttft if ttft is not None else total, total_s=total,
                        tokens_held=usage.prompt_tokens if usage is not None else None, frames_seen=len(frames),
                        frames_sent=len(frames), ingest_s=0.0)
