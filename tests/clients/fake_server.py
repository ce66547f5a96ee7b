"""The session API's HTTP contract (docs/api.md), in memory behind ``httpx.MockTransport``.

Client tests need no hermes-serve: this fake decodes every frame it is sent (so a bad encoding fails
here as it would on the server), keeps the stats a real stream reports, and answers each question
with what the stream had seen, so tests can check which frames a question saw. It is deliberately
simple: one vision token count per frame, memory = min(tokens seen, budget).
"""

from __future__ import annotations

import base64
import io
import json
import re

import av
import httpx
from PIL import Image

from clients import HermesClient

MODEL = "fake-vlm"
SESSION_FIELDS = {"id", "budget_tokens", "policy", "reindex", "system_prompt", "ttl_seconds", "fps", "chunk_frames"}


def _error(status: int, message: str, code: str = "error", headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          json={"error": {"message": message, "type": "x", "param": None, "code": code}})


def _data(url: str) -> bytes:
    m = re.match(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", url, re.DOTALL)
    assert m, f"not a base64 data URL: {url[:40]}"
    return base64.b64decode(m.group(2), validate=True)


class FakeHermes:
    def __init__(self, tokens_per_frame: int = 4, budget: int = 4096, chunk_frames: int = 64):
        self.tokens_per_frame = tokens_per_frame
        self.defaults = {"budget_tokens": budget, "policy": "hermes", "reindex": "lazy", "fps": 1.0,
                         "chunk_frames": chunk_frames, "ttl_seconds": 3600.0, "system_prompt": "sys"}
        self.sessions: dict[str, dict] = {}
        self.requests: list[tuple[str, str, object]] = []   # (method, path, json body or None)
        self.appends: list[dict] = []                       # every accepted append, decoded
        self.asks: list[dict] = []
        self.fail: dict[str, tuple[int, str]] = {}          # "open" | "append" | "ask" -> (status, message)
        self.deleted: list[str] = []
        self.routing_keys: list[tuple[str, str | None]] = []  # (path, X-SMG-Routing-Key) of every request
        self._n = 0

    def client(self, **kw) -> HermesClient:
        return HermesClient("http://fake/v1", http_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
                            **kw)

    # -- routing -------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.requests.append((request.method, path, body))
        self.routing_keys.append((path, request.headers.get("x-smg-routing-key")))
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "fake"}]})
        if path == "/v1/sessions":
            return self.open(body or {}) if request.method == "POST" else \
                httpx.Response(200, json={"object": "list", "data": [self.stats(s) for s in self.sessions]})
        if path.startswith("/v1/sessions/"):
            sid = path.rsplit("/", 1)[1]
            if sid not in self.sessions:
                return _error(404, f"no session {sid!r} (unknown, closed or expired)", "session_not_found")
            if request.method == "DELETE":
                del self.sessions[sid]
                self.deleted.append(sid)
                return httpx.Response(200, json={"id": sid, "object": "hermes.session", "deleted": True})
            return httpx.Response(200, json=self.stats(sid))
        if path == "/v1/chat/completions":
            return self.chat(body)
        return _error(404, f"no route {path}")

    def open(self, body: dict) -> httpx.Response:
        if "open" in self.fail:
            status, message = self.fail["open"]
            return _error(status, message, headers={"Retry-After": "5"} if status == 429 else None)
        unknown = set(body) - SESSION_FIELDS
        if unknown:
            return _error(400, f"unknown fields {sorted(unknown)}")
        self._n += 1
        sid = body.get("id") or f"sess-{self._n}"
        if sid in self.sessions:
            return _error(409, f"session {sid!r} already exists", "session_exists")
        config = {**self.defaults, **{k: v for k, v in body.items() if k != "id"}}
        self.sessions[sid] = {"config": config, "frames": 0, "chunks": 0, "tokens_seen": 0, "compressions": 0,
                              "time_seconds": 0.0}
        return httpx.Response(201, json={"id": sid, "object": "hermes.session", "created": 1, "config": config})

    def stats(self, sid: str) -> dict:
        s = self.sessions[sid]
        held = min(s["tokens_seen"], s["config"]["budget_tokens"])
        return {"id": sid, "object": "hermes.session", "created": 1, "frames": s["frames"], "chunks": s["chunks"],
                "tokens_seen": s["tokens_seen"], "tokens_held": held, "budget_tokens": s["config"]["budget_tokens"],
                "compressions": s["compressions"], "last_compression_ms": 0.0, "kv_bytes": held * 16,
                "position": s["tokens_seen"], "time_seconds": s["time_seconds"], "config": s["config"]}

    # -- chat completions ----------------------------------------------------------------------
    def chat(self, body: dict) -> httpx.Response:
        ref = body.get("session") or {}
        sid = ref.get("id")
        if ref.get("mode") in ("open", "stats", "close"):
            return self.lifecycle(ref, body)
        if sid not in self.sessions:
            return _error(404, f"no session {sid!r} (unknown, closed or expired)", "session_not_found")
        assert body["model"] == MODEL
        content = body["messages"][0]["content"]
        if ref.get("mode") == "append":
            return self.append(sid, content, body.get("timestamps"))
        return self.ask(sid, content, body)

    def lifecycle(self, ref: dict, body: dict) -> httpx.Response:
        """``/v1/sessions`` operations carried by a chat completion (as sent through a gateway)."""
        assert body["messages"], "a gateway refuses an empty message list"
        sid, mode = ref["id"], ref["mode"]
        if mode == "open":
            r = self.open({"id": sid, **ref.get("options", {})})
        elif sid not in self.sessions:
            r = _error(404, f"no session {sid!r} (unknown, closed or expired)", "session_not_found")
        elif mode == "stats":
            r = httpx.Response(200, json=self.stats(sid))
        else:
            del self.sessions[sid]
            self.deleted.append(sid)
            r = httpx.Response(200, json={"id": sid, "object": "hermes.session", "deleted": True})
        if r.status_code >= 400:
            return r
        return httpx.Response(200, json={"id": "c", "object": "chat.completion", "created": 1, "model": MODEL,
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": ""}}],
                                         "session": r.json()})

    def append(self, sid: str, parts: list, timestamps) -> httpx.Response:
        if "append" in self.fail:
            return _error(*self.fail["append"])
        s = self.sessions[sid]
        frames, mimes, times = [], [], []
        for p in parts:
            url = p[p["type"]]["url"]
            if p["type"] == "image_url":
                mimes.append(url.split(";", 1)[0][5:])
                with Image.open(io.BytesIO(_data(url))) as im:
                    frames.append(im.convert("RGB"))
            else:
                mimes.append("video/mp4")
                with av.open(io.BytesIO(_data(url))) as c:
                    for f in c.decode(video=0):
                        frames.append(f.to_image())
                        times.append(float(f.time))
        if len(frames) > s["config"]["chunk_frames"]:
            return _error(413, "the append carries more frames than this stream's chunk_frames")
        if timestamps is not None:
            if len(timestamps) != len(frames):
                return _error(400, "timestamps has the wrong length")
            if s["frames"] and timestamps[0] < s["time_seconds"] - 1e-9:
                return _error(400, "timestamps before the stream's last frame")
            times = list(timestamps)
        elif not times:
            times = [s["time_seconds"] + k / s["config"]["fps"] for k in range(len(frames))]
        else:
            times = [s["time_seconds"] + t for t in times]
        tokens = len(frames) * self.tokens_per_frame
        budget = s["config"]["budget_tokens"]
        if s["tokens_seen"] + tokens > budget:
            s["compressions"] += 1
        s["tokens_seen"] += tokens
        s["frames"] += len(frames)
        s["chunks"] += 1
        step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 and times[-1] > times[0] else \
            1.0 / s["config"]["fps"]
        s["time_seconds"] = times[-1] + step
        self.appends.append({"session": sid, "frames": frames, "mimes": mimes, "times": times,
                             "timestamps": timestamps})
        return httpx.Response(200, json=self._completion("", tokens, 0, self.stats(sid)))

    def answer_text(self, sid: str) -> str:
        s = self.sessions[sid]
        return f"saw {s['frames']} frames up to {s['time_seconds']:g} s"

    def ask(self, sid: str, content, body: dict) -> httpx.Response:
        if "ask" in self.fail:
            return _error(*self.fail["ask"])
        question = content if isinstance(content, str) else "\n".join(p["text"] for p in content)
        text = self.answer_text(sid)
        self.asks.append({"session": sid, "question": question, "frames": self.sessions[sid]["frames"],
                          "body": body, "answer": text})
        stats = self.stats(sid)
        if not body.get("stream"):
            return httpx.Response(200, json=self._completion(text, 10, len(text.split()), stats))
        base = self._completion("", 0, 0, {})
        events = [self._chunk(base, {"role": "assistant", "content": ""}, None)]
        events += [self._chunk(base, {"content": w}, None) for w in re.findall(r"\S+\s*", text)]
        events.append({**self._chunk(base, {}, "stop"), "session": stats})
        raw = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    @staticmethod
    def _completion(text: str, prompt: int, completion: int, stats: dict) -> dict:
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion},
                "session": stats}

    @staticmethod
    def _chunk(base: dict, delta: dict, finish) -> dict:
        return {"id": base["id"], "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
