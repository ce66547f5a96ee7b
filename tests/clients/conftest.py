"""Real H.264 files written with PyAV (independently of clients.frames), and the fake session server."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from tests.clients.fake_server import FakeHermes


def level(i: int) -> int:
    """Gray level of source frame i: far enough apart to identify a frame after lossy coding."""
    return (20 + 6 * i) % 250


def write_video(path, times: list[float], size: tuple[int, int] = (48, 64), rate: int | None = None) -> None:
    """Flat gray frames (frame i at gray ``level(i)``) presented at ``times`` seconds. With ``rate``
    the file is constant-rate (times must be k/rate), else the times are millisecond pts."""
    h, w = size
    with av.open(str(path), mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=rate or 1000)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        tb = Fraction(1, rate) if rate else Fraction(1, 1000)
        s.codec_context.time_base = tb
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(np.full((h, w, 3), level(i), np.uint8), format="rgb24")
            f.pts = round(t / tb)
            f.time_base = tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture
def video_10fps(tmp_path):
    """4 s at 10 fps: frames at 0.0, 0.1, ..., 3.9."""
    path = tmp_path / "ten.mp4"
    write_video(path, [k / 10 for k in range(40)], rate=10)
    return path


@pytest.fixture
def fake():
    return FakeHermes()
