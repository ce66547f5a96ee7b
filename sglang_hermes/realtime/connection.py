"""``/v1/realtime``: a stream driven over one WebSocket with OpenAI's Realtime events (text modality).

Realtime clients hold a session open and push content as it comes: OpenAI's Realtime API carries
images as ``input_image`` parts of ``conversation.item.create`` (it has no video track) and streams
text answers as deltas. Here a connection drives one hermes stream:

- ``session.update``: the stream's settings (``budget_tokens``, ``policy``, ``fps``, ``chunk_frames``,
  ``recent_tokens``, ``sink_tokens``, ``guidance``, ``ttl_seconds``; ``instructions`` is its system prompt)
  before the stream opens, and the answers' ``max_output_tokens`` / ``temperature`` at any time;
- ``conversation.item.create`` with a user message: its ``input_image`` parts are appended to the stream
  as one chunk (opening the stream on first use, admission as usual); its ``input_text`` parts are the
  question the next response answers;
- ``response.create``: answers that question from the stream's memory, streamed as text deltas.

The stream is named by the ``stream`` query parameter (a new random id without it) and outlives the
socket until its TTL: a client that reconnects with the same id resumes it. Everything runs in the
order the client sent it, one event at a time, through the same service calls as the HTTP API, so the
same limits hold (frames per append, media bytes, decode bounds, admission); a message is at most
``max_message_bytes``. Refusals are ``error`` events and the connection stays open.
"""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from sglang_hermes.api import service
from sglang_hermes.api.edge import MAX_DEPTH, check_body, depth_exceeds
from sglang_hermes.api.errors import ApiError
from sglang_hermes.api.models import SessionCreate
from sglang_hermes.api.registry import registry
from sglang_hermes.api.sampling import ask_sampling
from sglang_hermes.api.settings import settings
from sglang_hermes.api.stateless import STREAM_ID
from sglang_hermes.realtime import auth, events
from sglang_hermes.realtime.events import Dialect
from sglang_hermes.runtime import engine_client
from sglang_hermes.runtime.engine_client import EngineError

logger = logging.getLogger("sglang_hermes")
STREAM_FIELDS = ("budget_tokens", "policy", "fps", "chunk_frames", "recent_tokens", "sink_tokens", "guidance",
                 "ttl_seconds")
MAX_QUESTION_CHARS = 20000
IGNORED_SESSION_FIELDS = ("type", "model", "output_modalities", "modalities", "tool_choice", "tools", "audio",
                          "voice", "turn_detection", "input_audio_format", "output_audio_format", "tracing",
                          "include", "prompt", "truncation", "input_audio_transcription", "input_audio_noise_reduction",
                          "speed", "object", "id")


def max_message_bytes() -> int:
    """One message may carry one append's media (base64: 4/3 of it) and some JSON around it."""
    return settings().max_media_bytes * 4 // 3 + (64 << 10)


