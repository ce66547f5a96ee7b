"""SGLang plugin entry point (group ``sglang.srt.plugins``): the one place SGLang learns we exist.

SGLang calls :func:`register` early in every process it starts (HTTP server, scheduler, detokenizer).
Everything engine-specific is delegated to :mod:`sglang_hermes.runtime`.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("sglang_hermes")

LOADED_MESSAGE = "sglang-hermes plugin loaded"


def register() -> None:
    from sglang_hermes.runtime import registration

    registration.register_all()
    logger.info("%s (pid %s, role %s)", LOADED_MESSAGE, registration.process_pid(), registration.process_role())
