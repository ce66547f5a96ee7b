"""A stream's turns over its SGLang streaming-session row: open, append (+ compress), ask, abort, close.

A stream is a streaming session whose requests carry a hermes tag (``sglang_hermes.protocol``).
Between turns its row is exactly [prefix | memory]; each turn runs on top of it:
- open: prefills the prefix (prefill-only); the stream's clock starts after it;
- append: prefills one chunk plus the guidance block (prefill-only, ONE forward, scored inside it);
  then, over budget, the policy's plan is executed on the pool, and everything past the memory
  (guidance, evicted tokens) is freed;
- append of a ``passes`` stream that goes over budget: prefills the chunk only; the chunk stays in the
  row as the stream's pending chunk (not yet a candidate) while one prefill-only ``score`` turn per
  guidance prompt runs on top of it, at the clock after the chunk, and is freed like an ask; the turn
  that completes the scores adds the chunk to the candidates and compacts;
- ask: prefills the question at the clock and decodes; afterwards question and answer are freed;
- restore (after the opening turn of a stream restored from a snapshot): prefills filler ids for the
  memory, whose slots then get the saved keys and values (``stream_snapshot``).

It rides on SGLang's own mechanism: ``StreamingSession._free_tail`` frees a row tail and lowers the
KV lengths by exactly what it freed (the idle leak checker requires that), and the session's
committed lengths decide how much of the last request's token arrays the next turn is built from
(``_share_token_arrays``), so ids always match the row. The finishing request's own arrays are not
touched while its response may still be read from them; the next turn's creation trims them.
Media already in the row is dropped from the session at that point (it is never re-embedded).

An aborted turn (client abort, or an error mid-flight) leaves the stream as it was before it: its
slots are freed back to the memory and the session keeps its last good request. Stock SGLang would
instead drop the row and re-prefill from ids, which is wrong once the row is compacted. A ``passes``
append is all or nothing: an aborted score turn, or any other turn arriving before the scores are
complete, drops the pending chunk too, so the stream is as it was before the append. An error in one
of these hooks aborts its turn the same way (``turn_faults``); it never reaches the scheduler.

A stream runs one turn at a time. A request SGLang itself refuses at creation because a turn is still in
flight ("already has an active request") is detached from the session at once: left attached, SGLang's
cleanup of that refused request would mark the session idle while the other turn still runs on it, and
the next turn would then be built on the same token arrays as the running one.
"""

from __future__ import annotations

import copy
import logging
import time
from array import array
from http import HTTPStatus

import torch
from sglang.srt.managers.schedule_batch import FINISH_ABORT
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

from sglang_hermes.layout import GUIDANCE_ORDER
from sglang_hermes.policy import StreamView
from sglang_hermes.policy.base import SUMMARY_CHUNK
from sglang_hermes.policy.positions import needs_reindex
from sglang_hermes.protocol import StreamTurn
from sglang_hermes.runtime import cache_backend, kv_compaction, stream_snapshot, turn_faults
from sglang_hermes.runtime.stream_state import PendingChunk, Stream, Turn, engine, streams

logger = logging.getLogger("sglang_hermes")

FINISHED_TURN = "sglang.srt.session.streaming_session.StreamingSession.try_cache_finished_req"
CREATE_REQ = "sglang.srt.session.session_controller.Session.create_req"
CLOSE_SESSION = "sglang.srt.session.session_controller.SessionController._close"


