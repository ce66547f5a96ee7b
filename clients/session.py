"""A small client for hermes-serve's streams, over the standard ``openai`` package.

Everything goes through one ``openai.OpenAI`` client: chat completions for appends and questions, and its
low-level ``get``/``post``/``delete`` for the three ``/v1/sessions`` routes, so errors are the usual
``openai`` exceptions (``NotFoundError``, ``BadRequestError``, ``ConflictError``, ``RateLimitError``,
``APIStatusError`` for 413) and auth, timeouts and proxies are configured in one place.

Behind a model gateway (``HermesClient(gateway=True)``; docs/install.md, "Several servers behind a
gateway") every request about a stream carries its id in the gateway's routing header, so all its turns
reach the server that holds it; the client picks the id of a new stream (the routing key must be known
before the stream exists), and opening, stats and closing ride on chat completions (the gateway proxies
OpenAI routes only, not ``/v1/sessions``).

Opening a stream and appending are not idempotent, so they are never retried automatically: a retried
append after a timeout could add the same frames twice. Reads, closes and questions keep the client's
retries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import openai

from clients import frames as fr

DEFAULT_BASE_URL = "http://127.0.0.1:30000/v1"
# The header SGLang's model gateway (smg) reads a request's routing key from; its consistent_hashing
# policy sends every request with the same key to the same server.
ROUTING_HEADER = "X-SMG-Routing-Key"


def routing_headers(stream_id: str) -> dict[str, str]:
    return {ROUTING_HEADER: stream_id}


def new_stream_id() -> str:
    return f"stream-{uuid.uuid4().hex}"


@dataclass
class AppendResult:
    """One append: vision tokens it added, the stream's stats after it, the round trip in ms, frames sent."""
    tokens: int
    stats: dict
    ms: float
    frames: int


@dataclass
class Answer:
    """One answer. ``ttft_s`` is the time to the first answer text (None when not streamed)."""
    text: str
    ttft_s: float | None
    total_s: float
    stats: dict
    finish_reason: str | None = None
    usage: dict | None = None


def error_message(e: Exception) -> str:
    """The server's own message for an ``openai`` error (its ``error.message``), else str(e)."""
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        status = getattr(e, "status_code", None)
        return f"{body['message']} (HTTP {status})" if status else body["message"]
    if isinstance(e, openai.APIConnectionError):
        request = getattr(e, "request", None)
        where = f" at {request.url}" if request is not None else ""
        return f"cannot reach the server{where}: {e.__cause__ or e}"
    return str(e)


def _extra(obj) -> dict:
    extra = getattr(obj, "model_extra", None) or {}
    return extra.get("session") or {}


