"""What guards the routes #15 added (stateless streams, ``/v1/realtime``, ``/hermes/``, the memory view):
SGLang's ``--api-key`` on every one of them (the WebSocket too, which SGLang's middleware does not
see), same-origin only for hermes' routes, and the memory view checked against the kept positions
the test server publishes (an independent read of the scheduler's state).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import io
import json
import uuid

import httpx
import openai
import pytest
import websockets
import websockets.exceptions
from PIL import Image

from sglang_hermes.policy.base import SUMMARY_CHUNK
from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import append, close_session, image_parts, open_session
from .streams import stream_state

pytestmark = pytest.mark.server
KEY = "sk-hermes-test-key"


def _jpeg_url(frame) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def test_memory_view_counts_what_each_layer_keeps(qwen_server):
    """GET /v1/sessions/{id}/memory equals, layer by layer, the chunk numbers of the kept tokens that
    the server publishes with SGLANG_HERMES_EXPOSE_POSITIONS, and names each chunk's frames."""
    client = openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    sid = open_session(qwen_server, budget_tokens=40, fps=2.0, chunk_frames=2)["id"]
    try:
        frames = synthetic_frames(12, size=112, seed=8)
        tokens = []
        for k in range(6):
            tokens.append(append(client, sid, image_parts(frames[2 * k:2 * k + 2])).usage.prompt_tokens)
        m = httpx.get(f"{qwen_server.base_url}/v1/sessions/{sid}/memory", timeout=60).json()
        kept = stream_state(qwen_server, sid)["chunk"]  # [L][N]: the chunk of every kept token
        assert m["layers"] == len(kept) and m["compressions"] >= 1 and not any(m["older_held"])
        for layer, row in enumerate(kept):
            counts = collections.Counter(row)
            assert m["summary_held"][layer] == counts.pop(SUMMARY_CHUNK, 0)
            assert {c["chunk"]: n for c, n in zip(m["chunks"], m["held"][layer]) if n} == dict(counts)
        assert any(m["summary_held"])  # the deep layers' summary tokens
        for c in m["chunks"]:
            assert c["first_frame"] == 2 * c["chunk"] and c["frames"] == 2 and c["tokens"] == tokens[c["chunk"]]
        assert len({tuple(r) for r in m["held"]}) > 1  # layers keep different chunks
        r = httpx.get(f"{qwen_server.base_url}/v1/sessions/nope/memory", timeout=60)
        assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"
    finally:
        close_session(qwen_server, sid)


def test_hermes_routes_refuse_other_origins(qwen_server):
    base = qwen_server.base_url
    evil = {"Origin": "http://evil.example"}
    same = {"Origin": base}
    r = httpx.get(f"{base}/v1/sessions", headers=evil, timeout=60)
    assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin"
    assert "access-control-allow-origin" not in r.headers
    r = httpx.options(f"{base}/v1/sessions", headers={**evil, "Access-Control-Request-Method": "POST"}, timeout=60)
    assert r.status_code == 403  # no permissive preflight
    assert httpx.post(f"{base}/v1/sessions", headers={**evil, "Content-Type": "text/plain"}, content="{}",
                      timeout=60).status_code == 403
    assert httpx.get(f"{base}/hermes/", headers=evil, timeout=60).status_code == 403
    assert httpx.get(f"{base}/v1/sessions", headers=same, timeout=60).status_code == 200
    page = httpx.get(f"{base}/hermes/", timeout=60)
    assert page.status_code == 200 and "HERMES live" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{base}/hermes", timeout=60, follow_redirects=True).url.path == "/hermes/"

    async def ws_from(origin):
        async with websockets.connect(f"ws://127.0.0.1:{qwen_server.port}/v1/realtime", origin=origin) as ws:
            return json.loads(await ws.recv())["type"]

    with pytest.raises(websockets.exceptions.InvalidStatus):
        asyncio.run(ws_from("http://evil.example"))
    assert asyncio.run(ws_from(base)) == "session.created"


@pytest.fixture(scope="module")
def key_server(qwen_dir, tmp_path_factory):
    """The one server this module adds (~1 min): the tiny Qwen with SGLang's --api-key."""
    log = tmp_path_factory.mktemp("logs") / "qwen-key-server.log"
    server = HermesServer(qwen_dir, log_path=log, extra_args=["--api-key", KEY, "--dtype", "float32"],
                          startup_timeout=600.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_api_key_guards_every_new_route(key_server):
    base, port = key_server.base_url, key_server.port
    frame = _jpeg_url(synthetic_frames(1, size=112, seed=9)[0])
    sid = f"key-{uuid.uuid4().hex[:8]}"
    body = {"model": "default", "max_tokens": 3, "session_id": sid,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                      {"type": "image_url", "image_url": {"url": frame}}]}]}
    for method, path, kwargs in [("POST", "/v1/chat/completions", {"json": body}),
                                 ("POST", "/v1/chat/completions", {"json": {**body, "session_id": None},
                                                                   "headers": {"X-Hermes-Stream": sid}}),
                                 ("GET", f"/v1/sessions/{sid}/memory", {}), ("GET", "/hermes/", {}),
                                 ("GET", "/hermes/app.js", {}), ("GET", "/v1/sessions", {})]:
        r = httpx.request(method, base + path, timeout=60, **kwargs)
        assert r.status_code == 401, (path, r.status_code, r.text)
        wrong = httpx.request(method, base + path, timeout=60, **{**kwargs, "headers": {
            **kwargs.get("headers", {}), "Authorization": "Bearer wrong"}})
        assert wrong.status_code == 401, path
    assert httpx.get(f"{base}/v1/sessions", timeout=60).status_code == 401
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=300)
    r = client.chat.completions.create(model="default", messages=body["messages"], max_tokens=3,
                                       extra_body={"session_id": sid})
    assert r.model_extra["session"]["frames"] == 1
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{base}/v1/sessions/{sid}/memory", headers=auth, timeout=60).status_code == 200
    assert httpx.get(f"{base}/hermes/", headers=auth, timeout=60).status_code == 200

    async def realtime(**kw):
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime?stream={sid}", **kw) as ws:
            return json.loads(await ws.recv())

    for kw in ({}, {"additional_headers": {"Authorization": "Bearer wrong"}},
               {"subprotocols": ["realtime", "openai-insecure-api-key.wrong"]}):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            asyncio.run(realtime(**kw))
    assert asyncio.run(realtime(additional_headers=auth))["session"]["id"] == sid
    assert asyncio.run(realtime(subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]))["type"] == \
        "session.created"

    async def openai_client():
        c = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, websocket_base_url=f"ws://127.0.0.1:{port}/v1")
        async with c.realtime.connect(model="default", extra_query={"stream": sid}) as conn:
            return (await conn.recv()).type

    assert asyncio.run(openai_client()) == "session.created"
    httpx.delete(f"{base}/v1/sessions/{sid}", headers=auth, timeout=60)
