"""The streams the HTTP process serves: their settings, clocks in seconds, last Q/A and turn order.

The scheduler owns a stream's KV and positions (``runtime``); this side owns what only the API knows:
the client's time line, the question that conditions the next guidance block, when the stream was
last used (TTL), and a FIFO lock so one stream's turns run one at a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sglang_hermes.api.frame_hashes import FrameHashes
from sglang_hermes.config import HermesConfig

MAX_LOGGED_CHUNKS = 4096


@dataclass
class SessionRecord:
    id: str
    cfg: HermesConfig
    system_prompt: str
    ttl_seconds: float
    fps: float
    reserve_tokens: int            # KV slots admission counted for this stream
    created: int = field(default_factory=lambda: int(time.time()))
    last_used: float = field(default_factory=time.monotonic)
    frames: int = 0
    chunks: int = 0
    time_seconds: float = 0.0      # the stream's time after its last frame
    tokens_seen: int = 0           # the scheduler's counters after the last append
    compressions: int = 0
    last_qa: tuple[str, str] | None = None
    closed: bool = False
    offloaded: bool = False        # idle: its memory is parked in host RAM, it holds no KV slot
    resume_ms: float = 0.0         # how long its last return from host RAM took
    turn_unsettled: bool = False   # the last turn ended without SGLang's last word on it (see service._stream_turn)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # FIFO: turns apply in arrival order
    frame_hashes: FrameHashes = field(default_factory=FrameHashes)  # content of the frames appended
    # The newest appends, by chunk number (the scheduler's): first frame, frames and tokens of each.
    chunk_log: dict[int, dict] = field(default_factory=dict)

    def log_chunk(self, frames: int) -> None:
        """Note the append about to become chunk number ``self.chunks``; only the newest are kept."""
        self.chunk_log[self.chunks] = {"first_frame": self.frames, "frames": frames, "tokens": 0}
        self.chunk_log.pop(self.chunks - MAX_LOGGED_CHUNKS, None)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def expired(self, now: float) -> bool:
        return now - self.last_used > self.ttl_seconds and not self.lock.locked()


class Registry:
    def __init__(self) -> None:
        self.sessions: dict[str, SessionRecord] = {}
        self.opening: dict[str, int] = {}  # streams being opened -> the KV slots promised to them

    def new_id(self) -> str:
        return f"sess-{uuid.uuid4().hex[:16]}"

    def reserved(self, where: Callable[[str], bool] = lambda sid: True) -> int:
        """KV slots promised to streams resident in the pool or being opened (or brought back), whose id
        satisfies ``where`` (one pool's); an offloaded stream holds none."""
        return (sum(s.reserve_tokens for s in self.sessions.values() if where(s.id) and not s.offloaded) +
                sum(r for sid, r in self.opening.items() if where(sid)))

    def expired(self) -> list[SessionRecord]:
        now = time.monotonic()
        return [s for s in self.sessions.values() if s.expired(now)]


registry = Registry()
