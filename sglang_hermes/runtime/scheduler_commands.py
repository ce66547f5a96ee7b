"""Commands from the HTTP process to the scheduler, over SGLang's own control channel.

SGLang has no message a plugin can add, but its ``get_internal_state`` control request round-trips to
every scheduler (queued, one at a time, answered with a free-form dict) and carries a request id. A
request whose id starts with ``COMMAND_PREFIX`` holds a JSON command instead of asking for state: an
AROUND hook on ``Scheduler.get_internal_state`` runs it between batches, on the scheduler's own thread,
and answers ``{"hermes_command": result}``. With data parallelism the request reaches every rank; a
command names the rank that holds its stream and the others answer ``{"skip": true}``.

Commands (``stream_snapshot``): ``save`` a stream to a file or park it in host RAM, ``load`` a file (or
an offloaded stream) for its restore turn, ``drop`` what is parked.
"""

from __future__ import annotations

import json
import logging

from sglang.srt.plugins.hook_registry import HookRegistry, HookType

from sglang_hermes.runtime import stream_snapshot
from sglang_hermes.runtime.stream_state import streams

logger = logging.getLogger("sglang_hermes")
TARGET = "sglang.srt.managers.scheduler.Scheduler.get_internal_state"
COMMAND_PREFIX = "hermes-command:"
RESULT_KEY = "hermes_command"


def encode(command: dict) -> str:
    return COMMAND_PREFIX + json.dumps(command)


def _dp_rank() -> int:
    from sglang.srt.runtime_context import get_parallel

    return get_parallel().dp_rank or 0


def run(scheduler, command: dict) -> dict:
    if command.get("dp_rank", 0) != _dp_rank():
        return {"skip": True}
    op, sid = command.get("op"), command.get("session_id")
    if op == "save":
        stream = streams.get(sid)
        if stream is None and command.get("path") and sid in stream_snapshot.parked:  # an offloaded stream
            return stream_snapshot.save_parked(sid, command["path"], command.get("record") or {})
        if stream is None:
            raise stream_snapshot.SnapshotRefused(f"no stream {sid!r} in this scheduler", status=404)
        return stream_snapshot.save(scheduler, stream, command.get("path"), command.get("record") or {})
    if op == "load":
        return stream_snapshot.load(sid, command.get("path"))
    if op == "drop":
        return {"dropped": stream_snapshot.drop(sid)}
    if op == "parked":
        return {"streams": {k: v.nbytes for k, v in stream_snapshot.parked.items()}}
    raise ValueError(f"unknown hermes command {op!r}")


def _around_get_internal_state(original, scheduler, recv_req, *args, **kwargs):
    rid = getattr(recv_req, "rid", None)
    if not (isinstance(rid, str) and rid.startswith(COMMAND_PREFIX)):
        return original(scheduler, recv_req, *args, **kwargs)
    from sglang.srt.managers.io_struct import GetInternalStateReqOutput

    try:
        result = run(scheduler, json.loads(rid[len(COMMAND_PREFIX):]))
    except stream_snapshot.SnapshotRefused as e:
        result = {"error": str(e), "status": e.status}
    except Exception as e:  # a bug of ours fails the command, never the scheduler
        logger.exception("hermes command failed")
        result = {"error": f"{type(e).__name__}: {e}", "status": 500}
    return GetInternalStateReqOutput(internal_state={RESULT_KEY: result})


def install() -> None:
    HookRegistry.register(TARGET, _around_get_internal_state, HookType.AROUND)
