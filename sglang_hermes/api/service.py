"""What the session API does: open and close streams with admission, append chunks, ask questions.

Each stream turn becomes one request on the stream's SGLang streaming session (``runtime.engine_client``)
in the token layout of ``sglang_hermes.layout``: an append is one vision segment plus the guidance
block, an ask is the question closing the user turn. Media is decoded and re-encoded off the event
loop; a stream's turns run one at a time in arrival order.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from sglang_hermes import media
from sglang_hermes.api import metrics
from sglang_hermes.api.errors import ApiError
from sglang_hermes.api.models import SessionCreate
from sglang_hermes.api.registry import SessionRecord, registry
from sglang_hermes.api.settings import settings
from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import DEFAULT_SYSTEM, chunk_text, guidance_block, prefix_text, question_text
from sglang_hermes.model_facts import ModelFacts
from sglang_hermes.protocol import StreamTurn
from sglang_hermes.runtime import engine_client
from sglang_hermes.runtime.engine_client import EngineError

RETRY_AFTER_SECONDS = 5


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
    if sid in registry.sessions or sid in registry.opening:
        raise ApiError(409, f"session {sid!r} already exists", param="id", code="session_exists")
    overrides = {k: v for k, v in {"budget_tokens": body.budget_tokens or s.budget_tokens,
                                   "policy": body.policy or s.policy, "reindex": body.reindex or s.reindex,
                                   "chunk_frames": body.chunk_frames or s.chunk_frames,
                                   "max_chunk_tokens": s.max_chunk_tokens}.items()}
    try:
        cfg = HermesConfig(**overrides)
    except ValidationError as e:
        raise ApiError.invalid(e, "invalid session config: ") from None
    facts = ModelFacts.from_hf_config(info.hf_config)
    smallest_chunk = facts.min_chunk_tokens(cfg.chunk_frames)
    if cfg.budget_tokens < smallest_chunk:
        raise ApiError(400, f"budget_tokens={cfg.budget_tokens} is smaller than one chunk: {cfg.chunk_frames} "
                            f"frames cost at least {smallest_chunk} tokens on this model (raise the budget "
                            f"or lower chunk_frames)", param="budget_tokens")
    system = body.system_prompt if body.system_prompt is not None else DEFAULT_SYSTEM
    prefix = prefix_text(system)
    reserve = _worst_case_tokens(cfg, prefix)
    registry.opening.add(sid)
    try:
        await _admit(sid, reserve)
        record = SessionRecord(sid, cfg, system, body.ttl_seconds or s.ttl_seconds, body.fps or s.fps, reserve)
        await engine_client.open_session(sid)
        try:
            await _run(record, prefix, StreamTurn(role="open", config=cfg), max_new_tokens=0)
        except BaseException:
            await engine_client.close_session(sid)
            raise
        registry.sessions[sid] = record
    finally:
        registry.opening.discard(sid)
    metrics.streams_open(len(registry.sessions))
    return record


def _worst_case_tokens(cfg: HermesConfig, prefix: str) -> int:
    """KV slots a stream can hold at its peak: prefix + memory + one chunk + guidance + an ask."""
    s = settings()
    guidance = len(guidance_block(cfg.prompts, None, engine_client.tokenize).token_ids)
    return len(engine_client.tokenize(prefix)) + cfg.budget_tokens + cfg.max_chunk_tokens + guidance + \
        2 * s.ask_reserve_tokens


async def _admit(sid: str, reserve: int) -> None:
    """Against the KV pool of the data-parallel rank the stream will live on, and the streams there."""
    state = await engine_client.hermes_state(sid)
    total = state.get("kv_total_slots") or 0
    rank = engine_client.dp_rank(sid)
    committed = registry.reserved(lambda other: engine_client.dp_rank(other) == rank)
    if committed + reserve > total:
        raise ApiError(429, f"the KV pool cannot hold another stream: it needs up to {reserve} slots, "
                            f"{total - committed} of {total} are not promised to open streams; retry when one "
                            f"closes", code="kv_pool_full", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


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
    async with record.lock:  # let a turn in flight finish; later ones see the stream closed
        await engine_client.close_session(sid)
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
            "chunk_frames": cfg.chunk_frames, "max_chunk_tokens": cfg.max_chunk_tokens}


# -- turns -------------------------------------------------------------------------------------

@dataclass
class Chunk:
    frames: np.ndarray      # [n, H, W, 3]
    times: np.ndarray       # [n] seconds on the stream's time line


def decode_chunk(parts: list[tuple[str, str]], record: SessionRecord, timestamps: list[float] | None) -> Chunk:
    """The frames of one append, in order: image parts as they are, video parts sampled at the stream's fps."""
    s = settings()
    limit, budget = record.cfg.chunk_frames, s.max_media_bytes
    frames, times = [], []
    for kind, url in parts:
        data = media.load_url(url, max_bytes=budget, allow_local=s.allow_local_media)
        budget -= len(data)
        if kind == "image_url":
            frames.append(media.decode_image(data))
            times.append(None)
        else:
            got, secs = media.decode_video(data, record.fps, max_frames=limit - len(frames) + 1)
            frames.extend(got)
            times.extend(secs.tolist())
        if len(frames) > limit:
            raise media.MediaError(f"the append carries more than {limit} frames (this stream's chunk_frames)",
                                   status=413)
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


