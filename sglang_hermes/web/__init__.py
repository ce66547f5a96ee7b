"""The live page of hermes-serve, ``/hermes/``: stream a webcam or a video file into a stream, ask, and
watch its memory (tokens held vs seen, TTFT per answer, a layer x chunk heatmap of what HERMES keeps).

Plain files shipped in the package (``static/``): no build step, nothing fetched from elsewhere. The
page uses only the public API, from its own origin (``api.same_origin`` refuses other origins), and a
Content-Security-Policy that lets it load and connect to nothing but this server.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

PATH = "/hermes"
STATIC = Path(__file__).parent / "static"
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: "
                                 b"mediastream:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                                 b"base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _WithHeaders:
    """The static files, each answered with the page's security headers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)
        await self.app(scope, receive, send_with_headers)


async def _to_page():
    return RedirectResponse(f"{PATH}/", status_code=307)


def install(app) -> None:
    if PATH in {getattr(r, "path", None) for r in app.routes}:
        return
    app.add_api_route(PATH, _to_page, methods=["GET"], include_in_schema=False)
    app.mount(PATH, _WithHeaders(StaticFiles(directory=STATIC, html=True)), name="hermes-web")
