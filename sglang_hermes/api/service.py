"""What the session API does: open and close streams with admission, append chunks, ask questions.

Each stream turn becomes one request on the stream's SGLang streaming session (``runtime.engine_client``)
in the token layout of ``sglang_hermes.layout``: an append is one vision segment plus the guidance
block (mode ``block``), or one vision segment followed by one score turn per guidance prompt when the
stream asks for them (mode ``passes``); an ask is the question closing the user turn. Media is
fetched under deadlines
(``sglang_hermes.media_fetch``) and decoded and re-encoded in a pool of its own, off the event loop; a stream's turns run one at a time in arrival order, and closing a stream cancels its pending fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from sglang_hermes import media, media_fetch
from sglang_hermes.api import metrics, user_text
from sglang_hermes.api.errors import ApiError
from sglang_hermes.api.models import SessionCreate
from sglang_hermes.api.registry import SessionRecord, registry
from sglang_hermes.api.settings import settings
from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import (DEFAULT_SYSTEM, TIMESTAMPED_VIDEO_MODELS, chunk_fps, chunk_is_video, chunk_text,
                                  frames_to_patches, guidance_block, guidance_parts, next_frame_time, prefix_text,
                                  question_text)
from sglang_hermes.model_facts import ModelFacts
from sglang_hermes.policy import get_policy
from sglang_hermes.protocol import StreamTurn, VideoTimes
from sglang_hermes.runtime import engine_client
from sglang_hermes.runtime.engine_client import EngineError

RETRY_AFTER_SECONDS = 5
# How long a turn waits for SGLang to finish the abandoned turn before it (aborted and rolled back, in
# well under a second when SGLang is alive); past it the turn is sent anyway and SGLang refuses it if
# the other still runs.
ABANDONED_TURN_WAIT_SECONDS = 30.0
logger = logging.getLogger("sglang_hermes")


def _model():
    info = engine_client.model_info()
    if not info.multimodal:
        raise ApiError(400, f"model {info.name!r} has no vision input: it cannot serve video sessions",
                       param="session")
    return info


# -- sessions ----------------------------------------------------------------------------------

async def open_session(body: SessionCreate) -> SessionRecord:
    info = _model()
    s = settings()
    sid = body.id or registry.new_id()
    _check_new_id(sid)
    if body.restore_from is not None:
        return await restore(sid, snapshot_file(body.restore_from, param="restore_from"))
    overrides = {k: v for k, v in {"budget_tokens": body.budget_tokens or s.budget_tokens,
                                   "policy": body.policy or s.policy, "reindex": body.reindex or s.reindex,
                                   "chunk_frames": body.chunk_frames or s.chunk_frames,
                                   "guidance": body.guidance or s.guidance,
                                   "max_chunk_tokens": s.max_chunk_tokens}.items()}
    for window in ("recent_tokens", "sink_tokens"):  # the stream's, else the server's, else the config's default
        value = getattr(body, window) if getattr(body, window) is not None else getattr(s, window)
        if value is not None:
            overrides[window] = value
    try:
        cfg = HermesConfig.for_architecture(info.model_type, **overrides)
    except ValidationError as e:
        raise ApiError.invalid(e, "invalid session config: ") from None
    facts = ModelFacts.from_hf_config(info.hf_config)
    smallest_chunk = facts.min_chunk_tokens(cfg.chunk_frames)
    if cfg.budget_tokens < smallest_chunk:
        raise ApiError(400, f"budget_tokens={cfg.budget_tokens} is smaller than one chunk: {cfg.chunk_frames} "
                            f"frames cost at least {smallest_chunk} tokens on this model (raise the budget "
                            f"or lower chunk_frames)", param="budget_tokens")
    system = body.system_prompt if body.system_prompt is not None else DEFAULT_SYSTEM
    prefix = prefix_text(_plain(system))
    reserve = _worst_case_tokens(cfg, prefix)
    total = (await engine_client.hermes_state(sid)).get("kv_total_slots") or 0  # the pool of its rank
    await _admit_making_room(sid, reserve, total)  # from here on the slots are promised to this stream
    try:
        record = SessionRecord(sid, cfg, system, body.ttl_seconds or s.ttl_seconds, body.fps or s.fps, reserve)
        await engine_client.open_session(sid)
        try:
            await _run(record, prefix, StreamTurn(role="open", config=cfg), max_new_tokens=0)
        except BaseException:
            await engine_client.close_session(sid)
            raise
        registry.sessions[sid] = record
    finally:
        registry.opening.pop(sid, None)
    _forget_snapshot(sid)  # an older stream's snapshot under this id must not come back after a restart
    metrics.streams_open(len(registry.sessions))
    return record


def _check_new_id(sid: str) -> None:
    if sid in registry.sessions or sid in registry.opening:
        raise ApiError(409, f"session {sid!r} already exists", param="id", code="session_exists")


def _worst_case_tokens(cfg: HermesConfig, prefix: str) -> int:
    """KV slots a stream can hold at its peak: prefix + memory + one chunk + guidance + an ask."""
    s = settings()
    guidance = len(guidance_block(cfg.prompts, None, engine_client.tokenize).token_ids)
    return len(engine_client.tokenize(prefix)) + cfg.budget_tokens + cfg.max_chunk_tokens + guidance + \
        2 * s.ask_reserve_tokens


def _admit(sid: str, reserve: int, total: int, *, new: bool = True) -> None:
    """Check and promise in one step, with no await in between: concurrent opens each see the
    slots the others were promised (streams open and opening), so the pool is never over-committed.
    Counted against the pool of the data-parallel rank the stream will live on (``total``) and the
    resident streams on that rank (an offloaded stream holds no slot). ``new`` False: an offloaded
    stream coming back."""
    if new:
        _check_new_id(sid)
    rank = engine_client.dp_rank(sid)
    committed = registry.reserved(lambda other: engine_client.dp_rank(other) == rank)
    if committed + reserve > total:
        raise ApiError(429, f"the KV pool cannot hold another stream: it needs up to {reserve} slots, "
                            f"{total - committed} of {total} are not promised to open streams; retry when one "
                            f"closes", code="kv_pool_full", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    registry.opening[sid] = reserve


async def _admit_making_room(sid: str, reserve: int, total: int, *, new: bool = True) -> None:
    """``_admit``; with idle offload on, a full pool first sends its least recently used idle streams (of the
    same data-parallel rank) to host RAM, one at a time, until the stream fits: open streams are then bounded
    by host memory. Without offload, or with no idle stream left, the 429 stands."""
    rank = engine_client.dp_rank(sid)
    while True:
        try:
            _admit(sid, reserve, total, new=new)
            return
        except ApiError as e:
            if e.status != 429 or settings().offload_after is None:
                raise
            idle = sorted((r for r in registry.sessions.values() if r.id != sid and not r.offloaded
                           and not r.lock.locked() and engine_client.dp_rank(r.id) == rank),
                          key=lambda r: r.last_used)
            if not idle or not await offload(idle[0]):
                raise


def _plain(text: str) -> str:
    return user_text.plain(text, engine_client.special_token_texts())


def get_record(sid: str) -> SessionRecord:
    record = registry.sessions.get(sid)
    if record is None or record.closed:
        raise ApiError(404, f"no session {sid!r} (unknown, closed or expired)", param="session.id",
                       code="session_not_found")
    return record


async def close_session(sid: str) -> None:
    record = get_record(sid)
    record.closed = True
    registry.sessions.pop(sid, None)
    fetcher().cancel_stream(sid)  # a media download does not hold the close up
    async with record.lock:  # let a turn in flight finish; later ones see the stream closed
        await _settle(record)
        if record.offloaded:
            await engine_client.command("drop", sid)
        else:
            await engine_client.close_session(sid)
    _forget_snapshot(sid)  # a closed stream is not restored by a later turn naming it
    metrics.streams_open(len(registry.sessions))
    metrics.tokens_held(_held_total(await engine_client.hermes_state()))


async def expire_idle() -> list[str]:
    gone = []
    for record in registry.expired():
        if record.id in registry.sessions:
            await close_session(record.id)
            gone.append(record.id)
    return gone


async def stats(record: SessionRecord, state: dict | None = None) -> dict:
    state = state if state is not None else await engine_client.hermes_state()
    stream = state.get("streams", {}).get(record.id, {})
    held = int(stream.get("memory_len", 0))
    per_token = state.get("kv_bytes_per_token") or 0
    return {"id": record.id, "object": "hermes.session", "created": record.created,
            "frames": record.frames, "chunks": record.chunks,
            "tokens_seen": int(stream.get("tokens_seen", 0)), "tokens_held": held,
            "budget_tokens": record.cfg.budget_tokens, "compressions": int(stream.get("compressions", 0)),
            "last_compression_ms": float(stream.get("last_compression_ms", 0.0)),
            "kv_bytes": held * int(per_token), "position": int(stream.get("clock", 0)),
            "time_seconds": round(record.time_seconds, 6), "config": config_view(record)}


def config_view(record: SessionRecord) -> dict:
    cfg = record.cfg
    return {"budget_tokens": cfg.budget_tokens, "policy": cfg.policy, "reindex": cfg.reindex,
            "system_prompt": record.system_prompt, "ttl_seconds": record.ttl_seconds, "fps": record.fps,
            "chunk_frames": cfg.chunk_frames, "max_chunk_tokens": cfg.max_chunk_tokens,
            "recent_tokens": cfg.recent_window, "sink_tokens": cfg.sink_tokens, "guidance": cfg.guidance}


# -- turns -------------------------------------------------------------------------------------

@dataclass
class Chunk:
    frames: np.ndarray      # [n, H, W, 3]
    times: np.ndarray       # [n] seconds on the stream's time line


@functools.cache
def media_pool() -> ThreadPoolExecutor:
    """Threads for decoding and re-encoding media, apart from the default pool that SGLang's HTTP side uses."""
    return ThreadPoolExecutor(settings().media_workers, thread_name_prefix="hermes-media")


