"""Stateless chat completions that name a stream: the request shape live-video tools already send.

Tools that stream a camera into a VLM (NVIDIA's Live VLM WebUI, LiveKit agents, ...) send plain chat
completions, each carrying the newest frame or a sliding window of frames plus the question, and pay a
fresh prefill per call. Naming a stream makes the same call stateful on hermes-serve:

- the stream is named by a top-level ``session_id`` (a field SGLang's chat request already has;
  ``extra_body`` in the ``openai`` client) or, for clients that cannot add body fields, by the
  ``X-Hermes-Stream`` header; the body field wins when both are given;
- it is opened on first use with the server's defaults (admission as for ``POST /v1/sessions``);
- the user messages' ``image_url`` / ``video_url`` parts are appended to it, except frames whose bytes
  the stream already holds (``frame_hashes``: clients resend their window);
- the last user message's text is then answered from the stream's whole memory.

System and assistant messages are ignored (a stream's system prompt is fixed when it opens, and the
stream itself is the history). The answer is an ordinary chat completion whose ``session`` field holds
the stream's stats and, under ``last_append``, how many frames this call appended and skipped.
"""

from __future__ import annotations

import asyncio
import re

from fastapi.responses import JSONResponse

from sglang_hermes.api import chat, service
from sglang_hermes.api.errors import ApiError
from sglang_hermes.api.models import SessionCreate
from sglang_hermes.api.registry import registry
from sglang_hermes.api.sampling import ask_sampling
from sglang_hermes.runtime import engine_client

STREAM_HEADER = "x-hermes-stream"
STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

_opening = asyncio.Lock()  # first calls naming one new stream race to open it: one opens, the others use it


def stream_id(body: dict, headers) -> str | None:
    """The stream a chat completion names, or None for a plain (stock SGLang) completion."""
    sid = body.get("session_id")
    if sid is None:
        sid = headers.get(STREAM_HEADER)
        where = "X-Hermes-Stream"
    else:
        where = "session_id"
    if sid is None:
        return None
    if not isinstance(sid, str) or not STREAM_ID.match(sid):
        raise ApiError(400, f"{where} must be a stream id: letters, digits and ._:- (up to 128 characters)",
                       param="session_id")
    return sid


def split_messages(messages) -> tuple[list[tuple[str, str]], str]:
    """(frames of every user message in order, the text of the last user message)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    frames, text = [], ""
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "every message needs a role", param=f"messages[{i}]")
        if m["role"] != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            text = content
            continue
        if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
            raise ApiError(400, "message content must be a string or a list of parts", param=f"messages[{i}]")
        texts = []
        for p in content:
            kind = p.get("type")
            if kind in chat.FRAME_PARTS:
                ref = p.get(kind)
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str) or not url:
                    raise ApiError(400, f"a {kind} part needs a url", param=f"messages[{i}]")
                frames.append((kind, url))
            elif kind == "text":
                if not isinstance(p.get("text"), str):
                    raise ApiError(400, "a text part needs text", param=f"messages[{i}]")
                texts.append(p["text"])
        text = "\n".join(texts)
    return frames, text


async def _record(sid: str):
    record = registry.sessions.get(sid)
    if record is not None and not record.closed:
        return record
    async with _opening:
        record = registry.sessions.get(sid)
        if record is None or record.closed:
            from sglang_hermes.api import routes  # the reaper lives with the routes

            record = await service.open_session(SessionCreate(id=sid))
            routes.start_reaper()
    return record


async def handle(body: dict, request, sid: str):
    service._model()
    if body.get("n", 1) != 1:
        raise ApiError(400, "a stream answers with one choice (n must be 1)", param="n")
    frames, question = split_messages(body.get("messages"))
    if not frames and not question.strip():
        raise ApiError(400, "a call naming a stream needs frames, a question, or both", param="messages")
    if question.strip():  # refuse bad sampling before appending anything
        max_tokens, sampling = ask_sampling(body, engine_client.model_info().vocab_size)
    record = await _record(sid)
    model = engine_client.model_info().name
    appended = {"frames": 0, "repeated": 0, "tokens": 0}
    stats = None
    if frames:
        _, stats = await service.append(record, frames, None, request, skip_repeated=True)
        appended = stats.pop("last_append")
    if not question.strip():
        stats = {**stats, "last_append": appended}
        completion = chat._completion(model, "", appended["tokens"], 0, stats)
        return chat._as_sse([chat._chunk(completion, {"role": "assistant", "content": ""}, "stop", stats)]) \
            if body.get("stream") else JSONResponse(completion)
    params = service.AskParams(question, max_tokens, sampling)
    if body.get("stream"):
        return await chat._stream_answer(record, params, model, request, body, extra={"last_append": appended})
    text, meta, stats = await service.ask(record, params, request)
    return JSONResponse(chat._completion(model, text, int(meta.get("prompt_tokens", 0)),
                                         int(meta.get("completion_tokens", 0)), {**stats, "last_append": appended},
                                         chat._finish(meta)))