class HermesClient:
    """Streams on one hermes-serve, or on several behind a model gateway (``gateway=True``).
    ``model=None`` uses the first model the server lists."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = "none", model: str | None = None,
                 *, timeout: float = 600.0, max_retries: int = 2, http_client: httpx.Client | None = None,
                 openai_client: openai.OpenAI | None = None, gateway: bool = False):
        self.gateway = gateway
        self._owns = openai_client is None
        self.openai = openai_client or openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout,
                                                     max_retries=max_retries, http_client=http_client)
        self._model = model
        self.openai_once = self.openai.with_options(max_retries=0)  # for requests that must not repeat

    @property
    def model(self) -> str:
        if self._model is None:
            models = self.openai.models.list().data
            if not models:
                raise RuntimeError("the server lists no model")
            self._model = models[0].id
        return self._model

    def open_stream(self, *, id: str | None = None, budget_tokens: int | None = None, policy: str | None = None,
                    reindex: str | None = None, system_prompt: str | None = None, ttl_seconds: float | None = None,
                    fps: float | None = None, chunk_frames: int | None = None, recent_tokens: int | None = None,
                    sink_tokens: int | None = None) -> Stream:
        """``POST /v1/sessions``; options left as None take the server's defaults. A full KV pool raises
        ``openai.RateLimitError`` at once (its ``response.headers["retry-after"]`` says when to retry)."""
        options = {k: v for k, v in dict(budget_tokens=budget_tokens, policy=policy, reindex=reindex,
                                         system_prompt=system_prompt, ttl_seconds=ttl_seconds, fps=fps,
                                         chunk_frames=chunk_frames, recent_tokens=recent_tokens,
                                         sink_tokens=sink_tokens).items() if v is not None}
        if self.gateway:
            out = self._lifecycle(id or new_stream_id(), "open", options=options, retries=False)
        else:
            body = {"id": id, **options} if id is not None else options
            out = self.openai_once.post("/sessions", body=body, cast_to=object,
                                        options={"headers": routing_headers(id)} if id is not None else {})
        return Stream(self, out["id"], config=out.get("config") or {}, created=out.get("created"))

    def stream(self, stream_id: str) -> Stream:
        """A handle on a stream opened elsewhere (nothing is sent)."""
        return Stream(self, stream_id)

    def stats(self, stream_id: str) -> dict:
        if self.gateway:
            return self._lifecycle(stream_id, "stats")
        return self.openai.get(_path(stream_id), cast_to=object, options={"headers": routing_headers(stream_id)})

    def list_streams(self) -> list[dict]:
        """The streams of this server; a gateway has no such list (ask each server behind it)."""
        if self.gateway:
            raise RuntimeError("a gateway does not list streams: GET /v1/sessions on each server behind it")
        return self.openai.get("/sessions", cast_to=object)["data"]

    def close_stream(self, stream_id: str) -> bool:
        """``DELETE``; False if the stream was already gone (closed or expired)."""
        try:
            if self.gateway:
                self._lifecycle(stream_id, "close")
            else:
                self.openai.delete(_path(stream_id), cast_to=object, options={"headers": routing_headers(stream_id)})
        except openai.NotFoundError:
            return False
        return True

    def _lifecycle(self, stream_id: str, mode: str, *, options: dict | None = None, retries: bool = True) -> dict:
        """A ``/v1/sessions`` operation as a chat completion (session mode open, stats or close), which a
        gateway routes by the stream's id; the answer's ``session`` field is what the route would answer.
        The message is a placeholder: gateways refuse an empty message list, the server ignores it."""
        session = {"id": stream_id, "mode": mode, **({"options": options} if options else {})}
        oc = self.openai if retries else self.openai_once
        resp = oc.chat.completions.create(model=self.model, messages=[{"role": "user", "content": mode}],
                                          extra_body={"session": session}, extra_headers=routing_headers(stream_id))
        return _extra(resp)

    def close(self) -> None:
        if self._owns:
            self.openai.close()

    def __enter__(self) -> HermesClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _path(stream_id: str) -> str:
    return "/sessions/" + quote(stream_id, safe="")


class Stream:
    """One open stream: append frames, ask questions; closes (``DELETE``) on leaving a ``with`` block."""

    def __init__(self, client: HermesClient, stream_id: str, *, config: dict | None = None,
                 created: int | None = None):
        self.client = client
        self.id = stream_id
        self.config = config or {}
        self.created = created
        self.closed = False

    def _chat(self, content, session: dict, *, retries: bool = True, extra: dict | None = None, **kw):
        oc = self.client.openai if retries else self.client.openai_once
        return oc.chat.completions.create(
            model=self.client.model, messages=[{"role": "user", "content": content}],
            extra_body={"session": {"id": self.id, **session}, **(extra or {})},
            extra_headers=routing_headers(self.id), **kw)

    def append(self, frames, timestamps=None, *, image_format: str = "jpeg",
               quality: int = fr.JPEG_QUALITY) -> AppendResult:
        """Append one chunk of frames: a uint8 array [n, H, W, 3], PIL images, encoded image bytes, image
        files (paths) or image URLs (one or a list). ``timestamps`` (seconds, one per frame, non-decreasing) place them on
        the stream's time line; without them they follow the last frame at the stream's fps."""
        items = fr.frame_list(frames)
        if not items:
            raise ValueError("append needs at least one frame")
        extra = {}
        if timestamps is not None:
            ts = [float(t) for t in timestamps]
            if len(ts) != len(items):
                raise ValueError(f"{len(ts)} timestamps for {len(items)} frames")
            extra["timestamps"] = ts
        parts = [fr.image_part(f, image_format, quality) for f in items]
        return self._append(parts, extra, len(items))

    def append_video(self, video, start: float | None = None, end: float | None = None) -> AppendResult:
        """Append the clip [start, end) seconds of a video file (path or bytes) as one ``video_url`` part.

        The clip is decoded here and re-encoded as H.264 mp4 keeping only the frames the server would
        sample at this stream's fps, so a long high-rate file does not cross the wire in full. The server
        places the clip right after the stream's last frame."""
        if not self.config:  # a handle from HermesClient.stream(): the fps is in the server's config
            self.config = self.stats().get("config") or {}
        clip = list(fr.sample_video(video, self.config.get("fps"), start, end))
        if not clip:
            raise fr.VideoError(f"no frames between {start} and {end} s")
        return self._append([fr.video_part(fr.encode_mp4(clip))], {}, len(clip))

    def _append(self, parts: list[dict], extra: dict, n: int) -> AppendResult:
        self.client.model  # resolved before the clock starts
        t0 = time.perf_counter()
        resp = self._chat(parts, {"mode": "append"}, retries=False, extra=extra)
        ms = (time.perf_counter() - t0) * 1000.0
        stats = _extra(resp)
        tokens = resp.usage.prompt_tokens if resp.usage is not None else 0
        return AppendResult(tokens=tokens, stats=stats, ms=ms, frames=n)

    def ask(self, question: str, *, max_tokens: int | None = None, temperature: float | None = None,
            stream: bool = True, **sampling) -> Answer:
        """Ask about what the stream has seen. ``stream=True`` (default) reads the answer as SSE to
        measure the time to first token; ``stream=False`` is one plain request (``ttft_s`` is None)."""
        if stream:
            pieces = self.ask_stream(question, max_tokens=max_tokens, temperature=temperature, **sampling)
            for _ in pieces:
                pass
            return pieces.answer
        self.client.model
        t0 = time.perf_counter()
        resp = self._chat(question, {}, **_sampling(max_tokens, temperature, sampling))
        choice = resp.choices[0]
        return Answer(text=choice.message.content or "", ttft_s=None, total_s=time.perf_counter() - t0,
                      stats=_extra(resp), finish_reason=choice.finish_reason,
                      usage=resp.usage.model_dump() if resp.usage is not None else None)

    def ask_stream(self, question: str, *, max_tokens: int | None = None, temperature: float | None = None,
                   **sampling) -> AnswerStream:
        """The answer as it is generated: iterate for text pieces; ``.answer`` is set once it ends."""
        self.client.model
        t0 = time.perf_counter()
        resp = self._chat(question, {}, stream=True, **_sampling(max_tokens, temperature, sampling))
        return AnswerStream(resp, t0, self)

    def stats(self) -> dict:
        return self.client.stats(self.id)

    def close(self) -> None:
        """Free the stream's KV on the server; closing twice, or after its TTL expired, is fine."""
        if not self.closed:
            self.closed = True
            self.client.close_stream(self.id)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # a failed close must not hide the error that ended the block
            self.close()
        except openai.APIError:
            pass

    def __repr__(self) -> str:
        return f"Stream(id={self.id!r}, closed={self.closed})"


