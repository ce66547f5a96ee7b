"""HTTP routes added to SGLang's FastAPI app in the main process, before uvicorn starts."""

from __future__ import annotations

import os

from fastapi.responses import JSONResponse


async def hermes_info() -> JSONResponse:
    from sglang_hermes import __version__

    return JSONResponse({"object": "hermes.info", "plugin": "sglang-hermes", "version": __version__,
                         "http_pid": os.getpid()})


def fastapi_app():
    """SGLang's FastAPI app (HTTP process): where the session API mounts its routes."""
    from sglang.srt.entrypoints import http_server

    return http_server.app


def install() -> None:
    from sglang.srt.entrypoints import http_server

    paths = {getattr(r, "path", None) for r in http_server.app.routes}
    if "/v1/hermes" not in paths:
        http_server.app.add_api_route("/v1/hermes", hermes_info, methods=["GET"])


def api_key() -> str | None:
    """SGLang's ``--api-key``: its HTTP middleware guards every HTTP route with it, but lets WebSocket
    handshakes through, so a WebSocket route must check it itself."""
    from sglang.srt.runtime_context import get_serving

    try:
        return get_serving().api_key or None
    except Exception:  # the serving state is not set up (not started by SGLang's launcher)
        return None
