"""The ``session`` extension of ``POST /v1/chat/completions``: an append or a question on a stream.

Answers are ordinary OpenAI chat completions (and SSE chunks when ``stream: true``) with one extra
top-level field, ``session``, holding the stream's stats, so the standard ``openai`` client reads them.

A model gateway in front of several servers (SGLang's ``smg``) proxies the OpenAI routes only, not
``/v1/sessions``; so the three operations of that route also ride on a chat completion (modes ``open``,
``stats``, ``close``), which the gateway routes to the stream's server like its turns. Their ``session``
field is the JSON the ``/v1/sessions`` route would answer; the message itself is empty.
"""

from __future__ import annotations

import json
import time
import uuid

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from sglang_hermes.api import service
from sglang_hermes.api.errors import ApiError
from sglang_hermes.api.models import LIFECYCLE_MODES, SessionRef
from sglang_hermes.api.sampling import ask_sampling
from sglang_hermes.runtime import engine_client

FRAME_PARTS = ("image_url", "video_url")


def _parts(messages) -> list[dict]:
    """Content parts of the user messages, in order; a string content is one text part."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    parts = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("user", "system", "assistant", "developer"):
            raise ApiError(400, "every message needs a role (user, system, assistant)", param="messages")
        if m["role"] != "user":
            raise ApiError(400, "a stream's system prompt is set when it is opened (POST /v1/sessions) and it keeps "
                                "no chat history: send only user messages", param="messages")
        content = m.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list) and all(isinstance(p, dict) for p in content):
            parts.extend(content)
        else:
            raise ApiError(400, "message content must be a string or a list of parts", param="messages")
    return parts


def frame_parts(messages) -> list[tuple[str, str]]:
    out = []
    for p in _parts(messages):
        kind = p.get("type")
        if kind not in FRAME_PARTS:
            raise ApiError(400, f"an append carries frames only (image_url / video_url parts), got a {kind!r} part; "
                                "ask questions with mode 'ask'", param="messages")
        url = (p.get(kind) or {}).get("url") if isinstance(p.get(kind), dict) else p.get(kind)
        if not isinstance(url, str) or not url:
            raise ApiError(400, f"a {kind} part needs a url", param="messages")
        out.append((kind, url))
    if not out:
        raise ApiError(400, "an append needs at least one image_url or video_url part", param="messages")
    return out


def question(messages) -> str:
    parts = _parts(messages)
    if any(p.get("type") in FRAME_PARTS for p in parts):
        raise ApiError(400, "a question carries text only; append frames with mode 'append' first", param="messages")
    texts = [p.get("text") for p in parts if p.get("type") == "text"]
    if not texts or not all(isinstance(t, str) for t in texts) or not "".join(texts).strip():
        raise ApiError(400, "a question needs text", param="messages")
    return "\n".join(texts)


async def handle(body: dict, request):
    try:
        ref = SessionRef.model_validate(body.get("session"))
    except ValidationError as e:
        raise ApiError.invalid(e, "invalid session object: ", param="session") from None
    service._model()
    if ref.mode in LIFECYCLE_MODES:
        return await _lifecycle(ref, body)
    if body.get("n", 1) != 1:
        raise ApiError(400, "a stream answers with one choice (n must be 1)", param="n")
    record = await service.get_or_restore(ref.id)
    model = engine_client.model_info().name
    if ref.mode == "append":
        parts = frame_parts(body.get("messages"))
        timestamps = body.get("timestamps")
        if timestamps is not None and (not isinstance(timestamps, list) or
                                       not all(isinstance(t, (int, float)) for t in timestamps)):
            raise ApiError(400, "timestamps must be a list of seconds, one per frame", param="timestamps")
        tokens, stats = await service.append(record, parts, timestamps, request)
        return _empty_reply(body, _completion(model, "", tokens, 0, stats))
    q = question(body.get("messages"))
    max_tokens, sampling = ask_sampling(body, engine_client.model_info().vocab_size)
    params = service.AskParams(q, max_tokens, sampling, logprobs=body.get("logprobs") is True)
    if body.get("stream"):
        return await _stream_answer(record, params, model, request, body)
    text, meta, stats = await service.ask(record, params, request)
    completion = _completion(model, text, int(meta.get("prompt_tokens", 0)), int(meta.get("completion_tokens", 0)),
                             stats, _finish(meta))
    if params.logprobs:
        completion["choices"][0]["logprobs"] = _logprobs(meta)
    return JSONResponse(completion)


def _logprobs(meta: dict) -> dict:
    """OpenAI's ``choices[0].logprobs`` of a (non-streamed) answer: each token's log-probability."""
    return {"content": [{"token": tok if tok is not None else str(tid), "logprob": float(lp), "bytes": None,
                         "top_logprobs": []} for lp, tid, tok in meta.get("output_token_logprobs") or []]}


def opened(record) -> dict:
    """What opening a stream answers (``POST /v1/sessions``, or mode ``open``)."""
    return {"id": record.id, "object": "hermes.session", "created": record.created,
            "config": service.config_view(record)}


async def _lifecycle(ref: SessionRef, body: dict):
    """``POST``, ``GET`` or ``DELETE /v1/sessions/{id}`` carried by a chat completion."""
    if ref.mode == "open":
        try:
            spec = ref.create()
        except ValidationError as e:
            raise ApiError.invalid(e, "invalid session options: ", param="session") from None
        view = opened(await service.open_session(spec))
    elif ref.mode == "stats":
        view = await service.stats(service.get_record(ref.id))
    else:
        await service.close_session(ref.id)
        view = {"id": ref.id, "object": "hermes.session", "deleted": True}
    return _empty_reply(body, _completion(engine_client.model_info().name, "", 0, 0, view))


def _empty_reply(body: dict, completion: dict):
    """A completion without text, as JSON or as one SSE chunk (``stream: true``)."""
    if not body.get("stream"):
        return JSONResponse(completion)
    return _as_sse([_chunk(completion, {"role": "assistant", "content": ""}, "stop", completion["session"])])


def _finish(meta: dict) -> str:
    reason = meta.get("finish_reason")
    return "length" if isinstance(reason, dict) and reason.get("type") == "length" else "stop"


def _completion(model: str, text: str, prompt_tokens: int, completion_tokens: int, stats: dict,
                finish: str = "stop") -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "session": stats}


def _chunk(base: dict, delta: dict, finish: str | None, stats: dict | None = None) -> dict:
    out = {"id": base["id"], "object": "chat.completion.chunk", "created": base["created"], "model": base["model"],
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if stats is not None:
        out["session"] = stats
    return out


def _sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _as_sse(chunks: list[dict]) -> StreamingResponse:
    async def gen():
        for c in chunks:
            yield _sse(c)
        yield b"data: [DONE]\n\n"
    return StreamingResponse(gen(), media_type="text/event-stream")


async def _stream_answer(record, params, model: str, request, body: dict, extra: dict | None = None) -> StreamingResponse:
    """SSE: the first piece is awaited before the response starts, so a refused question is an HTTP error."""
    base = _completion(model, "", 0, 0, {})
    pieces = service.ask_stream(record, params, request)
    try:
        first = await pieces.__anext__()
    except StopAsyncIteration:
        first = None
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def gen():
        meta = {}
        try:
            yield _sse(_chunk(base, {"role": "assistant", "content": ""}, None))
            if first is not None:
                piece, meta = first
                if piece:
                    yield _sse(_chunk(base, {"content": piece}, None))
            async for piece, meta in pieces:
                if piece:
                    yield _sse(_chunk(base, {"content": piece}, None))
        except ApiError as e:
            yield _sse({"error": {"message": e.message, "type": "invalid_request_error", "code": e.status}})
            return
        finally:
            await pieces.aclose()  # releases the stream's turn lock even if the client went away
        stats = {**await service.stats(record), **(extra or {})}
        yield _sse(_chunk(base, {}, _finish(meta), stats))
        if include_usage:
            p, c = int(meta.get("prompt_tokens", 0)), int(meta.get("completion_tokens", 0))
            yield _sse({**_chunk(base, {}, None), "choices": [],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")
