"""Which frames a stream already holds, by content, so that a client resending a window of frames
(stateless chat traffic: every call carries the last few frames again) appends each frame once.

A frame is known by the SHA-256 of its media bytes as fetched (the decoded bytes of a ``data:`` URL,
the body of an ``http(s)`` URL), not by its URL: a camera's snapshot URL names a new picture on every
call, and one picture may be sent as ``data:`` URLs spelled differently. Only the newest
``MAX_REMEMBERED`` hashes of a stream are kept, far more than any sliding window clients resend.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

MAX_REMEMBERED = 4096


def frame_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class FrameHashes:
    """The content hashes of a stream's newest appended frames (insertion-ordered, bounded)."""

    def __init__(self, limit: int = MAX_REMEMBERED):
        self.limit = limit
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def new_indices(self, payloads: list[bytes]) -> tuple[list[int], list[str]]:
        """Indices of the payloads not held yet (a frame repeated inside one call counts once), and
        the hashes to ``remember`` once they are appended."""
        keep, keys, fresh = [], [], set()
        for i, data in enumerate(payloads):
            key = frame_hash(data)
            if key in self._seen or key in fresh:
                continue
            fresh.add(key)
            keep.append(i)
            keys.append(key)
        return keep, keys

    def remember(self, keys: list[str]) -> None:
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)