@functools.cache
def fetcher() -> media_fetch.MediaFetcher:
    s = settings()
    return media_fetch.MediaFetcher(media_fetch.FetchLimits(
        max_bytes=s.max_media_bytes, url_deadline=s.fetch_deadline, append_deadline=s.append_deadline,
        server_fetches=s.fetch_concurrency, stream_fetches=s.stream_fetch_concurrency,
        allow_local=s.allow_local_media), media_pool())


async def _in_media_pool(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(media_pool(), fn, *args)


def decode_chunk(parts: list[tuple[str, str]], payloads: list[bytes], record: SessionRecord,
                 timestamps: list[float] | None) -> Chunk:
    """The frames of one append, in order: image parts as they are, video parts sampled at the stream's fps;
    every frame within the decode limits (``--hermes-max-frame-*``, ``--hermes-max-chunk-pixels``)."""
    limits = settings().decode_limits()
    limit, pixels = record.cfg.chunk_frames, limits.chunk_pixels
    frames, times = [], []
    for (kind, _), data in zip(parts, payloads):
        if kind == "image_url":
            got, secs = [media.decode_image(data, limits)], [None]
        else:
            got, secs = media.decode_video(data, record.fps, max_frames=limit - len(frames) + 1, limits=limits,
                                           max_pixels=pixels)
            secs = secs.tolist()
        frames.extend(got)
        times.extend(secs)
        pixels -= sum(f.shape[0] * f.shape[1] for f in got)
        if len(frames) > limit:
            raise media.MediaError(f"the append carries more than {limit} frames (this stream's chunk_frames)",
                                   status=413)
        if pixels < 0:
            raise media.too_many_pixels(limits)
    return Chunk(media.same_size(frames), _place_in_time(record, times, timestamps))


def _place_in_time(record: SessionRecord, times: list, timestamps: list[float] | None) -> np.ndarray:
    start = record.time_seconds
    if timestamps is None:
        # Frames without timestamps follow each other at the stream's fps; a video part keeps its own spacing.
        out, t = [], start
        for own in times:
            out.append(t if own is None else start + own)
            t = out[-1] + 1.0 / record.fps
        return np.asarray(out)
    if len(timestamps) != len(times):
        raise media.MediaError(f"timestamps has {len(timestamps)} entries for {len(times)} frames", param="timestamps")
    ts = np.asarray(timestamps, dtype=np.float64)
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0) or (record.frames and ts[0] < start - 1e-9):
        raise media.MediaError("timestamps must be finite, non-decreasing and not before the stream's last frame",
                               param="timestamps")
    return ts