class Connection:
    def __init__(self, ws: WebSocket, stream_id: str, dialect: Dialect):
        self.ws = ws
        self.sid = stream_id
        self.dialect = dialect
        self.spec: dict = {}                 # stream settings for when the stream opens
        self.max_tokens: int | str = "inf"
        self.temperature: float | None = None
        self.question: list[str] = []        # input_text since the last response
        self.last_item: str | None = None

    # -- plumbing ------------------------------------------------------------------------------

    async def send(self, *out: dict) -> None:
        for e in out:
            await self.ws.send_text(json.dumps(e))

    def record(self):
        record = registry.sessions.get(self.sid)
        return record if record is not None and not record.closed else None

    async def open_record(self):
        record = self.record()
        if record is not None:
            return record
        from sglang_hermes.api import routes  # the TTL reaper lives with the routes

        try:
            spec = SessionCreate.model_validate({"id": self.sid, **self.spec})
        except ValidationError as e:
            raise ApiError.invalid(e, "invalid session: ", param="session") from None
        record = await service.open_session(spec)
        routes.start_reaper()
        return record

    def session_view(self) -> dict:
        record = self.record()
        view = {"id": self.sid, "object": "realtime.session", "type": "realtime",
                "model": engine_client.model_info().name, "output_modalities": ["text"], "modalities": ["text"],
                "max_output_tokens": self.max_tokens, "temperature": self.temperature,
                "resumable": True}
        if record is not None:
            cfg = service.config_view(record)
            view.update({k: cfg[k] for k in STREAM_FIELDS}, instructions=record.system_prompt, stream_open=True)
        else:
            view.update(self.spec, instructions=self.spec.get("system_prompt"), stream_open=False)
            view.pop("system_prompt", None)
        return view

    # -- events --------------------------------------------------------------------------------

    async def serve(self) -> None:
        await self.send(events.event("session.created", session=self.session_view()))
        limit = max_message_bytes()
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            if len(raw) > limit:
                await self.send(events.error(f"the message is larger than {limit} bytes (one append's media, "
                                             f"--hermes-max-media-bytes, as base64)", status=413,
                                             code="message_too_large"))
                continue
            await self.handle(raw)

    async def handle(self, raw: str) -> None:
        event_id = None
        try:
            try:
                e = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "the message is not valid JSON", code="invalid_json") from None
            except RecursionError:
                raise ApiError(400, f"the message nests deeper than {MAX_DEPTH} levels") from None
            if depth_exceeds(e, MAX_DEPTH):
                raise ApiError(400, f"the message nests deeper than {MAX_DEPTH} levels")
            if not isinstance(e, dict) or not isinstance(e.get("type"), str):
                raise ApiError(400, "an event is a JSON object with a string 'type'", param="type")
            event_id = e.get("event_id") if isinstance(e.get("event_id"), str) else None
            check_body(e)  # what the HTTP edge checks on every body: local media, inline media headers, depth
            handler = HANDLERS.get(e["type"])
            if handler is None:
                raise ApiError(400, f"event type {e['type']!r} is not supported here (supported: "
                                    f"{', '.join(HANDLERS)})", param="type", code="unsupported_event")
            await handler(self, e)
        except ApiError as err:
            await self.send(events.error(err.message, status=err.status, code=err.code, param=err.param,
                                         client_event_id=event_id))
        except EngineError as err:
            await self.send(events.error(str(err), status=err.status, client_event_id=event_id))
        except WebSocketDisconnect:
            raise
        except Exception as err:  # a bug of ours answers this event and keeps the connection
            logger.exception("hermes realtime: unexpected error")
            await self.send(events.error(f"internal error in the hermes realtime API: {type(err).__name__}: {err}",
                                         status=500, client_event_id=event_id))

    async def session_update(self, e: dict) -> None:
        s = e.get("session")
        if not isinstance(s, dict):
            raise ApiError(400, "session.update needs a 'session' object", param="session")
        unknown = [k for k in s if k not in (*STREAM_FIELDS, "instructions", "max_output_tokens",
                                             "max_response_output_tokens", "temperature", *IGNORED_SESSION_FIELDS)]
        if unknown:
            raise ApiError(400, f"unknown session field {unknown[0]!r}", param=f"session.{unknown[0]}")
        stream = {k: s[k] for k in STREAM_FIELDS if k in s}
        if "instructions" in s:
            stream["system_prompt"] = s["instructions"]
        record = self.record()
        if record is not None and stream:
            raise ApiError(400, f"the stream {self.sid!r} is open: its settings ({', '.join(stream)}) were fixed "
                                f"when it opened; only max_output_tokens and temperature can change",
                           param=f"session.{next(iter(stream))}")
        candidate = {**self.spec, **stream}
        try:
            SessionCreate.model_validate({"id": self.sid, **candidate})
        except ValidationError as err:
            raise ApiError.invalid(err, "invalid session: ", param="session") from None
        max_tokens = s.get("max_output_tokens", s.get("max_response_output_tokens", self.max_tokens))
        temperature = s.get("temperature", self.temperature)
        ask_sampling({"max_tokens": None if max_tokens == "inf" else max_tokens, "temperature": temperature},
                     engine_client.model_info().vocab_size)
        self.spec, self.max_tokens, self.temperature = candidate, max_tokens, temperature
        await self.send(events.event("session.updated", session=self.session_view()))

    async def item_create(self, e: dict) -> None:
        item = e.get("item")
        if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") != "user":
            raise ApiError(400, "only user message items are supported (role 'user', type 'message')",
                           param="item")
        content = item.get("content")
        if not isinstance(content, list) or not content or not all(isinstance(p, dict) for p in content):
            raise ApiError(400, "item.content must be a non-empty list of parts", param="item.content")
        frames, texts = [], []
        for i, part in enumerate(content):
            kind = part.get("type")
            if kind == "input_image":
                url = part.get("image_url")
                if not isinstance(url, str) or not url:
                    raise ApiError(400, "an input_image part needs an image_url (a data: URL)",
                                   param=f"item.content[{i}].image_url")
                frames.append(("image_url", url))
            elif kind == "input_text":
                if not isinstance(part.get("text"), str):
                    raise ApiError(400, "an input_text part needs text", param=f"item.content[{i}].text")
                texts.append(part["text"])
            else:
                raise ApiError(400, f"content part type {kind!r} is not supported (input_image, input_text)",
                               param=f"item.content[{i}].type")
        if sum(map(len, texts)) + sum(map(len, self.question)) > MAX_QUESTION_CHARS:
            raise ApiError(400, f"the question is longer than {MAX_QUESTION_CHARS} characters",
                           param="item.content")
        extra = {}
        if frames:
            record = await self.open_record()
            _, stats = await service.append(record, frames, None, None)
            extra["hermes"] = stats
        self.question.extend(t for t in texts if t.strip())
        item_id = item.get("id") if isinstance(item.get("id"), str) else events.new_id("item")
        await self.send(*self.dialect.item_created(events.user_item(item_id, content_summary(content)),
                                                   self.last_item, extra))
        self.last_item = item_id

    async def response_create(self, e: dict) -> None:
        options = e.get("response") or {}
        if not isinstance(options, dict):
            raise ApiError(400, "response must be an object", param="response")
        if not self.question:
            raise ApiError(400, "there is no question to answer: send a conversation.item.create with an "
                                "input_text part first", param="response")
        max_tokens = options.get("max_output_tokens", options.get("max_response_output_tokens", self.max_tokens))
        temperature = options.get("temperature", self.temperature)
        max_new, sampling = ask_sampling({"max_tokens": None if max_tokens == "inf" else max_tokens,
                                          "temperature": temperature}, engine_client.model_info().vocab_size)
        record = await self.open_record()
        params = service.AskParams("\n".join(self.question), max_new, sampling)
        resp_id, item_id, d = events.new_id("resp"), events.new_id("item"), self.dialect
        where = {"response_id": resp_id, "item_id": item_id, "output_index": 0}
        text, meta, started = "", {}, False
        pieces = service.ask_stream(record, params, None)
        try:
            async for piece, meta in pieces:
                if not started:  # the first piece: SGLang accepted the question
                    started = True
                    self.question = []
                    await self.send(
                        events.event("response.created", response=events.response(resp_id, "in_progress", [])),
                        events.event("response.output_item.added", response_id=resp_id, output_index=0,
                                     item=events.assistant_item(item_id, "", "in_progress", d) | {"content": []}),
                        events.event("response.content_part.added", **where, content_index=0,
                                     part={"type": d.text_part, "text": ""}))
                if piece:
                    text += piece
                    await self.send(events.event(d.text_delta, **where, content_index=0, delta=piece))
        finally:
            await pieces.aclose()
        item = events.assistant_item(item_id, text, "completed", d)
        p, c = int(meta.get("prompt_tokens", 0)), int(meta.get("completion_tokens", 0))
        usage = {"total_tokens": p + c, "input_tokens": p, "output_tokens": c}
        stats = await service.stats(record)
        await self.send(
            events.event(d.text_done, **where, content_index=0, text=text),
            events.event("response.content_part.done", **where, content_index=0,
                         part={"type": d.text_part, "text": text}),
            events.event("response.output_item.done", response_id=resp_id, output_index=0, item=item),
            events.event("response.done", response=events.response(resp_id, "completed", [item], usage),
                         hermes=stats))
        self.last_item = item_id


