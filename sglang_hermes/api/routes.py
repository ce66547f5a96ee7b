"""Mounts the session API on SGLang's FastAPI app, in the HTTP process, before uvicorn starts.

``/v1/sessions`` (and ``/v1/sessions/{id}/memory``) are new routes. Chat completions stay SGLang's: the edge middleware (``edge``) parses
every body once and hands a ``POST /v1/chat/completions`` to the stream API only if its parsed JSON
carries a ``session`` object; other requests reach SGLang's own routes once the edge has checked them.
A chat completion naming a stream
(``session_id`` or ``X-Hermes-Stream``) goes to ``stateless``. Requests from pages of another origin are
refused on hermes' routes (``same_origin``). Idle streams are closed by a reaper started with the first
session; it also moves streams idle for ``--hermes-offload-after`` seconds to host RAM. With
``--hermes-snapshot-dir``, ``POST /v1/sessions/{id}/snapshot`` writes a stream's memory there, and a
graceful shutdown (SIGTERM) snapshots every open stream before the server exits.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from sglang_hermes.api import chat, memory, service, stateless
from sglang_hermes.api.edge import EdgeMiddleware
from sglang_hermes.api.errors import ApiError, error_response
from sglang_hermes.api.models import SessionCreate
from sglang_hermes.api.registry import registry
from sglang_hermes.api.same_origin import SameOriginMiddleware
from sglang_hermes.runtime import graceful_exit
from sglang_hermes.runtime.engine_client import EngineError

logger = logging.getLogger("sglang_hermes")
REAP_INTERVAL_SECONDS = 1.0
SHUTDOWN_SNAPSHOT_SECONDS = 30.0  # per stream: how long a turn in flight may hold its snapshot up

_reaper: asyncio.Task | None = None


def _guard(handler):
    """Every error of the session API leaves as OpenAI error JSON with its status."""
    @functools.wraps(handler)  # FastAPI reads the handler's own signature through this
    async def wrapped(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except ApiError as e:
            return e.response()
        except EngineError as e:
            return error_response(e.status, str(e))
        except Exception as e:  # a bug of ours must not look like a client error, nor kill the server
            logger.exception("hermes session API: unexpected error")
            return error_response(500, f"internal error in the hermes session API: {type(e).__name__}: {e}")
    return wrapped


def start_reaper() -> None:
    """Closes idle streams; started by whatever opens a stream."""
    global _reaper
    if _reaper is None or _reaper.done():
        _reaper = asyncio.get_running_loop().create_task(_reap())


async def _reap() -> None:
    while registry.sessions:
        await asyncio.sleep(REAP_INTERVAL_SECONDS)
        try:
            for sid in await service.expire_idle():
                logger.info("hermes session %s expired after its TTL; its KV is freed", sid)
            await service.offload_idle()
        except Exception:
            logger.exception("hermes session reaper")


async def _snapshot_on_exit() -> None:
    if service.snapshot_dir() is not None and registry.sessions:
        n = await service.snapshot_all(SHUTDOWN_SNAPSHOT_SECONDS)
        logger.info("hermes: %d open stream(s) snapshotted to %s before shutdown", n, service.snapshot_dir())


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


@_guard
async def create_session(request: Request):
    """Open a stream: its config, system prompt (prefilled now) and TTL."""
    raw = await request.body()
    body = await _json_body(request) if raw.strip() else {}
    try:
        spec = SessionCreate.model_validate(body)
    except ValidationError as e:
        raise ApiError.invalid(e) from None
    record = await service.open_session(spec)
    start_reaper()
    return JSONResponse(chat.opened(record), status_code=201)


@_guard
async def list_sessions():
    from sglang_hermes.runtime import engine_client

    state = await engine_client.hermes_state()
    return JSONResponse({"object": "list", "data": [await service.stats(r, state)
                                                    for r in list(registry.sessions.values())]})


@_guard
async def get_session(session_id: str):
    record = await service.get_or_restore(session_id)
    start_reaper()
    return JSONResponse(await service.stats(record))


@_guard
async def snapshot_session(session_id: str):
    """Write the stream's memory to the snapshot directory; it stays open."""
    return JSONResponse(await service.snapshot(await service.get_or_restore(session_id)), status_code=201)


@_guard
async def get_memory(session_id: str):
    """Per layer, the tokens held of each of the newest chunks (``api.memory``)."""
    return JSONResponse(await memory.memory(service.get_record(session_id)))


@_guard
async def delete_session(session_id: str):
    await service.close_session(session_id)
    return JSONResponse({"id": session_id, "object": "hermes.session", "deleted": True})


@_guard
async def _chat(body: dict, request: Request):
    response = await chat.handle(body, request)
    start_reaper()  # the turn may have opened its stream (mode "open") or restored it from a snapshot
    return response


@_guard
async def _stateless_chat(body: dict, request: Request, stream_id: str):
    return await stateless.handle(body, request, stream_id)


def install(app) -> None:
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/v1/sessions" in paths:
        return
    app.add_api_route("/v1/sessions", create_session, methods=["POST"])
    app.add_api_route("/v1/sessions", list_sessions, methods=["GET"])
    app.add_api_route("/v1/sessions/{session_id}", get_session, methods=["GET"])
    app.add_api_route("/v1/sessions/{session_id}", delete_session, methods=["DELETE"])
    app.add_api_route("/v1/sessions/{session_id}/memory", get_memory, methods=["GET"])
    app.add_api_route("/v1/sessions/{session_id}/snapshot", snapshot_session, methods=["POST"])
    graceful_exit.on_graceful_exit(_snapshot_on_exit)
    app.add_middleware(EdgeMiddleware, session_chat=_chat, stateless_chat=_stateless_chat)
    app.add_middleware(SameOriginMiddleware)  # outside the edge: cross-origin requests are refused first