async def append(record: SessionRecord, parts: list[tuple[str, str]], timestamps: list[float] | None,
                 request=None, *, skip_repeated: bool = False) -> tuple[int, dict]:
    """Append one chunk; returns (tokens appended, stats).

    With ``skip_repeated`` (stateless clients resending a window of frames), parts whose media bytes
    this stream already appended are dropped first (``frame_hashes``), under the stream's turn lock so
    that concurrent calls never append one frame twice; stats then carry ``last_append``: frames
    appended and repeated. An append left with no new frame runs no turn."""
    info = _model()
    if not parts:
        raise ApiError(400, "an append needs at least one image_url or video_url part", param="messages")
    async with _stream_turn(record):
        try:
            payloads = await fetcher().fetch(record.id, [url for _, url in parts])
            keep, keys = record.frame_hashes.new_indices(payloads)  # every append's frames are remembered
            repeated = len(parts) - len(keep) if skip_repeated else 0
            if skip_repeated:
                parts, payloads = [parts[i] for i in keep], [payloads[i] for i in keep]
                timestamps = None if timestamps is None else [timestamps[i] for i in keep]
                if not parts:
                    record.touch()
                    return 0, {**await stats(record), "last_append": {"frames": 0, "repeated": repeated,
                                                                      "tokens": 0}}
            chunk = await _in_media_pool(decode_chunk, parts, payloads, record, timestamps)
            text, media_kw = await _in_media_pool(_encode_chunk, info, chunk, record)
        except media_fetch.FetchCancelled:
            raise ApiError(404, f"session {record.id!r} was closed while this append's media was being fetched; "
                                f"nothing was appended", param="session.id", code="session_not_found") from None
        except media.MediaError as e:
            # A deadline is not worth an automatic retry by the openai client: the URL would be as slow again.
            raise ApiError(e.status, str(e), param=e.param or "messages", code=e.code,
                           headers={"x-should-retry": "false"} if e.status == 504 else None) from None
        tag = StreamTurn(role="append")
        if get_policy(record.cfg).uses_attention and record.cfg.guidance == "block":
            block = guidance_block(record.cfg.prompts, record.last_qa, engine_client.tokenize)
            text += block.text
            tag = StreamTurn(role="append", guidance_ids=block.token_ids, guidance_segments=block.segment_lengths)
        await _run(record, text, tag, max_new_tokens=0, request=request, **media_kw)
        if record.cfg.guidance == "passes":
            await _guidance_passes(record, request)
        record.frame_hashes.remember(keys)
        record.log_chunk(len(chunk.frames))
        record.frames += len(chunk.frames)
        record.chunks += 1
        record.time_seconds = next_frame_time(chunk.times, record.fps)
        record.touch()
        state = await engine_client.hermes_state()
        out = await stats(record, state)
        # Only appends move these counters, and they run one at a time: the last ones seen are "before".
        appended, compressed = out["tokens_seen"] - record.tokens_seen, out["compressions"] - record.compressions
        record.tokens_seen, record.compressions = out["tokens_seen"], out["compressions"]
        record.chunk_log[record.chunks - 1]["tokens"] = appended
        if skip_repeated:
            out["last_append"] = {"frames": len(chunk.frames), "repeated": repeated, "tokens": appended}
    metrics.after_append(out, compressed, appended, _held_total(state))
    return appended, out


