"""SGLang plugin entry point (group ``sglang.srt.plugins``): the one place SGLang learns we exist.

SGLang calls :func:`register` early in every process it starts (HTTP server, scheduler, detokenizer),
in the HTTP process before SGLang has configured logging, so our logger carries its own handler.
Everything engine-specific is delegated to :mod:`sglang_hermes.runtime`. An SGLang version the plugin
was not tested with is refused here, in every process: the hooks reach into its internals.
"""

from __future__ import annotations

import logging

LOADED_MESSAGE = "sglang-hermes plugin loaded"


def _logger() -> logging.Logger:
    log = logging.getLogger("sglang_hermes")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s hermes] %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def register() -> None:
    from sglang_hermes.runtime import capabilities, registration

    capabilities.refuse([capabilities.installed_version_refusal()])
    registration.register_all()
    if registration.process_role() == "main":
        from sglang_hermes import realtime, web
        from sglang_hermes.api.routes import install
        from sglang_hermes.runtime.http_routes import fastapi_app

        app = fastapi_app()
        install(app)
        realtime.install(app)
        web.install(app)
    _logger().info("%s (pid %s, role %s)", LOADED_MESSAGE, registration.process_pid(), registration.process_role())