class TurnError(ValueError):
    """A request that cannot be a turn of its stream; it is aborted with this message and status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- turn creation -----------------------------------------------------------------------------

def _before_create_req(session, req, *args, **kwargs):
    """Drop what the last turn left in the arrays the next turn is built from: an ask's answer,
    an append's media (its KV is in the row; a stale media offset would be re-embedded), and a
    pending chunk if the new turn is not one of its score turns."""
    stream = streams.get(session.session_id)
    if stream is None or not session.req_nodes or session._inflight:
        return None  # while a turn is in flight the next request is refused: leave its arrays alone
    try:
        if stream.pending is not None and not _is_score_turn(req):
            store = cache_backend.active_cache.session
            slot = store.slots.get(session.session_id)
            if slot is not None:
                _drop_pending(store, slot, session, stream)
        [node] = session.req_nodes.values()
        if stream.answer_pending:
            del node.req.output_ids[:]
            stream.answer_pending = False
        if stream.media_pending:
            mm = node.req.multimodal_inputs
            if mm is not None:
                mm.release_features()
            node.req.multimodal_inputs = None
            _blank_memory_ids(node.req, stream)
            stream.media_pending = False
    except Exception as e:  # the request does not exist yet: _after_create_req refuses it
        logger.exception("hermes stream %s: preparing the next turn failed", session.session_id)
        _prepare_failures[session.session_id] = f"{type(e).__name__}: {e}"
    return None


# Streams whose last _before_create_req failed: the request being created is refused (500).
_prepare_failures: dict[str, str] = {}


def _blank_memory_ids(req, stream: Stream) -> None:
    """Overwrite the memory's token ids with one plain text token of the prefix.

    After compaction a memory slot holds a different token in every layer, so its id means nothing;
    worse, SGLang pads each new media turn by pairing image start/end ids over the WHOLE id array
    (``pad_mm_token_pairs``), and a kept start without its end makes it skip padding and crash.
    Only the number of ids matters to the session, so the memory's ids are made neutral.
    """
    start, end = stream.prefix_len, stream.row_len
    arrays = {id(a): a for a in (req.origin_input_ids, req.origin_input_ids_unpadded,
                                 req.full_untruncated_fill_ids) if a is not None and len(a) >= end}
    for ids in arrays.values():
        filler = ids[start - 1]
        ids[start:end] = array(ids.typecode, [filler]) * (end - start) if isinstance(ids, array) else [filler] * (end - start)


def _is_score_turn(req) -> bool:
    try:
        tag = StreamTurn.from_custom_params(req.sampling_params.custom_params)
    except ValueError:
        return False  # refused once the request exists
    return tag is not None and tag.role == "score"


def _after_create_req(new_req, session, *args, **kwargs):
    if not session.streaming:
        return new_req
    if new_req.to_finish is not None:  # refused by SGLang itself, e.g. while a turn is in flight
        if session.session_id in streams:
            new_req.session = None  # see the module docstring: it must not touch the session's state
        return new_req
    try:
        failure = _prepare_failures.pop(session.session_id, None)
        if failure is not None:
            raise TurnError(f"preparing the turn failed ({failure}); the stream is as it was before it",
                            status=HTTPStatus.INTERNAL_SERVER_ERROR)
        turn_faults.inject("create", new_req)
        tag = StreamTurn.from_custom_params(new_req.sampling_params.custom_params)
        new_req.hermes_turn = turn = _start_turn(session, new_req, tag)
        if turn is not None:
            turn.stream.last_turn_rid = new_req.rid
    except ValueError as e:  # includes pydantic's ValidationError
        _refuse(new_req, session, f"hermes stream {session.session_id}: {e}", getattr(e, "status", 400))
    except Exception as e:  # a bug of ours: fail this request only
        logger.exception("hermes stream %s: creating a turn failed", session.session_id)
        _refuse(new_req, session, f"hermes create failed for this turn ({type(e).__name__}: {e}); the stream "
                                  f"{session.session_id} is as it was before it", HTTPStatus.INTERNAL_SERVER_ERROR)
    return new_req


def _refuse(req, session, message: str, status: int = 400) -> None:
    """Abort a request that cannot be a turn, and detach it from the session so that it runs as a
    one-token aborted request: the stream and its row are untouched. Detaching matters: the scheduler
    still attaches the request's media after this, and stitching media onto a session turn whose ids
    the abort shrank fails and kills the scheduler."""
    logger.warning("%s (request %s refused)", message, req.rid)
    req.set_finish_with_abort(message, status_code=status)
    req.session = None
    session.abort_req()


def _start_turn(session, req, tag: StreamTurn | None) -> Turn | None:
    stream = streams.get(session.session_id)
    if tag is None:
        if stream is not None:
            raise TurnError("every request on a stream must carry its hermes tag")
        return None  # an ordinary streaming session: stock SGLang
    prefill_only = (req.sampling_params.max_new_tokens or 0) == 0
    if tag.role == "open":
        if stream is not None or session.req_nodes:
            raise TurnError("the opening turn must be the session's first request")
        if not prefill_only:
            raise TurnError("the opening turn must be prefill-only (max_new_tokens=0)")
        stream = streams[session.session_id] = Stream.open(session.session_id, tag.config)
        return Turn(stream, "open", start_len=0)
    if stream is None or stream.prefix_len == 0:
        raise TurnError("the stream has not been opened (send an opening turn first)")
    start = stream.row_len
    new_len = len(req.origin_input_ids) - start
    if tag.role == "ask":
        return Turn(stream, "ask", start_len=start)
    if tag.role == "restore":
        if not prefill_only:
            raise TurnError("a restore turn must be prefill-only (max_new_tokens=0)")
        try:
            stream_snapshot.check_restore_turn(stream, req, new_len)
        except stream_snapshot.SnapshotRefused as e:
            raise TurnError(str(e), e.status) from None
        return Turn(stream, "restore", start_len=start)
    if tag.role == "score":
        return _start_score(stream, tag, start, new_len, prefill_only)
    if not prefill_only:
        raise TurnError("an append must be prefill-only (max_new_tokens=0)")
    guidance = None
    if stream.cfg.guidance == "passes" and tag.guidance_ids:
        raise TurnError("a stream in guidance mode 'passes' scores its prompts in score turns; "
                        "an append carries its chunk only")
    if stream.cfg.guidance == "block" and stream.policy.uses_attention and stream.policy.compresses:
        if not tag.guidance_ids:
            raise TurnError(f"policy {stream.cfg.policy!r} needs the guidance block on every append")
        if list(req.origin_input_ids[len(req.origin_input_ids) - len(tag.guidance_ids):]) != tag.guidance_ids:
            raise TurnError("the append does not end with its guidance block")
        guidance = torch.repeat_interleave(torch.arange(len(tag.guidance_segments)),
                                           torch.tensor(tag.guidance_segments))
    chunk_len = new_len - (0 if guidance is None else len(guidance))
    if chunk_len <= 0:
        raise TurnError("an append must carry at least one chunk token")
    if chunk_len > stream.cfg.max_chunk_tokens:
        raise TurnError(f"the chunk has {chunk_len} vision tokens, more than this stream's limit of "
                        f"{stream.cfg.max_chunk_tokens}; send fewer or smaller frames per append", status=413)
    if not stream.policy.compresses and stream.num_candidates + chunk_len > stream.cfg.budget_tokens:
        raise TurnError(f"policy {stream.cfg.policy!r} keeps every token and the stream would exceed its "
                        f"budget of {stream.cfg.budget_tokens} tokens; open it with a larger budget", status=413)
    return Turn(stream, "append", start_len=start, chunk_len=chunk_len, guidance=guidance)


def _start_score(stream: Stream, tag: StreamTurn, start: int, new_len: int, prefill_only: bool) -> Turn:
    """One guidance pass: the prompt's tokens alone after the pending chunk, all of them scored."""
    if stream.cfg.guidance != "passes":
        raise TurnError(f"score turns belong to streams in guidance mode 'passes' (this one: "
                        f"{stream.cfg.guidance!r})")
    if stream.pending is None:
        raise TurnError("no append of this stream awaits its guidance passes", status=409)
    if not prefill_only:
        raise TurnError("a score turn must be prefill-only (max_new_tokens=0)")
    if new_len <= 0:
        raise TurnError("a score turn must carry its prompt's tokens")
    return Turn(stream, "score", start_len=start, guidance=torch.full((new_len,), GUIDANCE_ORDER.index(tag.prompt)))