async def _guidance_passes(record: SessionRecord, request=None) -> None:
    """The score turns the stream asks for after its append (none while under budget); if one
    fails, the runtime drops the chunk with it and the append fails as a whole."""
    state = await engine_client.hermes_state()
    awaiting = state.get("streams", {}).get(record.id, {}).get("awaiting_scores", [])
    parts = guidance_parts(record.cfg.prompts, record.last_qa)
    for name in awaiting:
        await _run(record, parts[name], StreamTurn(role="score", prompt=name), max_new_tokens=0, request=request)


def _held_total(state: dict) -> int:
    return sum(int(v.get("memory_len", 0)) for k, v in state.get("streams", {}).items() if k in registry.sessions)


def _encode_chunk(info: engine_client.ModelInfo, chunk: Chunk, record: SessionRecord) -> tuple[str, dict]:
    """A chunk as the engine takes it: one mp4 for M-RoPE video models (its fps gives video time),
    one PNG per frame otherwise.

    A video model groups ``temporal_patch_size`` frames into one patch and SGLang's video sampler
    refuses fewer frames than that (a single-frame append failed with "nframes should in interval
    [2, 1]") and drops one of an odd count; the last frame is repeated up to a whole group, which
    is what the model's own processor does with a short video. A model that writes frame timestamps
    into the prompt (Qwen3-VL) gets every frame's stream time with it (``protocol.VideoTimes``), so
    its "<t seconds>" say where the chunk sits in the stream, not in its own mp4.
    """
    text = chunk_text(info.model_type, len(chunk.frames))
    if chunk_is_video(info.model_type):
        group = getattr(getattr(info.hf_config, "vision_config", None), "temporal_patch_size", 1) or 1
        frames = chunk.frames
        if len(frames) % group:
            frames = np.concatenate([frames, np.repeat(frames[-1:], group - len(frames) % group, axis=0)])
        mp4 = media.encode_mp4(frames, fps=chunk_fps(chunk.times, record.fps))
        kw = {"video": [media.data_url("video/mp4", mp4)]}
        if info.model_type in TIMESTAMPED_VIDEO_MODELS:
            kw["video_times"] = VideoTimes(videos=[frames_to_patches(chunk.times, group)])
        return text, kw
    return text, {"images": [media.data_url("image/png", media.encode_png(f)) for f in chunk.frames]}


