"""Same-origin only for hermes-serve's own routes: the session API, the memory view, the live page and
the Realtime WebSocket.

SGLang answers every route with ``Access-Control-Allow-Origin: *`` (and credentials allowed), so any web
page a user visits could drive a stream on a server the user can reach; and browsers apply no CORS at
all to WebSockets. Requests to hermes' routes that come from a page of another origin (an ``Origin``
header whose host differs from the ``Host`` the request was sent to) are refused with 403 before any
route or SGLang's CORS layer sees them, preflights included. Clients that are not browsers send no
``Origin`` and are not concerned; SGLang's own routes keep SGLang's policy.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sglang_hermes.api.errors import error_response

HERMES_PREFIXES = ("/v1/sessions", "/v1/realtime", "/hermes")


def is_hermes_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in HERMES_PREFIXES)


def cross_origin(headers: dict[str, str]) -> str | None:
    """The foreign origin of a request, or None when it is same-origin or from no browser page."""
    origin = headers.get("origin")
    if not origin:
        return None
    host = headers.get("host", "")
    try:
        if urlsplit(origin).netloc.lower() == host.lower():
            return None
    except ValueError:
        pass
    return origin


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


class SameOriginMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and is_hermes_path(scope.get("path", "")):
            origin = cross_origin(_headers(scope))
            if origin is not None:
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008,
                                       "reason": "cross-origin WebSocket refused"})
                return await error_response(403, f"cross-origin requests to hermes routes are refused "
                                                 f"(origin {origin!r}); serve your page from this server",
                                            code="cross_origin")(scope, receive, send)
        return await self.app(scope, receive, send)