# -- turn end ----------------------------------------------------------------------------------

def _around_finished_turn(original, store, req, *args, **kwargs):
    turn = getattr(req, "hermes_turn", None)
    if turn is None or store.borrowed_slot(req) is None:
        if turn is not None and turn.role == "open" and isinstance(req.finished_reason, FINISH_ABORT):
            streams.pop(turn.stream.session_id, None)
        return original(store, req, *args, **kwargs)
    if isinstance(req.finished_reason, FINISH_ABORT) and turn.role != "open":
        return _roll_back(store, req, turn)
    before = copy.copy(turn.stream)  # what a failed finish restores (its tensors are replaced, never mutated)
    kept = original(store, req, *args, **kwargs)
    if not kept:
        if turn.role == "open":
            streams.pop(turn.stream.session_id, None)
        return kept
    slot = store.slots.get(req.session.session_id) if req.session is not None else None
    if slot is None:
        return kept
    session = req.session
    try:
        turn_faults.inject("finish", req)
        if turn.role == "open":
            _finish_open(turn, slot)
        elif turn.role == "append":
            _finish_append(turn, slot)
        elif turn.role == "score":
            _finish_score(turn, slot)
        elif turn.role == "restore":
            stream_snapshot.write_row(turn.stream, slot)
        else:
            turn.stream.asks += 1
            turn.stream.answer_pending = True
    except Exception as e:
        _undo_finished_turn(req, turn, before, e)
    turn.mass = None  # device memory outside SGLang's KV budget: held only while its turn runs
    _keep_memory_only(store, slot, session, turn.stream.row_len)
    return kept