def content_summary(content: list[dict]) -> list[dict]:
    """The item as echoed back: images are not sent back to the client (they may be megabytes)."""
    return [{"type": "input_image", "image_url": None} if p.get("type") == "input_image" else
            {"type": "input_text", "text": p.get("text")} for p in content]


HANDLERS = {"session.update": Connection.session_update,
            "conversation.item.create": Connection.item_create,
            "response.create": Connection.response_create}


fallback = None  # SGLang's own /v1/realtime (transcription), for models without vision input


async def realtime(ws: WebSocket) -> None:
    """The WebSocket route: checks the key and the origin before the handshake completes."""
    refusal = auth.refusal(ws)
    if refusal is not None:
        await ws.close(code=1008, reason=refusal)
        return
    try:
        multimodal = engine_client.model_info().multimodal
    except EngineError:
        await ws.close(code=1013, reason="the engine is not ready yet")
        return
    if not multimodal and fallback is not None:
        return await fallback(ws)
    sid = ws.query_params.get("stream") or registry.new_id().replace("sess-", "rt-")
    if not STREAM_ID.match(sid):
        await ws.close(code=1008, reason="stream must be a stream id: letters, digits and ._:-")
        return
    await ws.accept(subprotocol=auth.subprotocol(ws))
    conn = Connection(ws, sid, Dialect(beta="realtime=v1" in ws.headers.get("openai-beta", "")))
    try:
        await conn.serve()
    except WebSocketDisconnect:
        pass
    except Exception as e:  # the socket broke while we sent: the stream is as its last finished turn left it
        logger.info("hermes realtime: stream %s: connection lost (%s: %s)", sid, type(e).__name__, e)
    logger.info("hermes realtime: connection to stream %s closed; the stream stays until its TTL", sid)