def _check_open(record: SessionRecord) -> None:
    if record.closed:
        raise ApiError(404, f"session {record.id!r} was closed", param="session.id", code="session_not_found")


@contextlib.asynccontextmanager
async def _stream_turn(record: SessionRecord):
    """The stream's turn lock, for one turn. A turn left early (its client went away, its task was
    cancelled, SGLang refused it) may still be running in the scheduler while its abort travels
    there; the next turn must not reach SGLang before that one is rolled back, or SGLang refuses it
    (one turn at a time per session). So the lock's next holder first waits for it to be done."""
    async with record.lock:
        _check_open(record)
        await _settle(record)
        if record.offloaded:
            await _resume(record)
        record.turn_unsettled = True
        yield
        record.turn_unsettled = False  # not reached when the turn raised or was cancelled


async def _settle(record: SessionRecord) -> None:
    if record.turn_unsettled:
        if not await engine_client.turn_done(record.id, ABANDONED_TURN_WAIT_SECONDS):
            logger.warning("hermes session %s: its last turn still runs after %.0f s", record.id,
                           ABANDONED_TURN_WAIT_SECONDS)
        record.turn_unsettled = False


async def _run(record: SessionRecord, text: str | None, tag: StreamTurn, *, max_new_tokens: int, request=None,
               **kw) -> dict:
    out = None
    try:
        async with contextlib.aclosing(engine_client.turn(record.id, text, tag, max_new_tokens=max_new_tokens,
                                                          request=request, **kw)) as outs:
            async for out in outs:
                pass
    except EngineError as e:
        raise ApiError(e.status, str(e)) from None
    return out


@dataclass
class AskParams:
    question: str
    max_tokens: int
    sampling: dict
    logprobs: bool = False  # the answer's tokens' log-probabilities in meta_info["output_token_logprobs"]


async def ask(record: SessionRecord, p: AskParams, request=None) -> tuple[str, dict, dict]:
    """Answer from the stream's memory; returns (answer, meta_info, stats)."""
    text, meta = "", {}
    async for piece, meta in ask_stream(record, p, request):
        text += piece
    return text, meta, await stats(record)