def _undo_finished_turn(req, turn: Turn, before: Stream, error: Exception) -> None:
    """Finishing a kept turn failed: the stream goes back to what it was, and the session keeps only
    its memory of then (the request's own arrays are trimmed and its media dropped by the next turn),
    so the turn is as if it had been aborted. Its client gets the error. Compaction rewrites the row in
    place and cannot be undone: it is the last step of ``_finish_append`` that can fail, after planning."""
    stream = turn.stream
    stream.__dict__.update(before.__dict__)
    stream.media_pending = stream.media_pending or turn.role == "append"
    stream.answer_pending = turn.role == "ask"
    if turn.role == "open":
        streams.pop(stream.session_id, None)
    turn_faults.fail_turn(req, "finish", error)


def _finish_open(turn: Turn, slot) -> None:
    stream = turn.stream
    stream.prefix_len = stream.clock = slot.kv.kv_committed_len


def _finish_append(turn: Turn, slot) -> None:
    stream = turn.stream
    chunk = turn.chunk_positions
    if chunk is None or bool((chunk < 0).any()):
        raise RuntimeError(f"stream {stream.session_id}: chunk positions were not recorded")
    stream.media_pending = True
    over_budget = stream.num_candidates + len(chunk) > stream.cfg.budget_tokens
    if (stream.cfg.guidance == "passes" and stream.policy.uses_attention and stream.policy.compresses
            and over_budget):
        stream.pending = PendingChunk(chunk, clock_before=stream.clock, score_ms=turn.score_ms)
        stream.clock = int(chunk.max()) + 1  # where the score turns' prompts start
        return
    _add_chunk(stream, chunk)
    _compress(stream, slot, turn.mass, turn.score_ms)


def _finish_score(turn: Turn, slot) -> None:
    stream = turn.stream
    pending = stream.pending
    pending.add_scores(turn)
    if not pending.complete:
        return
    stream.pending = None
    _add_chunk(stream, pending.positions)
    _compress(stream, slot, pending.mass, pending.score_ms)


def _add_chunk(stream: Stream, chunk: torch.Tensor) -> None:
    stream.add_candidates(chunk, engine.facts.num_layers)
    stream.clock = int(chunk.max()) + 1
    stream.appends += 1
    stream.tokens_seen += len(chunk)


