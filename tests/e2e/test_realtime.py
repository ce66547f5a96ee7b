"""``/v1/realtime`` with clients no one here wrote: the ``openai`` package's own Realtime clients (GA
``client.realtime`` and beta ``client.beta.realtime``, pointed at the server by ``websocket_base_url``),
and the ``websockets`` package for what those clients cannot send (oversized and malformed messages).

The oracle for answers is the session API on a stream fed the same frames and asked the same question.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid

import httpx
import openai
import pytest
import websockets
from PIL import Image

from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import append, ask, close_session, get_stats

pytestmark = pytest.mark.server
QUESTION = "What moves?"
MAX_TOKENS = 5


def _jpeg_url(frame) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _async_client(server, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0,
                              websocket_base_url=f"ws://127.0.0.1:{server.port}/v1")


async def _until(conn, kind: str) -> tuple[dict, list[dict]]:
    """Events up to the first of ``kind`` (an ``error`` first fails the test), as plain dicts."""
    seen = []
    async for event in conn:
        e = event.model_dump() if hasattr(event, "model_dump") else event
        seen.append(e)
        if e["type"] == kind:
            return e, seen
        assert e["type"] != "error", e
    raise AssertionError(f"connection closed before {kind}")


async def _image_item(conn, urls, text=None):
    content = [{"type": "input_image", "image_url": u} for u in urls]
    if text:
        content.append({"type": "input_text", "text": text})
    await conn.conversation.item.create(item={"type": "message", "role": "user", "content": content})


def test_openai_realtime_client_appends_asks_and_resumes(qwen_server):
    """GA client: session.update sets the stream's budget/policy/fps; images append; response.create
    streams response.output_text.delta then response.done with the session API's answer; after a
    disconnect a new connection naming the stream resumes it with its memory."""
    urls = [_jpeg_url(f) for f in synthetic_frames(4, size=112, seed=21)]
    sid, oracle = f"rt-{uuid.uuid4().hex[:8]}", f"rto-{uuid.uuid4().hex[:8]}"

    async def first_connection():
        client = _async_client(qwen_server)
        async with client.realtime.connect(model="default", extra_query={"stream": sid}) as conn:
            created, _ = await _until(conn, "session.created")
            assert created["session"]["id"] == sid
            await conn.session.update(session={"type": "realtime", "budget_tokens": 64, "policy": "hermes",
                                               "fps": 2.0, "sink_tokens": 8, "max_output_tokens": MAX_TOKENS,
                                               "temperature": 0})
            updated, _ = await _until(conn, "session.updated")
            assert updated["session"]["budget_tokens"] == 64
            await _image_item(conn, urls[:2])
            done, _ = await _until(conn, "conversation.item.done")
            assert done["item"]["role"] == "user"
            await _image_item(conn, urls[2:3], text=QUESTION)
            await _until(conn, "conversation.item.done")
            await conn.response.create()
            final, events = await _until(conn, "response.done")
            deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
            return deltas, final

    deltas, final = asyncio.run(first_connection())
    text = final["response"]["output"][0]["content"][0]["text"]
    assert deltas == text and text
    stats = get_stats(qwen_server, sid)  # the stream outlived the socket
    assert stats["frames"] == 3 and stats["config"]["budget_tokens"] == 64 and stats["config"]["fps"] == 2.0
    assert stats["config"]["sink_tokens"] == 8

    async def resumed():
        client = _async_client(qwen_server)
        async with client.beta.realtime.connect(model="default", extra_query={"stream": sid}) as conn:
            created, _ = await _until(conn, "session.created")
            assert created["session"]["stream_open"] and created["session"]["budget_tokens"] == 64
            assert created["session"]["sink_tokens"] == 8
            await conn.send({"type": "session.update", "session": {"budget_tokens": 128}})
            err, _ = await _next_error(conn)
            assert err["error"]["type"] == "invalid_request_error" and "is open" in err["error"]["message"]
            await conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                             "content": [{"type": "input_image", "image_url": urls[3]},
                                         {"type": "input_text", "text": QUESTION}]}})
            await _until(conn, "conversation.item.created")   # the beta dialect
            await conn.send({"type": "response.create", "response": {"max_output_tokens": MAX_TOKENS,
                                                                     "temperature": 0}})
            final, events = await _until(conn, "response.done")
            assert any(e["type"] == "response.text.delta" for e in events)
            return final["response"]["output"][0]["content"][0]["text"]

    resumed_text = asyncio.run(resumed())
    try:
        client = openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
        httpx.post(f"{qwen_server.base_url}/v1/sessions", json={"id": oracle, "budget_tokens": 64, "fps": 2.0},
                   timeout=120).raise_for_status()
        parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
        append(client, oracle, parts[:2])
        append(client, oracle, parts[2:3])
        assert ask(client, oracle, QUESTION, MAX_TOKENS).choices[0].message.content == text
        append(client, oracle, parts[3:4])
        assert ask(client, oracle, QUESTION, MAX_TOKENS).choices[0].message.content == resumed_text
        assert get_stats(qwen_server, sid)["tokens_held"] == get_stats(qwen_server, oracle)["tokens_held"]
    finally:
        close_session(qwen_server, sid)
        close_session(qwen_server, oracle)


async def _next_error(conn):
    async for event in conn:
        e = event.model_dump() if hasattr(event, "model_dump") else event
        if e["type"] == "error":
            return e, None
    raise AssertionError("no error event")


def test_realtime_refusals_are_error_events_and_the_connection_survives(qwen_server):
    """Malformed, unsupported and oversized messages, too many frames for one append and a response
    without a question each get an OpenAI ``error`` event; the connection then still works."""
    sid = f"rtbad-{uuid.uuid4().hex[:8]}"
    url = f"ws://127.0.0.1:{qwen_server.port}/v1/realtime?stream={sid}"
    frame = _jpeg_url(synthetic_frames(1, size=112, seed=2)[0])

    async def run():
        errors = []
        async with websockets.connect(url, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"

            async def expect_error(message):
                await ws.send(message)
                e = json.loads(await ws.recv())
                assert e["type"] == "error" and set(e["error"]) >= {"type", "code", "message", "param"}, e
                errors.append(e["error"])

            await expect_error("{not json")
            await expect_error(json.dumps({"type": "input_audio_buffer.append", "audio": ""}))
            await expect_error(json.dumps({"type": "response.create"}))
            await expect_error(json.dumps({"type": "session.update", "session": {"budget_tokens": 0}}))
            await ws.send(json.dumps({"type": "session.update", "session": {"chunk_frames": 2}}))
            assert json.loads(await ws.recv())["session"]["chunk_frames"] == 2
            await expect_error(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_image", "image_url": frame}] * 3}}))
            await expect_error(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "/etc/passwd"}]}}))
            await expect_error("x" * (8 << 20))
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_image", "image_url": frame}]}}))
            ok = json.loads(await ws.recv())
            assert ok["type"] == "conversation.item.added", ok
        return errors

    try:
        errors = asyncio.run(run())
    finally:  # the stream outlives its socket until its TTL: close it, other tests count the server's streams
        close_session(qwen_server, sid)
    codes = [(e["type"], e["code"]) for e in errors]
    assert codes[0] == ("invalid_request_error", "invalid_json")
    assert codes[1] == ("invalid_request_error", "unsupported_event")
    assert "no question" in errors[2]["message"]
    assert errors[3]["param"].startswith("session")
    assert errors[4]["type"] == "request_too_large" and "chunk_frames" in errors[4]["message"]
    assert errors[5]["type"] == "invalid_request_error"
    assert errors[6]["code"] == "message_too_large"
