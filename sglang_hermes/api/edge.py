"""The edge of hermes-serve: every request body is parsed once, here, and every decision is made on that parse.

SGLang's own routes trust their input in ways a public server cannot (they read local files named by a
media URL, hand a ``top_k`` of 2**40 to an int32 tensor, answer a deeply nested body with a plain-text
500). This ASGI middleware reads each POST/PUT body, parses it with ``json.loads`` (the parser Starlette
gives SGLang's routes, so both see the same object), and before any route runs:

- refuses bodies nested deeper than ``MAX_DEPTH``;
- refuses media naming this server's files on every route (``media_refs``) unless the operator passed
  ``--hermes-allow-local-media``, and inline media whose header declares frames beyond
  ``--hermes-max-frame-side`` (413) before SGLang's loaders decode it;
- validates sampling fields (``sampling``) where routes read them: the top level (OpenAI, Anthropic),
  ``/generate``'s ``sampling_params`` (an object or a list), Ollama's ``options``, Vertex's ``parameters``;
- sends a chat completion whose parsed body carries a ``session`` object to the stream API, and one
  naming a stream (top-level ``session_id`` or the ``X-Hermes-Stream`` header) to ``stateless``.

Everything else is replayed byte for byte to SGLang's route. Refusals are OpenAI error JSON.
"""

from __future__ import annotations

import json
import logging

from fastapi import Request

from sglang_hermes.api import media_refs, sampling, stateless
from sglang_hermes.api.errors import ApiError, error_response
from sglang_hermes.api.settings import settings
from sglang_hermes.media import LOCAL_MEDIA_REFUSED, MediaError, check_inline, is_local_reference
from sglang_hermes.runtime import engine_client
from sglang_hermes.runtime.engine_client import EngineError

logger = logging.getLogger("sglang_hermes")
CHAT_PATH = "/v1/chat/completions"
MAX_BODY_BYTES = 512 << 20
MAX_DEPTH = 64               # OpenAI bodies (tools' JSON schemas included) nest far less
SAMPLING_CONTAINERS = ("sampling_params", "options", "parameters")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class EdgeMiddleware:
    """Parses, checks and routes every request body before SGLang or the stream API sees it."""

    def __init__(self, app, session_chat, stateless_chat):
        self.app = app
        self.session_chat = session_chat  # (body, request) -> response: the stream API's chat completions
        self.stateless_chat = stateless_chat  # (body, request, stream id) -> response: ``stateless``

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        content_type = _header(scope, b"content-type")
        if content_type.startswith(FORM_TYPES):  # file uploads (audio transcriptions) are not JSON
            return await self.app(scope, receive, send)
        try:
            raw = await _read_body(receive)
            if raw is None:
                return  # the client went away
            body = _parse(raw, declared_json=not content_type or "json" in content_type)
            if body is not None:
                check_body(body)
        except ApiError as e:
            return await e.response()(scope, receive, send)
        except Exception as e:  # a bug of ours must answer in the API's shape, and not reach SGLang unchecked
            logger.exception("hermes edge: unexpected error")
            return await error_response(500, f"internal error at the hermes edge: {type(e).__name__}: {e}")(
                scope, receive, send)
        if scope["path"] == CHAT_PATH and isinstance(body, dict):
            if body.get("session") is not None:
                response = await self.session_chat(body, Request(scope, receive))
                return await response(scope, receive, send)
            request = Request(scope, receive)
            try:
                sid = stateless.stream_id(body, request.headers)
            except ApiError as e:
                return await e.response()(scope, receive, send)
            if sid is not None:
                response = await self.stateless_chat(body, request, sid)
                return await response(scope, receive, send)
        return await self.app(scope, _replay(raw, receive), send)


def _header(scope, name: bytes) -> str:
    return next((v.decode("latin-1").lower() for k, v in scope.get("headers", ()) if k.lower() == name), "")


async def _read_body(receive) -> bytes | None:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        piece = message.get("body", b"")
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(piece)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(raw: bytes, receive):
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


def _parse(raw: bytes, *, declared_json: bool) -> object | None:
    """The body as JSON, None when there is none (or when it is some other declared type)."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        if not declared_json:
            return None
        raise ApiError(400, "the request body is not valid JSON") from None
    if depth_exceeds(body, MAX_DEPTH):
        raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels")
    return body


def depth_exceeds(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def check_body(body: object) -> None:
    """The edge's checks of a parsed body (media references, inline media headers, sampling), for
    every route: also run on each message of ``/v1/realtime``, which no HTTP middleware sees."""
    s = settings()
    limits = s.decode_limits()
    for where, ref in media_refs.references(body):
        if not s.allow_local_media and is_local_reference(ref):
            raise ApiError(400, f"{where}: {LOCAL_MEDIA_REFUSED}", param=where)
        try:
            check_inline(ref, limits)
        except MediaError as e:
            raise ApiError(e.status, f"{where}: {e}", param=where) from None
    if not isinstance(body, dict):
        return
    vocab = _vocab_size()
    sampling.validate(body, vocab_size=vocab)
    for key in SAMPLING_CONTAINERS:
        inner = body.get(key)
        for i, fields in enumerate(inner if isinstance(inner, list) else [inner]):
            if isinstance(fields, dict):
                sampling.validate(fields, f"{key}[{i}]." if isinstance(inner, list) else f"{key}.", vocab)


def _vocab_size() -> int | None:
    try:
        return engine_client.model_info().vocab_size
    except EngineError:
        return None  # still starting: token ids are then only bounded by int32

