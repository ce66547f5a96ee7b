"""Keeps a stream's SGLang session row equal to its memory: questions and answers never stay in it.

A stream is an SGLang streaming session. Appends are prefill-only turns (``max_new_tokens == 0``)
whose KV stays in the row; an ask decodes on top of the row and, once it finished, its question and
answer slots are freed again, so the next turn sees the stream's memory only (HERMES §6).

The trim rides on SGLang's own mechanism: ``StreamingSession._free_tail`` frees the row tail and
lowers the KV lengths by exactly what it freed (the idle leak checker requires that), and the
session's committed token arrays are cut to the same length, because the next turn's ids are
built from them by length (session_controller ``_share_token_arrays``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sglang.srt.plugins.hook_registry import HookRegistry, HookType

logger = logging.getLogger("sglang_hermes")

FINISHED_TURN = "sglang.srt.session.streaming_session.StreamingSession.try_cache_finished_req"
CREATE_REQ = "sglang.srt.session.session_controller.Session.create_req"
CLOSE_SESSION = "sglang.srt.session.session_controller.SessionController._close"


@dataclass
class StreamRow:
    """What the scheduler knows of one stream's row: how many slots are memory (prefix + video)."""

    session_id: str
    memory_len: int = 0
    appends: int = 0
    asks: int = 0
    answer_pending: bool = False  # the last turn was an ask whose answer is still in its req


rows: dict[str, StreamRow] = {}


def is_ask(req) -> bool:
    return (req.sampling_params.max_new_tokens or 0) > 0


def free_past_memory(session_store, session, memory_len: int) -> None:
    """Free every row slot past ``memory_len`` and make the session commit only that much.

    Runs when an ask has finished. The request's own arrays are left alone: its answer is still
    being streamed out of them; they are cut when the next turn is built (:func:`_before_create_req`).
    """
    slot = session_store.slots[session.session_id]
    session_store._free_tail(slot.kv, memory_len)
    session.committed_origin_len = memory_len
    session.committed_unpadded_len = memory_len
    session.committed_fill_len = memory_len


def _after_finished_turn(kept: bool, session_store, req, *args, **kwargs):
    if not kept:  # aborted or not a streaming turn: stock handling already ran
        return kept
    session = req.session
    row = rows.setdefault(session.session_id, StreamRow(session.session_id))
    if is_ask(req):
        if row.appends == 0:  # nothing streamed yet: the row is SGLang's own (its prefix is in the tree)
            return kept
        free_past_memory(session_store, session, row.memory_len)
        row.asks += 1
        row.answer_pending = True
    else:
        row.memory_len = len(req.origin_input_ids)
        row.appends += 1
    return kept


def _before_create_req(session, *args, **kwargs):
    """Drop the last ask's answer from the ids the next turn is built from."""
    row = rows.get(session.session_id)
    if row is not None and row.answer_pending and session.req_nodes:
        [node] = session.req_nodes.values()
        del node.req.output_ids[:]
        row.answer_pending = False


def _after_close(result, controller, session_id, *args, **kwargs):
    """A closed (or timed-out) session's row record goes with it, unless the close was deferred."""
    if session_id not in controller.sessions:
        rows.pop(session_id, None)
    return result


def install() -> None:
    HookRegistry.register(FINISHED_TURN, _after_finished_turn, HookType.AFTER)
    HookRegistry.register(CREATE_REQ, _before_create_req, HookType.BEFORE)
    HookRegistry.register(CLOSE_SESSION, _after_close, HookType.AFTER)
