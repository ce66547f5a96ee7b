"""Server-wide settings of the session API: stream defaults and the limits that protect the server.

``hermes-serve --hermes-*`` flags reach the HTTP process as JSON in one environment variable, so the
plugin needs no change to SGLang's argument parser.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from sglang_hermes.config import GuidanceMode, HermesConfig
from sglang_hermes.media import DecodeLimits

DEFAULTS_ENV = "SGLANG_HERMES_DEFAULTS"


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    budget_tokens: int = Field(HermesConfig().budget_tokens, ge=1)
    policy: str = "hermes"
    reindex: str = "lazy"
    guidance: GuidanceMode = HermesConfig().guidance
    ttl_seconds: float = Field(3600.0, gt=0, description="idle time after which a stream is closed")
    fps: float = Field(1.0, gt=0, description="frames per second sampled from video_url parts")
    chunk_frames: int = Field(64, ge=1, description="most frames one append may carry")
    recent_tokens: int | None = Field(None, ge=0, description="recent_hermes window (default budget // 4)")
    sink_tokens: int | None = Field(None, ge=0, description="sink_window: first tokens kept (default 64)")
    max_chunk_tokens: int = Field(4096, ge=1, description="most vision tokens one append may add")
    max_media_bytes: int = Field(64 << 20, ge=1, description="largest media payload of one append")
    ask_reserve_tokens: int = Field(512, ge=0, description="KV slots admission keeps for a stream's ask")
    allow_local_media: bool = False
    snapshot_dir: str | None = Field(None, description="where stream snapshots are written and read from")
    offload_after: float | None = Field(None, gt=0, description="idle seconds after which a stream's memory "
                                        "leaves the KV pool for host RAM (never by default)")
    max_frame_side: int = Field(4096, ge=1, description="widest/tallest frame an append may decode")
    max_frame_pixels: int = Field(1280 * 720, ge=1, description="larger frames are scaled down while decoded")
    max_chunk_pixels: int = Field(1 << 24, ge=1, description="most pixels one append decodes to")

    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(self.max_frame_side, self.max_frame_pixels, self.max_chunk_pixels)
    # Media of appends (sglang_hermes.media_fetch): one client's slow URLs must not delay other streams.
    fetch_deadline: float = Field(30.0, gt=0, description="seconds one http(s) media URL may take, in all")
    append_deadline: float = Field(60.0, gt=0, description="seconds all media of one append may take to arrive")
    fetch_concurrency: int = Field(16, ge=1, description="http(s) media downloads at once on the server")
    stream_fetch_concurrency: int = Field(4, ge=1, description="http(s) media downloads at once for one stream")
    media_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1,
                               description="threads that decode and re-encode media (not the default pool)")


@lru_cache(maxsize=1)
def settings() -> ServerSettings:
    return ServerSettings.model_validate(json.loads(os.environ.get(DEFAULTS_ENV) or "{}"))