async def ask_stream(record: SessionRecord, p: AskParams, request=None) -> AsyncIterator[tuple[str, dict]]:
    """The answer as (new text, meta_info) pieces; the question and answer are not kept in the stream."""
    _model()
    async with _stream_turn(record):
        t0 = time.perf_counter()
        first, answer = True, ""
        question = _plain(p.question)
        try:
            turn = engine_client.turn(record.id, question_text(question), StreamTurn(role="ask"),
                                      max_new_tokens=p.max_tokens, sampling=p.sampling, stream=True,
                                      rid=f"hermes-ask-{uuid.uuid4().hex}", request=request, logprobs=p.logprobs)
            async with contextlib.aclosing(turn) as outs:
                async for out in outs:
                    if first:
                        metrics.ask_ttft(time.perf_counter() - t0)
                        first = False
                    answer += out["delta"]
                    yield out["delta"], out.get("meta_info", {})
        except EngineError as e:
            raise ApiError(e.status, str(e)) from None
        record.last_qa = (question, _plain(answer))
        record.touch()


# -- snapshots, restore and idle offload (see sglang_hermes.api.snapshots for the files) ------------

def snapshot_dir():
    from pathlib import Path

    d = settings().snapshot_dir
    return Path(d) if d else None


def snapshot_file(name: str, param: str = "session.id"):
    """The snapshot file of stream (or snapshot) ``name`` in the operator's directory."""
    from sglang_hermes.snapshots.format import SUFFIX

    d = snapshot_dir()
    if d is None:
        raise ApiError(400, "this server keeps no snapshots (start it with --hermes-snapshot-dir DIR)", param=param,
                       code="snapshots_disabled")
    return d / f"{name}{SUFFIX}"


def _forget_snapshot(sid: str) -> None:
    d = snapshot_dir()
    if d is not None:
        snapshot_file(sid).unlink(missing_ok=True)


def record_fields(record: SessionRecord) -> dict:
    """What the HTTP side knows of a stream and must survive it: saved in the snapshot's header."""
    return {"id": record.id, "system_prompt": record.system_prompt, "ttl_seconds": record.ttl_seconds,
            "fps": record.fps, "created": record.created, "frames": record.frames, "chunks": record.chunks,
            "time_seconds": record.time_seconds, "tokens_seen": record.tokens_seen,
            "compressions": record.compressions, "last_qa": list(record.last_qa) if record.last_qa else None}


async def restore(sid: str, path) -> SessionRecord:
    """Open stream ``sid`` from a snapshot file: its memory loads back into the pool, its record here."""
    if not path.exists():
        raise ApiError(404, f"no snapshot {path.stem!r} in the snapshot directory", param="restore_from",
                       code="snapshot_not_found")
    _check_new_id(sid)
    registry.opening[sid] = 0  # claims the id at once: a concurrent open or restore of it gets 409
    try:
        try:
            loaded = await engine_client.command("load", sid, path=str(path))
        except EngineError as e:
            raise ApiError(e.status, str(e), param="restore_from", code="snapshot_refused") from None
        header = loaded["header"]
        saved = header.get("record") or {}
        cfg = HermesConfig.model_validate(header["config"])
        s = settings()
        record = SessionRecord(sid, cfg, saved.get("system_prompt", DEFAULT_SYSTEM),
                               saved.get("ttl_seconds") or s.ttl_seconds, saved.get("fps") or s.fps, 0)
        for key in ("frames", "chunks", "time_seconds", "tokens_seen", "compressions"):
            if key in saved:
                setattr(record, key, saved[key])
        record.last_qa = tuple(saved["last_qa"]) if saved.get("last_qa") else None
        await _load_row(record, loaded, new=False)
    except BaseException:
        with contextlib.suppress(Exception):
            await engine_client.command("drop", sid)
        raise
    finally:
        registry.opening.pop(sid, None)
    registry.sessions[sid] = record
    metrics.streams_open(len(registry.sessions))
    logger.info("hermes session %s restored from %s (%d memory tokens)", sid, path.name, loaded["kv_tokens"])
    return record