def _chunk_fps(record: SessionRecord, times: np.ndarray) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return record.fps
    return float((len(times) - 1) / (times[-1] - times[0]))


async def append(record: SessionRecord, parts: list[tuple[str, str]], timestamps: list[float] | None,
                 request=None) -> tuple[int, dict]:
    """Append one chunk; returns (tokens appended, stats)."""
    info = _model()
    if not parts:
        raise ApiError(400, "an append needs at least one image_url or video_url part", param="messages")
    async with record.lock:
        _check_open(record)
        try:
            chunk = await asyncio.to_thread(decode_chunk, parts, record, timestamps)
            text, media_kw = await asyncio.to_thread(_encode_chunk, info.model_type, chunk, record)
        except media.MediaError as e:
            raise ApiError(e.status, str(e), param=e.param or "messages") from None
        tag = StreamTurn(role="append")
        if record.cfg.policy == "hermes":
            block = guidance_block(record.cfg.prompts, record.last_qa, engine_client.tokenize)
            text += block.text
            tag = StreamTurn(role="append", guidance_ids=block.token_ids, guidance_segments=block.segment_lengths)
        await _run(record, text, tag, max_new_tokens=0, request=request, **media_kw)
        record.frames += len(chunk.frames)
        record.chunks += 1
        record.time_seconds = float(chunk.times[-1]) + 1.0 / _chunk_fps(record, chunk.times)
        record.touch()
        state = await engine_client.hermes_state()
        out = await stats(record, state)
        # Only appends move these counters, and they run one at a time: the last ones seen are "before".
        appended, compressed = out["tokens_seen"] - record.tokens_seen, out["compressions"] - record.compressions
        record.tokens_seen, record.compressions = out["tokens_seen"], out["compressions"]
    metrics.after_append(out, compressed, appended, _held_total(state))
    return appended, out


def _held_total(state: dict) -> int:
    return sum(int(v.get("memory_len", 0)) for k, v in state.get("streams", {}).items() if k in registry.sessions)


def _encode_chunk(model_type: str, chunk: Chunk, record: SessionRecord) -> tuple[str, dict]:
    """A chunk as the engine takes it: one mp4 for M-RoPE video models (its fps gives video time),
    one PNG per frame otherwise."""
    text = chunk_text(model_type, len(chunk.frames))
    if model_type.startswith("qwen2"):
        mp4 = media.encode_mp4(chunk.frames, fps=_chunk_fps(record, chunk.times))
        return text, {"video": [media.data_url("video/mp4", mp4)]}
    return text, {"images": [media.data_url("image/png", media.encode_png(f)) for f in chunk.frames]}


def _check_open(record: SessionRecord) -> None:
    if record.closed:
        raise ApiError(404, f"session {record.id!r} was closed", param="session.id", code="session_not_found")


async def _run(record: SessionRecord, text: str, tag: StreamTurn, *, max_new_tokens: int, request=None,
               **kw) -> dict:
    out = None
    try:
        async for out in engine_client.turn(record.id, text, tag, max_new_tokens=max_new_tokens,
                                            request=request, **kw):
            pass
    except EngineError as e:
        raise ApiError(e.status, str(e)) from None
    return out


@dataclass
class AskParams:
    question: str
    max_tokens: int
    sampling: dict


async def ask(record: SessionRecord, p: AskParams, request=None) -> tuple[str, dict, dict]:
    """Answer from the stream's memory; returns (answer, meta_info, stats)."""
    text, meta = "", {}
    async for piece, meta in ask_stream(record, p, request):
        text += piece
    return text, meta, await stats(record)


async def ask_stream(record: SessionRecord, p: AskParams, request=None) -> AsyncIterator[tuple[str, dict]]:
    """The answer as (new text, meta_info) pieces; the question and answer are not kept in the stream."""
    _model()
    async with record.lock:
        _check_open(record)
        t0 = time.perf_counter()
        first, answer = True, ""
        try:
            async for out in engine_client.turn(record.id, question_text(p.question), StreamTurn(role="ask"),
                                                max_new_tokens=p.max_tokens, sampling=p.sampling, stream=True,
                                                rid=f"hermes-ask-{uuid.uuid4().hex}", request=request):
                if first:
                    metrics.ask_ttft(time.perf_counter() - t0)
                    first = False
                answer += out["delta"]
                yield out["delta"], out.get("meta_info", {})
        except EngineError as e:
            raise ApiError(e.status, str(e)) from None
        record.last_qa = (p.question, answer)
        record.touch()


def sampling_params(body: dict) -> tuple[int, dict]:
    """max tokens and SGLang sampling params from an OpenAI chat body (the subset a question needs)."""
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 256
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, "max_tokens must be a positive integer", param="max_tokens")
    sampling = {}
    for key, name in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        if body.get(key) is not None:
            sampling[name] = body[key]
    if body.get("stop") is not None:
        sampling["stop"] = body["stop"]
    if "temperature" in sampling and (not isinstance(sampling["temperature"], (int, float)) or
                                      math.isnan(sampling["temperature"]) or sampling["temperature"] < 0):
        raise ApiError(400, "temperature must be a number >= 0", param="temperature")
    return max_tokens, sampling
