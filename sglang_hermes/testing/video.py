"""Synthetic video: moving coloured shapes, as raw frames and as a real H.264 mp4 encoded with PyAV.

Content changes every frame (shapes move, the background hue drifts) so vision tokens of different
frames differ, which keeps attention scores and compression decisions non-degenerate.
"""

from __future__ import annotations

import io

import av
import numpy as np

from sglang_hermes.media import encode_mp4, encode_png  # noqa: F401  (re-exported for tests)


def synthetic_frames(n: int, size: int | tuple[int, int] = 112, *, seed: int = 0) -> np.ndarray:
    """n frames [n, H, W, 3] uint8 of a circle and a square moving on a drifting background."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    colours = rng.integers(40, 255, size=(2, 3))
    phase = rng.uniform(0, 2 * np.pi, size=4)
    for i in range(n):
        t = i / 8.0
        bg = (np.array([np.sin(t + phase[0]), np.sin(t + phase[1]), np.cos(t)]) * 60 + 90).astype(np.uint8)
        frame = np.broadcast_to(bg, (h, w, 3)).copy()
        cy, cx = h / 2 + h / 3 * np.sin(t + phase[2]), w / 2 + w / 3 * np.cos(t + phase[3])
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(h, w) / 6) ** 2] = colours[0]
        sy, sx = int((h - h // 5) * ((i * 7) % n) / max(n, 1)), int((w - w // 5) * ((i * 3) % n) / max(n, 1))
        frame[sy : sy + h // 5, sx : sx + w // 5] = colours[1]
        frames[i] = frame
    return frames


def decode_frames(data: bytes) -> np.ndarray:
    """Decode every frame of an encoded video to [n, H, W, 3] uint8 RGB."""
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
