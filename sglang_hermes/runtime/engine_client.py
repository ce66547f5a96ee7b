"""The session API's one door into SGLang's HTTP process: sessions, turns and state via the tokenizer manager.

The API layer (``sglang_hermes.api``) decides what a turn is; this module knows how SGLang wants it
sent: a streaming session per stream, and each turn a ``GenerateReqInput`` on that session carrying
the hermes tag in ``custom_params`` — the same path SGLang's own ``/generate`` takes, so tokenization,
media processing, batching and aborts on client disconnect are SGLang's.

Data parallelism (``--dp-size N``): each DP rank is its own scheduler with its own KV pool, and a
stream's memory lives in one of them. SGLang's DP controller balances requests (round robin) and never
looks at sessions, so every turn of a stream carries ``routed_dp_rank`` = a stable hash of its id:
the same rank on every turn and in every process, without a table to keep. Its pool is the one a
new stream is admitted against (``hermes_state(session_id)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sglang_hermes.protocol import StreamTurn, VideoTimes

SESSION_CAPACITY = 1 << 30  # SGLang's per-session character cap; a stream is bounded by its budget instead
DISCONNECT_POLL_SECONDS = 0.2
TURN_DONE_POLL_SECONDS = 0.05


class EngineError(Exception):
    """SGLang refused or aborted a turn; ``status`` is the HTTP status it meant."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ModelInfo:
    name: str
    model_type: str
    hf_config: Any
    multimodal: bool
    context_len: int
    vocab_size: int


def _manager():
    from sglang.srt.entrypoints import http_server

    state = http_server.get_global_state()
    if state is None:
        raise EngineError("the engine is not ready yet", status=503)
    return state.tokenizer_manager


def model_info() -> ModelInfo:
    tm = _manager()
    cfg = tm.model_config.hf_config
    return ModelInfo(name=tm.served_model_name, model_type=getattr(cfg, "model_type", ""), hf_config=cfg,
                     multimodal=bool(tm.model_config.is_multimodal), context_len=int(tm.context_len),
                     vocab_size=int(tm.model_config.vocab_size))


def tokenize(text: str) -> list[int]:
    return _manager().tokenizer(text, add_special_tokens=False)["input_ids"]


def special_token_texts() -> frozenset[str]:
    """Every added token's spelling: text that the tokenizer turns into that token wherever it appears."""
    tok = _manager().tokenizer
    return frozenset(tok.get_added_vocab()) | frozenset(tok.all_special_tokens)


async def open_session(session_id: str) -> None:
    from sglang.srt.managers.io_struct import OpenSessionReqInput

    got = await _manager().open_session(OpenSessionReqInput(capacity_of_str_len=SESSION_CAPACITY,
                                                            session_id=session_id, streaming=True))
    if got is None:
        raise EngineError(f"SGLang already has a session {session_id!r}", status=409)


async def close_session(session_id: str) -> None:
    from sglang.srt.managers.io_struct import CloseSessionReqInput

    await _manager().close_session(CloseSessionReqInput(session_id=session_id))


def dp_size() -> int:
    return max(1, int(_manager().elastic_worker_count))


def dp_rank(session_id: str, size: int | None = None) -> int:
    """The data-parallel rank that holds this stream (0 without data parallelism), of ``size`` ranks
    (the server's by default)."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()  # not hash(): salted per process
    return int.from_bytes(digest, "big") % (size or dp_size())


async def hermes_state(session_id: str | None = None) -> dict:
    """The schedulers' hermes state (``runtime.scheduler_state``): with ``session_id``, the state of the
    data-parallel rank that holds that stream; without, every rank's streams and pool slots together."""
    states = [s.get("hermes", {}) for s in await _manager().get_internal_state()]
    if not states:
        return {}
    if session_id is not None:
        rank = dp_rank(session_id)
        return next((s for s in states if s.get("dp_rank", 0) == rank), states[0])
    merged = {**states[0], "streams": {sid: v for s in states for sid, v in s.get("streams", {}).items()},
              "parked_bytes": {sid: v for s in states for sid, v in s.get("parked_bytes", {}).items()}}
    for key in ("kv_total_slots", "kv_available_slots"):
        merged[key] = sum(s.get(key) or 0 for s in states)
    return merged


