"""Who may open ``/v1/realtime``: SGLang's ``--api-key`` (its middleware does not see WebSocket handshakes).

The key is taken as OpenAI's clients send it: ``Authorization: Bearer <key>`` (server-side clients,
the ``openai`` package), or, from browsers that cannot set headers on a WebSocket, the subprotocol
``openai-insecure-api-key.<key>``. Cross-origin handshakes are refused earlier (``api.same_origin``).
"""

from __future__ import annotations

import secrets

from starlette.websockets import WebSocket

from sglang_hermes.runtime import http_routes

KEY_SUBPROTOCOL = "openai-insecure-api-key."


def _offered(ws: WebSocket) -> list[str]:
    return [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def refusal(ws: WebSocket) -> str | None:
    """Why the handshake is refused, or None."""
    key = http_routes.api_key()
    if key is None:
        return None
    given = []
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given.append(token.strip())
    given += [p[len(KEY_SUBPROTOCOL):] for p in _offered(ws) if p.startswith(KEY_SUBPROTOCOL)]
    if any(secrets.compare_digest(g.encode(), key.encode()) for g in given):
        return None
    return "unauthorized: this server needs its API key (Authorization: Bearer <key>)"


def subprotocol(ws: WebSocket) -> str | None:
    """Browsers offering subprotocols need one chosen: ``realtime`` as OpenAI's server does."""
    return "realtime" if "realtime" in _offered(ws) else None
