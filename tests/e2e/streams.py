"""Helpers for stream tests: the server's view of a stream, and one stream run recorded turn by turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from sglang_hermes.config import HermesConfig
from sglang_hermes.testing.native_stream import NativeStream, StreamRequestError
from sglang_hermes.testing.video import decode_frames, encode_mp4, synthetic_frames

from .api_helpers import append, image_parts

QUESTIONS = ("Which shape moves?", "What happened so far?")
MAX_TOKENS = 6


def hermes_state(server) -> dict:
    return httpx.get(f"{server.base_url}/server_info", timeout=60).json()["internal_states"][0]["hermes"]


def stream_state(server, session_id: str) -> dict:
    return hermes_state(server)["streams"][session_id]


def lockstep(server, client, sids: list[str], frames: np.ndarray, per_append: int):
    """Append the same frames to every stream of ``sids``, ``per_append`` at a time (PNG image parts), and
    yield their server states after each append: a fifo stream fed alongside is the oracle of which
    tokens are the newest."""
    for i in range(0, len(frames), per_append):
        for sid in sids:
            append(client, sid, image_parts(frames[i:i + per_append]))
        yield [stream_state(server, sid) for sid in sids]


def wait_available(server, expected: int, timeout: float = 10.0) -> int:
    """Frees done inside result processing land at the next scheduler step: poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        got = hermes_state(server)["kv_available_slots"]
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


VIDEO_ARCHS = ("qwen", "qwen3")  # chunks travel as mp4 videos


def chunks(arch: str, n: int = 5, frames: int = 2, seed: int = 5) -> list[np.ndarray]:
    """Qwen2.5-VL and Qwen3-VL: 336x336 frames, so SGLang's pre-resize is the identity and HF sees the
    same pixels; 2 frames = one temporal patch (where SGLang's and HF's vision towers agree exactly)."""
    size = 336 if arch in VIDEO_ARCHS else 112
    f = synthetic_frames(n * frames, size=size, seed=seed)
    return [f[i:i + frames] for i in range(0, len(f), frames)]


def as_served(arch: str, chunk: np.ndarray) -> np.ndarray:
    """The pixels the server decodes: Qwen chunks travel as H.264 mp4, Gemma frames as PNG (lossless)."""
    return decode_frames(encode_mp4(chunk, fps=2.0)) if arch in VIDEO_ARCHS else chunk


@dataclass
class Run:
    """What a stream did, turn by turn: the server's state after each append, and its answers."""

    states: list[dict] = field(default_factory=list)
    answers: list[tuple[str, list[float]]] = field(default_factory=list)


def run_stream(server, model_dir, cfg: HermesConfig, video: list[np.ndarray], *, ask_after=(2,),
               close: bool = True) -> tuple[Run, NativeStream]:
    stream = NativeStream(server.base_url, model_dir, cfg).open()
    run = Run()
    for i, chunk in enumerate(video):
        stream.append(chunk)
        run.states.append(stream_state(server, stream.session_id))
        if i in ask_after:
            run.answers.append(stream.ask(QUESTIONS[0], MAX_TOKENS)[:2])
    run.answers.append(stream.ask(QUESTIONS[1], MAX_TOKENS)[:2])
    if close:
        stream.close()
    return run, stream


def reference_run(arch: str, model_dir, cfg: HermesConfig, video: list[np.ndarray], *, ask_after=(2,)) -> Run:
    """The same stream on the HF reference streamer (the independent oracle), recorded like ``run_stream``:
    kept positions and summary flags per layer after each append, and the answers with their log-probs."""
    import torch

    from sglang_hermes.reference import ReferenceStreamer

    ref, run = ReferenceStreamer(model_dir, cfg), Run()
    for i, chunk in enumerate(video):
        ref.append(as_served(arch, chunk))
        run.states.append({"positions": torch.stack(ref.memory.positions).tolist(),
                           "is_summary": torch.stack(ref.memory.is_summary).tolist(),
                           "memory_len": ref.cache_len, "clock": ref.clock, "compressions": ref.compressions})
        if i in ask_after:
            answer = ref.ask(QUESTIONS[0], MAX_TOKENS)
            run.answers.append((answer.text, answer.logprobs))
    answer = ref.ask(QUESTIONS[1], MAX_TOKENS)
    run.answers.append((answer.text, answer.logprobs))
    return run


def close_logprobs(a, b, tol: float) -> bool:
    return len(a) == len(b) > 0 and max(abs(x - y) for x, y in zip(a, b)) < tol


def abort_once_running(server, session_id: str, rid: str, send: Callable[[], object]) -> str:
    """Run ``send`` (a turn with request id ``rid``) in a thread and abort it once the scheduler has
    started it; returns the turn's error ("" if it finished). An abort sent before the scheduler knows
    the request is dropped by SGLang, so this waits until the stream reports the turn as its newest."""
    outcome: dict = {}

    def run():
        try:
            outcome["ok"] = send()
        except StreamRequestError as e:
            outcome["error"] = str(e)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while stream_state(server, session_id)["last_turn_rid"] != rid:
        assert time.monotonic() < deadline, "the turn never reached the scheduler"
        time.sleep(0.02)
    httpx.post(f"{server.base_url}/abort_request", json={"rid": rid}, timeout=30)
    worker.join(120)
    return outcome.get("error", "")
