"""Talking to the session API the way users do: the real ``openai`` client, plus plain JSON for /v1/sessions."""

from __future__ import annotations

import httpx
import numpy as np
import openai

from sglang_hermes.media import data_url, encode_mp4, encode_png

STATS_KEYS = {"id", "object", "created", "frames", "chunks", "tokens_seen", "tokens_held", "budget_tokens",
              "compressions", "last_compression_ms", "kv_bytes", "position", "time_seconds", "config"}


def open_session(server, **body) -> dict:
    r = httpx.post(f"{server.base_url}/v1/sessions", json=body, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def close_session(server, sid: str) -> None:
    httpx.delete(f"{server.base_url}/v1/sessions/{sid}", timeout=120)


def get_stats(server, sid: str) -> dict:
    r = httpx.get(f"{server.base_url}/v1/sessions/{sid}", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def image_parts(frames: np.ndarray) -> list[dict]:
    """Frames as PNG data URLs (lossless, so the server sees exactly these pixels)."""
    return [{"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(f))}} for f in frames]


def video_part(frames: np.ndarray, fps: float) -> dict:
    return {"type": "video_url", "video_url": {"url": data_url("video/mp4", encode_mp4(frames, fps=fps))}}


def append(client: openai.OpenAI, sid: str, parts: list[dict], **extra):
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": parts}],
                                          extra_body={"session": {"id": sid, "mode": "append"}, **extra})


def ask(client: openai.OpenAI, sid: str, question: str, max_tokens: int, *, stream: bool = False):
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": question}],
                                          max_tokens=max_tokens, temperature=0, stream=stream,
                                          extra_body={"session": {"id": sid}})


def streamed_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