def _sampling(max_tokens, temperature, sampling: dict) -> dict:
    """create() keywords: max_tokens and temperature as such, any other sampling field (top_p, top_k,
    stop, ...) through extra_body, so fields the openai signature lacks (top_k) pass too."""
    out: dict = {"extra": {k: v for k, v in sampling.items() if v is not None}}
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if temperature is not None:
        out["temperature"] = temperature
    return out


class AnswerStream:
    """Text pieces of a streamed answer; after the last one, ``answer`` holds the whole ``Answer``.

    ``ttft_s`` is the time to the first non-empty piece (to the first chunk if the answer is empty):
    the server sends nothing before the first token is ready, so either is the time to first token."""

    def __init__(self, resp: openai.Stream, t0: float, stream: Stream):
        self._resp, self._t0, self._stream = resp, t0, stream
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        if self.answer is not None:
            return
        text, first_chunk, ttft, stats, finish, usage = [], None, None, {}, None, None
        try:
            for chunk in self._resp:
                if first_chunk is None:
                    first_chunk = time.perf_counter() - self._t0
                stats = _extra(chunk) or stats
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    piece = choice.delta.content if choice.delta is not None else None
                    if piece:
                        if ttft is None:
                            ttft = time.perf_counter() - self._t0
                        text.append(piece)
                        yield piece
        finally:
            self._resp.close()
        total = time.perf_counter() - self._t0
        self.answer = Answer(text="".join(text), ttft_s=ttft if ttft is not None else (first_chunk or total),
                             total_s=total, stats=stats or self._stream.stats(), finish_reason=finish, usage=usage)

    def close(self) -> None:
        """Stop reading (the server stops generating when the connection closes)."""
        self._resp.close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
