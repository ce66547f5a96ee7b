"""Server events of ``/v1/realtime`` in OpenAI's Realtime shapes (text modality), in both dialects.

OpenAI's Realtime API exists in two spellings: the GA one (``response.output_text.delta``,
``conversation.item.added`` / ``.done``), which the ``openai`` package's ``client.realtime`` speaks,
and the beta one (``response.text.delta``, ``conversation.item.created``), which clients announcing
``OpenAI-Beta: realtime=v1`` (``client.beta.realtime``, older SDKs) expect. A connection answers in
the dialect its client announced; the payloads are the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sglang_hermes.api.errors import error_type


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class Dialect:
    beta: bool

    @property
    def text_delta(self) -> str:
        return "response.text.delta" if self.beta else "response.output_text.delta"

    @property
    def text_done(self) -> str:
        return "response.text.done" if self.beta else "response.output_text.done"

    @property
    def text_part(self) -> str:
        return "text" if self.beta else "output_text"

    def item_created(self, item: dict, previous: str | None, extra: dict) -> list[dict]:
        if self.beta:
            return [event("conversation.item.created", item=item, previous_item_id=previous, **extra)]
        return [event("conversation.item.added", item=item, previous_item_id=previous),
                event("conversation.item.done", item=item, previous_item_id=previous, **extra)]


def event(kind: str, **fields) -> dict:
    return {"type": kind, "event_id": new_id("event"), **fields}


def error(message: str, *, status: int = 400, code: str | None = None, param: str | None = None,
          client_event_id: str | None = None) -> dict:
    """OpenAI's ``error`` event; ``type`` names the class of error as the HTTP API's error JSON does."""
    return event("error", error={"type": error_type(status), "code": code, "message": message, "param": param,
                                 "event_id": client_event_id})


def user_item(item_id: str, content: list[dict]) -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": content}


def assistant_item(item_id: str, text: str, status: str, dialect: Dialect) -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": dialect.text_part, "text": text}]}


def response(resp_id: str, status: str, output: list[dict], usage: dict | None = None) -> dict:
    return {"id": resp_id, "object": "realtime.response", "status": status, "status_details": None,
            "output": output, "output_modalities": ["text"], "modalities": ["text"], "usage": usage}
