"""``/v1/realtime``: OpenAI Realtime-shaped WebSocket sessions over hermes streams (``connection``).

SGLang serves its own ``/v1/realtime`` (streaming transcription, for speech models only). Ours is put
in front of it; on a model without vision input a connection is handed to SGLang's handler unchanged.
"""

from __future__ import annotations

PATH = "/v1/realtime"


def install(app) -> None:
    from starlette.routing import WebSocketRoute

    from sglang_hermes.realtime import connection

    routes = app.router.routes
    if any(getattr(r, "endpoint", None) is connection.realtime for r in routes):
        return
    stock = next((r for r in routes if isinstance(r, WebSocketRoute) and r.path == PATH), None)
    connection.fallback = stock.endpoint if stock is not None else None
    routes.insert(0, WebSocketRoute(PATH, connection.realtime, name="hermes_realtime"))
