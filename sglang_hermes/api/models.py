"""Request bodies of the session API, validated at the edge (pydantic), and the shapes it returns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sglang_hermes.config import GuidanceMode, PolicyName


SESSION_ID = dict(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class SessionOptions(BaseModel):
    """A stream's options at open; unknown fields are refused so that a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    budget_tokens: int | None = Field(None, ge=1, description="video tokens kept per layer")
    policy: PolicyName | None = None
    reindex: Literal["lazy", "eager"] | None = None
    system_prompt: str | None = Field(None, max_length=20000)
    ttl_seconds: float | None = Field(None, gt=0, description="idle seconds before the stream is closed")
    fps: float | None = Field(None, gt=0, le=120, description="sampling rate of video_url parts; "
                              "also the frame spacing of image chunks sent without timestamps")
    chunk_frames: int | None = Field(None, ge=1, description="most frames one append may carry")
    recent_tokens: int | None = Field(None, ge=0, description="recent_hermes: newest tokens kept in every layer "
                                      "(default budget_tokens // 4)")
    sink_tokens: int | None = Field(None, ge=0, description="sink_window: first tokens of the stream it keeps "
                                    "(default 64)")
    guidance: GuidanceMode | None = Field(None, description="score the guidance prompts in separate passes "
                                          "(as the paper) or as one block inside the append's forward")
    restore_from: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                                     description="a snapshot in the server's snapshot directory (the id of the stream "
                                     "it was taken of): the stream opens with that memory, config and history")

    @model_validator(mode="after")
    def _restore_alone(self) -> "SessionCreate":
        if self.restore_from is not None:
            extra = sorted(k for k in self.model_fields_set if k not in ("id", "restore_from"))
            if extra:
                raise ValueError(f"a restored stream takes its config from the snapshot; drop {', '.join(extra)}")
        return self


class SessionCreate(SessionOptions):
    """``POST /v1/sessions``: the options and, optionally, the stream's id (the server picks one if absent)."""

    id: str | None = Field(None, **SESSION_ID)


LIFECYCLE_MODES = ("open", "stats", "close")


class SessionRef(BaseModel):
    """The ``session`` object of a chat completion: a turn (``append``, ``ask``) or, for clients behind a
    gateway that proxies only OpenAI routes, a ``/v1/sessions`` operation (``open``, ``stats``, ``close``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    mode: Literal["append", "ask", "open", "stats", "close"] = "ask"
    options: SessionOptions | None = Field(None, description="mode 'open' only: the body of POST /v1/sessions")

    @model_validator(mode="after")
    def _options_only_at_open(self) -> "SessionRef":
        if self.options is not None and self.mode != "open":
            raise ValueError("options are given when a stream is opened (mode 'open') only")
        return self

    def create(self) -> SessionCreate:
        """The ``POST /v1/sessions`` body this ``open`` stands for (the id checked as there)."""
        return SessionCreate.model_validate({"id": self.id, **(self.options.model_dump(exclude_none=True)
                                                                  if self.options else {})})