def _compress(stream: Stream, slot, mass: torch.Tensor | None, score_ms: float) -> None:
    """Over budget, run the policy's plan on the row, reading the guidance attention `mass` [L, S, N]."""
    facts = engine.facts
    n = stream.num_candidates
    stream.last_append_ms = {"score": score_ms, "plan": 0.0, "compact": 0.0}
    if not stream.policy.compresses or n <= stream.cfg.budget_tokens:
        return
    t0 = time.perf_counter()
    attention = stream.tier_attention(mass.cpu()) if mass is not None else torch.zeros(facts.num_layers, n)
    stream.last_attention = attention
    view = StreamView(attention, stream.positions, stream.is_summary, stream.chunk, memory_start=stream.prefix_len)
    reindex = needs_reindex(stream.cfg.reindex, stream.clock, facts.max_positions, stream.cfg.reindex_margin)
    plan = stream.policy.plan(view, reindex=reindex)
    stream.last_append_ms["plan"] = (time.perf_counter() - t0) * 1e3
    if plan is None:
        return
    t0 = time.perf_counter()
    kv_compaction.compact_row(plan, slot.kv.req_pool_idx, stream.prefix_len, n)
    stream.last_compression_ms = stream.last_append_ms["compact"] = (time.perf_counter() - t0) * 1e3
    logger.debug("hermes stream %s: compacted %d -> %d in %.1f ms", stream.session_id, n, plan.memory_size,
                 stream.last_compression_ms)
    stream.positions = plan.new_pos.clone()
    stream.is_summary = plan.keep < 0
    stream.chunk = plan.carry(stream.chunk, SUMMARY_CHUNK)
    stream.compressions += 1
    if reindex:
        stream.clock = int(plan.new_pos.max()) + 1
        stream.reindexes += 1


def _keep_memory_only(store, slot, session, memory_len: int) -> None:
    """Free the row past the memory and make the session commit exactly that much of its ids."""
    store._free_tail(slot.kv, memory_len)
    session.committed_origin_len = memory_len
    session.committed_unpadded_len = memory_len
    session.committed_fill_len = min(memory_len, session.committed_fill_len or 0)


def _roll_back(store, req, turn: Turn) -> bool:
    """An aborted append, ask or score turn: free what it added, keep the session on its last good
    request. A score turn takes its pending chunk with it (the append is all or nothing)."""
    slot = store.slots[req.session.session_id]
    store._free_tail(slot.kv, turn.start_len)
    if turn.role == "score" and turn.stream.pending is not None:
        _drop_pending(store, slot, req.session, turn.stream)
    turn.mass = None
    req.detach_kv()
    slot.publishes_prompt = False
    req.release_mm_inputs_on_abort()
    req.session.abort_req()
    logger.info("hermes stream %s: aborted %s rolled back to %d slots", turn.stream.session_id, turn.role,
                turn.start_len)
    return True


def _drop_pending(store, slot, session, stream: Stream) -> None:
    """Undo an append whose guidance passes did not complete: free its chunk, restore the clock."""
    logger.info("hermes stream %s: the chunk awaiting guidance passes %s is dropped", stream.session_id,
                stream.awaiting_scores)
    stream.clock = stream.pending.clock_before
    stream.pending = None
    _keep_memory_only(store, slot, session, stream.memory_len)


def _after_close(result, controller, session_id, *args, **kwargs):
    """A closed (or timed-out) session's stream goes with it, unless the close was deferred."""
    if session_id not in controller.sessions:
        streams.pop(session_id, None)
        _prepare_failures.pop(session_id, None)
    return result


def install() -> None:
    HookRegistry.register(CREATE_REQ, _before_create_req, HookType.BEFORE)
    HookRegistry.register(CREATE_REQ, _after_create_req, HookType.AFTER)
    HookRegistry.register(FINISHED_TURN, _around_finished_turn, HookType.AROUND)
    HookRegistry.register(CLOSE_SESSION, _after_close, HookType.AFTER)
