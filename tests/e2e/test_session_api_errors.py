"""What users send wrong, as a table: each case gets OpenAI error JSON with the right status, the
server stays healthy, and a bystander stream is exactly as it was (same tokens, same answer)."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from sglang_hermes.media import data_url, encode_png
from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import append, ask, close_session, image_parts, open_session
from .streams import MAX_TOKENS, QUESTIONS, chunks, stream_state

FRAMES = chunks("qwen", n=1, seed=21)[0]
PNG = image_parts(FRAMES[:1])[0]


def _noise_png(side: int) -> str:
    """A PNG that does not compress: about side*side*3 bytes."""
    pixels = np.random.default_rng(0).integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    return data_url("image/png", encode_png(pixels))


def _chat(server, session: dict | None, content, **extra) -> httpx.Response:
    body = {"model": "default", "messages": [{"role": "user", "content": content}], **extra}
    if session is not None:
        body["session"] = session
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=300)


def _append(server, sid, parts, **extra):
    return _chat(server, {"id": sid, "mode": "append"}, parts, **extra)


def _img(url: str) -> list[dict]:
    return [{"type": "image_url", "image_url": {"url": url}}]


def _open(server, **body):
    return httpx.post(f"{server.base_url}/v1/sessions", json=body, timeout=120)


# name -> (request(server, victim_sid) -> response, status, words the message must contain)
CASES = {
    "unknown stream": (lambda s, v: _append(s, "no-such-stream", [PNG]), 404, "no session"),
    "ask unknown stream": (lambda s, v: _chat(s, {"id": "no-such-stream"}, "hi"), 404, "no session"),
    "closed stream": (lambda s, v: _append(s, v, [PNG]), 404, "no session"),
    "duplicate id": (lambda s, v: _open(s, id="bystander"), 409, "already exists"),
    "append without frames": (lambda s, v: _append(s, v, []), 400, "at least one"),
    "append with text only": (lambda s, v: _append(s, v, "a frame, promise"), 400, "frames only"),
    "malformed base64": (lambda s, v: _append(s, v, _img("data:image/png;base64,@@not-base64@@")), 400, "base64"),
    "not an image": (lambda s, v: _append(s, v, _img(data_url("image/png", b"hello, world"))), 400, "not a decodable image"),
    "undecodable video": (lambda s, v: _append(s, v, [{"type": "video_url", "video_url": {
        "url": data_url("video/mp4", bytes(range(256)) * 64)}}]), 400, "not a decodable video"),
    "unsupported scheme": (lambda s, v: _append(s, v, _img("ftp://example.com/frame.png")), 400, "unsupported URL scheme"),
    "local path": (lambda s, v: _append(s, v, _img("/etc/hostname")), 400, "local paths"),
    "file url": (lambda s, v: _append(s, v, _img("file:///etc/hostname")), 400, "local paths"),
    "too many frames": (lambda s, v: _append(s, v, image_parts(chunks("qwen", n=1, frames=5, seed=1)[0])), 413,
                        "chunk_frames"),
    "too many bytes": (lambda s, v: _append(s, v, _img(_noise_png(1400))), 413, "limit"),
    # The tiny model sees every frame at 112x112 (8 tokens a frame): 136 frames pass 1024 tokens.
    "too many tokens": (lambda s, v: _append(s, v, image_parts(synthetic_frames(136, size=112))), 413,
                        "vision tokens"),
    "bad timestamps": (lambda s, v: _append(s, v, [PNG], timestamps=[1.0, 2.0]), 400, "timestamps"),
    "budget below 1": (lambda s, v: _open(s, budget_tokens=0), 400, "budget_tokens"),
    "budget below one chunk": (lambda s, v: _open(s, budget_tokens=3, chunk_frames=64), 400, "smaller than one chunk"),
    "budget too small for a summary": (lambda s, v: _open(s, budget_tokens=1, chunk_frames=1), 400,
                                       "budget_tokens must be >= 2"),
    "unknown policy": (lambda s, v: _open(s, policy="lru"), 400, "policy"),
    "unknown guidance mode": (lambda s, v: _open(s, guidance="both"), 400, "guidance"),
    "negative ttl": (lambda s, v: _open(s, ttl_seconds=-5), 400, "ttl_seconds"),
    "unknown field": (lambda s, v: _open(s, budget=64), 400, "budget"),
    "body not json": (lambda s, v: httpx.post(f"{s.base_url}/v1/sessions", content=b"{budget", timeout=60), 400, "JSON"),
    "bad mode": (lambda s, v: _chat(s, {"id": v, "mode": "replace"}, "hi"), 400, "mode"),
    "question with frames": (lambda s, v: _chat(s, {"id": v}, [PNG]), 400, "text only"),
    "system message": (lambda s, v: httpx.post(f"{s.base_url}/v1/chat/completions", timeout=60, json={
        "model": "m", "session": {"id": v}, "messages": [{"role": "system", "content": "be brief"},
                                                         {"role": "user", "content": "hi"}]}), 400, "system prompt"),
}
VICTIM_CASES = {"closed stream", "append without frames", "append with text only", "malformed base64",
                "not an image", "undecodable video", "unsupported scheme", "local path", "file url",
                "too many frames", "too many bytes", "too many tokens", "bad timestamps", "bad mode",
                "question with frames", "system message"}


@pytest.fixture(scope="module")
def bystander(qwen_server):
    """A stream that must not notice anything: two chunks in, and the answer it gives."""
    client = openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    sid = open_session(qwen_server, id="bystander", budget_tokens=40, fps=2.0, chunk_frames=4)["id"]
    for chunk in chunks("qwen", n=2, seed=22):
        append(client, sid, image_parts(chunk))
    answer = ask(client, sid, QUESTIONS[0], MAX_TOKENS).choices[0].message.content
    yield client, sid, answer
    close_session(qwen_server, sid)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_an_openai_error_and_changes_nothing(case, qwen_server, bystander):
    client, sid, answer = bystander
    request, status, words = CASES[case]
    before = stream_state(qwen_server, sid)
    victim = None
    if case in VICTIM_CASES:  # cases that name a stream get a fresh one of their own
        victim = open_session(qwen_server, budget_tokens=2000, chunk_frames=200 if case == "too many tokens" else 4,
                              fps=2.0)["id"]
        if case == "closed stream":
            close_session(qwen_server, victim)
    try:
        r = request(qwen_server, victim)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and words in error["message"], error
        if victim is not None and case != "closed stream":  # the refused request left its own stream as it was
            assert httpx.get(f"{qwen_server.base_url}/v1/sessions/{victim}").json()["chunks"] == 0
    finally:
        if victim is not None and case != "closed stream":
            close_session(qwen_server, victim)
    assert httpx.get(f"{qwen_server.base_url}/health", timeout=30).status_code == 200
    assert stream_state(qwen_server, sid) | {"asks": 0, "last_turn_rid": ""} == before | {"asks": 0, "last_turn_rid": ""}
    assert ask(client, sid, QUESTIONS[0], MAX_TOKENS).choices[0].message.content == answer


def test_the_openai_client_raises_its_own_exceptions(qwen_server, bystander):
    client, sid, _ = bystander
    with pytest.raises(openai.NotFoundError):
        append(client, "no-such-stream", [PNG])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"session": {"id": sid, "mode": "rewind"}})


def test_a_session_on_a_model_without_vision_is_refused(text_only_server):
    r = httpx.post(f"{text_only_server.base_url}/v1/sessions", json={}, timeout=60)
    assert r.status_code == 400 and "no vision input" in r.json()["error"]["message"]
    r = _chat(text_only_server, {"id": "any", "mode": "append"}, [PNG])
    assert r.status_code == 400 and "no vision input" in r.json()["error"]["message"]
    # ...while the same server answers ordinary chat requests.
    r = _chat(text_only_server, None, "hello", max_tokens=2)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