async def command(op: str, session_id: str | None = None, **args) -> dict:
    """Run a hermes command in the scheduler that holds ``session_id`` (``runtime.scheduler_commands``);
    raises ``EngineError`` with the command's status if it failed."""
    from sglang.srt.managers.io_struct import GetInternalStateReq

    from sglang_hermes.runtime import scheduler_commands

    cmd = {"op": op, "session_id": session_id, "dp_rank": dp_rank(session_id) if session_id else 0, **args}
    tm = _manager()
    tm.auto_create_handle_loop()
    outs = await tm.get_internal_state_communicator(GetInternalStateReq(rid=scheduler_commands.encode(cmd)))
    results = [o.internal_state.get(scheduler_commands.RESULT_KEY, {}) for o in outs]
    result = next((r for r in results if not r.get("skip")), None)
    if result is None:
        raise EngineError(f"no scheduler answered the hermes command {op!r}", status=500)
    if "error" in result:
        raise EngineError(result["error"], int(result.get("status") or 500))
    return result


async def turn_done(session_id: str, timeout: float) -> bool:
    """Wait until SGLang runs no turn of this stream (an abandoned turn is aborted and rolled back by
    then); False if it still does after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        stream = (await hermes_state()).get("streams", {}).get(session_id)
        if stream is None or not stream.get("turn_in_flight"):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(TURN_DONE_POLL_SECONDS)


@contextlib.asynccontextmanager
async def _abort_on_disconnect(request, rid: str):
    """Abort the turn as soon as its HTTP client goes away. SGLang polls for a disconnect only while
    no output arrives, so a turn that keeps producing tokens (an ask) would otherwise run to its end."""
    async def watch():
        while not await request.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL_SECONDS)
        _manager().abort_request(rid)

    watcher = asyncio.get_running_loop().create_task(watch()) if request is not None else None
    try:
        yield
    finally:
        if watcher is not None:
            watcher.cancel()


async def turn(session_id: str, text: str, tag: StreamTurn, *, max_new_tokens: int, sampling: dict | None = None,
               video: list[str] | None = None, images: list[str] | None = None, stream: bool = False,
               video_times: VideoTimes | None = None, rid: str | None = None, request=None,
               input_ids: list[int] | None = None, logprobs: bool = False) -> AsyncIterator[dict]:
    """Run one turn of a stream; yields SGLang's outputs (one, or one per streamed piece), each with
    ``delta``: the text new since the previous output, whichever way the server streams. A client
    that disconnects aborts the turn. With ``input_ids`` the turn carries these token ids instead of ``text``.
    With ``logprobs``, each output's ``meta_info["output_token_logprobs"]`` holds every token so far:
    (log-prob, token id, token text).

    Raises ``EngineError`` when SGLang refuses or aborts it (the stream is then as it was before).
    """
    from fastapi import HTTPException
    from sglang.srt.managers.io_struct import GenerateReqInput

    rid = rid or f"hermes-{tag.role}-{uuid.uuid4().hex}"
    custom = {**tag.custom_params(), **(video_times.custom_params() if video_times is not None else {})}
    params = {"max_new_tokens": max_new_tokens, "custom_params": custom, **(sampling or {})}
    tm = _manager()
    obj = GenerateReqInput(text=None if input_ids is not None else text, input_ids=input_ids,
                           video_data=video or None, image_data=images or None, rid=rid,
                           sampling_params=params, session_params={"id": session_id}, stream=stream,
                           return_logprob=logprobs, return_text_in_logprobs=logprobs,
                           routed_dp_rank=dp_rank(session_id) if dp_size() > 1 else None)
    incremental = stream and tm.incremental_streaming_output
    seen, finished, token_logprobs = 0, False, []
    try:
        async with _abort_on_disconnect(request, rid), contextlib.aclosing(tm.generate_request(obj, request)) as outs:
            async for out in outs:
                finish = out.get("meta_info", {}).get("finish_reason")
                finished = finish is not None
                if isinstance(finish, dict) and finish.get("type") == "abort":
                    raise EngineError(finish.get("message") or "aborted", int(finish.get("status_code") or 400))
                text = out.get("text") or ""
                out["delta"] = text if incremental else text[seen:]
                if logprobs:
                    got = list(out.get("meta_info", {}).get("output_token_logprobs") or [])
                    token_logprobs = token_logprobs + got if incremental else got
                    out.setdefault("meta_info", {})["output_token_logprobs"] = token_logprobs
                seen = len(text)
                yield out
    except HTTPException as e:
        raise EngineError(str(e.detail), e.status_code) from None
    except ValueError as e:
        raise EngineError(str(e), int(getattr(e, "status_code", 400))) from None
    finally:
        if not finished:  # left early (caller gone, cancelled): SGLang must not go on with the turn
            tm.abort_request(rid)
