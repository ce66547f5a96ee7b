"""Stateless chat completions that name a stream (``sglang_hermes.api.stateless``), sent the way live
video tools send them: the unmodified ``openai`` client, a system message, a user message with the
question and JPEG ``image_url`` frames, a sliding window of frames resent on every call.

The oracle is the session API (itself checked against the native stream and the HF reference): the
same new frames appended as the same chunks and the same question give the same answer and tokens.
"""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import openai
import pytest
from PIL import Image

from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import append, ask, close_session, get_stats, streamed_text

pytestmark = pytest.mark.server
QUESTION = "What moves?"
MAX_TOKENS = 5


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def _jpeg_url(frame) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _tool_messages(question: str, urls: list[str]) -> list[dict]:
    """The shape Live VLM WebUI / LiveKit-style tools send: a system prompt, then text and frames."""
    return [{"role": "system", "content": "You describe a live camera."},
            {"role": "user", "content": [{"type": "text", "text": question},
                                         *({"type": "image_url", "image_url": {"url": u}} for u in urls)]}]


def _sessions(server) -> set[str]:
    return {s["id"] for s in httpx.get(f"{server.base_url}/v1/sessions", timeout=60).json()["data"]}


def test_sliding_window_appends_each_frame_once_and_answers_like_the_session_api(qwen_server):
    """Window of 2 frames sliding by one: call k resends frame k-1; tokens_seen grows only by the new
    frame, and the answer equals the session API's on a stream fed the same new frames."""
    client = _client(qwen_server)
    urls = [_jpeg_url(f) for f in synthetic_frames(4, size=112, seed=3)]
    sid, oracle = f"tool-{uuid.uuid4().hex[:8]}", f"oracle-{uuid.uuid4().hex[:8]}"
    assert sid not in _sessions(qwen_server)
    try:
        r = client.chat.completions.create(model="default", messages=_tool_messages(QUESTION, urls[:2]),
                                           max_tokens=MAX_TOKENS, temperature=0, extra_body={"session_id": sid})
        first = r.model_extra["session"]
        assert first["last_append"] == {"frames": 2, "repeated": 0, "tokens": first["tokens_seen"]}
        assert first["frames"] == 2 and first["tokens_seen"] > 0 and r.choices[0].message.content
        # The stream was opened with the server's defaults.
        assert first["config"]["budget_tokens"] == 4096 and first["config"]["system_prompt"] != "You describe a live camera."

        answers = [r.choices[0].message.content]
        for k in (2, 3):
            r = client.chat.completions.create(model="default", messages=_tool_messages(QUESTION, urls[k - 1:k + 1]),
                                               max_tokens=MAX_TOKENS, temperature=0, extra_body={"session_id": sid})
            answers.append(r.choices[0].message.content)
            s = r.model_extra["session"]
            assert s["last_append"]["frames"] == 1 and s["last_append"]["repeated"] == 1
            assert s["frames"] == k + 1 and s["chunks"] == k

        # The oracle: the same chunks through the session API, asked the same question after each.
        httpx.post(f"{qwen_server.base_url}/v1/sessions", json={"id": oracle}, timeout=120).raise_for_status()
        parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
        expected, seen = [], []
        for chunk in (parts[:2], parts[2:3], parts[3:4]):
            seen.append(append(client, oracle, chunk).model_extra["session"]["tokens_seen"])
            expected.append(ask(client, oracle, QUESTION, MAX_TOKENS).choices[0].message.content)
        assert answers == expected
        assert get_stats(qwen_server, sid)["tokens_seen"] == seen[-1]
        assert seen[2] - seen[1] == seen[1] - seen[0] > 0  # each later call added one frame's tokens

        # The whole window again: nothing is appended, the question is still answered.
        r = client.chat.completions.create(model="default", messages=_tool_messages(QUESTION, urls),
                                           max_tokens=MAX_TOKENS, temperature=0, extra_body={"session_id": sid})
        s = r.model_extra["session"]
        assert s["last_append"] == {"frames": 0, "repeated": 4, "tokens": 0} and s["tokens_seen"] == seen[-1]
        assert r.choices[0].message.content == expected[-1]
    finally:
        close_session(qwen_server, sid)
        close_session(qwen_server, oracle)


def test_header_names_the_stream_and_streams_the_answer(qwen_server):
    """Clients that cannot add body fields name the stream with X-Hermes-Stream; stream=True works."""
    client = _client(qwen_server)
    urls = [_jpeg_url(f) for f in synthetic_frames(3, size=112, seed=4)]
    sid = f"hdr-{uuid.uuid4().hex[:8]}"
    try:
        for window in (urls[:2], urls[:3]):
            chunks = list(client.chat.completions.create(
                model="default", messages=_tool_messages(QUESTION, window), max_tokens=MAX_TOKENS, temperature=0,
                stream=True, extra_headers={"X-Hermes-Stream": sid}))
            assert streamed_text(chunks)
            last = chunks[-1].model_extra["session"]
        assert last["last_append"]["frames"] == 1 and last["last_append"]["repeated"] == 2
        assert get_stats(qwen_server, sid)["frames"] == 3
    finally:
        close_session(qwen_server, sid)


def test_a_call_naming_no_stream_is_stock_sglang(qwen_server):
    """Without session_id or the header, the same request is SGLang's own chat completion: no stream
    is opened and no session field is added."""
    client = _client(qwen_server)
    before = _sessions(qwen_server)
    r = client.chat.completions.create(model="default",
                                       messages=_tool_messages(QUESTION, [_jpeg_url(synthetic_frames(1, seed=5)[0])]),
                                       max_tokens=MAX_TOKENS, temperature=0)
    assert r.choices[0].message.content is not None and "session" not in (r.model_extra or {})
    assert _sessions(qwen_server) == before


def test_bad_stream_requests_are_openai_errors(qwen_server):
    client = _client(qwen_server)
    with pytest.raises(openai.BadRequestError, match="session_id must be a stream id"):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"session_id": "../etc"})
    with pytest.raises(openai.BadRequestError, match="X-Hermes-Stream must be a stream id"):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"X-Hermes-Stream": "a b"})
    sid = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(openai.BadRequestError, match="needs frames, a question, or both"):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": " "}],
                                       extra_body={"session_id": sid})
    with pytest.raises(openai.BadRequestError, match="top_p"):  # refused before anything is appended or opened
        client.chat.completions.create(model="default", messages=_tool_messages(QUESTION, [_jpeg_url(
            synthetic_frames(1, seed=6)[0])]), top_p=0, extra_body={"session_id": sid})
    assert sid not in _sessions(qwen_server)
