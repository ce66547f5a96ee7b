"""A plugin hook that raises fails the turn it was working on, never the scheduler.

SGLang runs our hooks inside its scheduler loop, where an escaping exception kills the scheduler (it
sends SIGQUIT to the server) and with it every stream. So each hook does a turn's work under
``contained``: the error is logged and that turn is aborted with a 500; SGLang then finishes it as an
aborted request and ``stream_rows`` rolls it back, so the stream is exactly as before the turn.

Test-only switch: with ``SGLANG_HERMES_TEST_FAULTS=1`` in the server's environment, a request whose id
contains ``hermes-fault-<point>`` raises at that hook point (``POINTS``), so tests can show that a
failing hook harms neither the server, nor its stream, nor a bystander stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
from http import HTTPStatus

logger = logging.getLogger("sglang_hermes")

POINTS = ("create", "positions", "score", "finish")
TEST_FAULTS = os.environ.get("SGLANG_HERMES_TEST_FAULTS") == "1"


class InjectedFault(RuntimeError):
    pass


def inject(point: str, req) -> None:
    """Raise here if the test switch is on and the request asked for a fault at this point."""
    if TEST_FAULTS and f"hermes-fault-{point}" in str(getattr(req, "rid", "")):
        raise InjectedFault(f"injected test fault at {point}")


def fail_turn(req, point: str, error: BaseException) -> None:
    """Abort the request: its turn ends as aborted (rolled back), everyone else goes on."""
    logger.error("hermes %s hook failed for request %s; aborting that turn only", point, req.rid,
                 exc_info=error)
    from sglang.srt.managers.schedule_batch import FINISH_ABORT  # here: importing POINTS must not load SGLang

    reason = FINISH_ABORT(f"hermes {point} failed for this turn ({type(error).__name__}: {error}); the stream "
                          f"is as it was before the turn", HTTPStatus.INTERNAL_SERVER_ERROR)
    if req.finished_reason is None:
        req.to_finish = reason
    else:
        req.finished_reason = reason


@contextlib.contextmanager
def contained(point: str, req):
    """Run one turn's share of a hook (whose body starts with ``inject(point, req)``); an error aborts
    that turn instead of escaping into SGLang."""
    try:
        yield
    except Exception as e:
        fail_turn(req, point, e)