async def _load_row(record: SessionRecord, loaded: dict, *, new: bool) -> None:
    """The stream's row from what the scheduler parked: admission, a new streaming session, the
    opening turn (prefix), then the restore turn whose slots get the parked memory."""
    prefix = prefix_text(_plain(record.system_prompt))
    reserve = _worst_case_tokens(record.cfg, prefix)
    total = (await engine_client.hermes_state(record.id)).get("kv_total_slots") or 0
    await _admit_making_room(record.id, reserve, total, new=new)
    try:
        await engine_client.open_session(record.id)
        try:
            await _run(record, prefix, StreamTurn(role="open", config=record.cfg), max_new_tokens=0)
            if loaded["kv_tokens"]:
                await _run(record, None, StreamTurn(role="restore"), max_new_tokens=0,
                           input_ids=[int(loaded["filler_id"])] * int(loaded["kv_tokens"]))
        except BaseException:
            await engine_client.close_session(record.id)
            raise
        record.reserve_tokens = reserve
    finally:
        registry.opening.pop(record.id, None)


async def get_or_restore(sid: str) -> SessionRecord:
    """The stream's record; a stream this process does not know but whose snapshot is in the snapshot
    directory (a restart) is restored from it first, so its client goes on as if nothing happened."""
    record = registry.sessions.get(sid)
    if record is not None or snapshot_dir() is None:
        return get_record(sid)
    path = snapshot_file(sid)
    if not path.exists():
        return get_record(sid)
    for _ in range(600):  # another request may be restoring it right now
        if sid not in registry.opening:
            break
        await asyncio.sleep(0.05)
    if sid in registry.sessions:
        return get_record(sid)
    return await restore(sid, path)


async def snapshot(record: SessionRecord) -> dict:
    """Write the stream's memory to the snapshot directory, between its turns."""
    path = snapshot_file(record.id)
    async with _stream_turn(record):
        out = await engine_client.command("save", record.id, path=str(path), record=record_fields(record))
    logger.info("hermes session %s: snapshot %s (%d bytes, %.1f ms)", record.id, path.name, out["bytes"], out["ms"])
    return {"id": record.id, "object": "hermes.snapshot", "snapshot": record.id, "bytes": out["bytes"],
            "kv_tokens": out["kv_tokens"], "ms": round(out["ms"], 3)}


async def snapshot_all(timeout: float) -> int:
    """Every open stream to the snapshot directory (graceful shutdown); returns how many were written."""
    done = 0
    for record in list(registry.sessions.values()):
        try:
            async with asyncio.timeout(timeout):
                async with record.lock:
                    await _settle(record)
                    await engine_client.command("save", record.id, path=str(snapshot_file(record.id)),
                                                record=record_fields(record))
            done += 1
        except Exception:
            logger.exception("hermes session %s: snapshot at shutdown failed", record.id)
    return done


async def offload(record: SessionRecord) -> bool:
    """Move an idle stream's memory to host RAM and free its row in the pool; False if it is busy."""
    if record.lock.locked() or record.offloaded or record.closed:
        return False
    async with record.lock:
        await _settle(record)
        await engine_client.command("save", record.id, path=None, record=record_fields(record))
        await engine_client.close_session(record.id)
        record.offloaded = True
    metrics.tokens_held(_held_total(await engine_client.hermes_state()))
    logger.info("hermes session %s: idle, its memory moved to host RAM", record.id)
    return True


async def offload_idle() -> list[str]:
    after = settings().offload_after
    if after is None:
        return []
    now = time.monotonic()
    idle = [r for r in list(registry.sessions.values()) if not r.offloaded and now - r.last_used > after]
    return [r.id for r in idle if await offload(r)]


async def _resume(record: SessionRecord) -> None:
    """An offloaded stream's next turn: its memory comes back into the pool first (under its turn lock)."""
    t0 = time.perf_counter()
    loaded = await engine_client.command("load", record.id, path=None)
    try:
        await _load_row(record, loaded, new=False)
    except ApiError as e:
        if e.status == 429:
            raise ApiError(429, f"stream {record.id!r} is offloaded and the KV pool cannot take it back now: "
                                f"{e}", code="kv_pool_full", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) \
                from None
        raise
    record.offloaded = False
    record.resume_ms = (time.perf_counter() - t0) * 1e3
    logger.info("hermes session %s: back from host RAM in %.1f ms", record.id, record.resume_ms)
