"""Frames from what a client sends (image and video URLs), and frames re-encoded for the engine.

Engine-free: the session API turns every append into one array of RGB frames [n, H, W, 3] with a
timestamp per frame, whatever the client sent (data URLs, http(s) URLs, an mp4 to sample), so that
limits, timing and the chunk's encoding are decided in one place. Every failure is a ``MediaError``
carrying the HTTP status the client should see; the server never reads its own files unless the
operator allowed it.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?)(?P<b64>;base64)?,(?P<data>.*)$",
                       re.DOTALL)


class MediaError(ValueError):
    """Media the server refuses; ``status`` is the HTTP status to answer with (400, 413, or 504 past a
    fetch deadline), ``code`` the error code when the status alone does not say it."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


def load_url(url: str, *, max_bytes: int, allow_local: bool = False) -> bytes:
    """The bytes behind a data URL, or a local file only if allowed. http(s) URLs are downloaded by
    ``sglang_hermes.media_fetch``, on the event loop and under its deadlines."""
    if not isinstance(url, str) or not url:
        raise MediaError("a media part needs a non-empty url")
    if url.startswith("data:"):
        return _data_url_bytes(url, max_bytes)
    parsed = urlparse(url)
    if parsed.scheme == "file" or (parsed.scheme == "" and url.startswith(("/", "."))) or len(parsed.scheme) == 1:
        if not allow_local:
            raise MediaError("local paths and file:// URLs are refused (the operator can allow them with "
                             "--hermes-allow-local-media)")
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else url)
        if not path.is_file():
            raise MediaError(f"no such file: {path}")
        if path.stat().st_size > max_bytes:
            raise MediaError(f"{path} is larger than the {max_bytes}-byte limit", status=413)
        return path.read_bytes()
    raise MediaError(f"unsupported URL scheme {parsed.scheme!r}: use a data: or http(s): URL")


def _data_url_bytes(url: str, max_bytes: int) -> bytes:
    m = _DATA_URL.match(url)
    if m is None:
        raise MediaError("malformed data URL (expected data:<mime>;base64,<data>)")
    payload = m.group("data")
    if len(payload) * 3 // 4 > max_bytes:
        raise MediaError(f"media larger than the {max_bytes}-byte limit", status=413)
    if not m.group("b64"):
        return unquote(payload).encode("latin-1")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("malformed base64 in data URL") from None


def decode_image(data: bytes) -> np.ndarray:
    """One encoded image -> [H, W, 3] uint8 RGB."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise MediaError("an image_url part is not a decodable image") from None


def decode_video(data: bytes, fps: float, *, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """An encoded video sampled at ``fps`` by presentation time -> frames [n, H, W, 3], seconds [n].

    Frame k is the first decoded frame at or after k/fps; a video with no frames is an error.
    """
    frames, times = [], []
    next_t = 0.0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("a video_url part holds no video stream")
            for frame in container.decode(video=0):
                t = float(frame.time) if frame.time is not None else len(times) / fps
                if t + 1e-6 < next_t:
                    continue
                if len(frames) == max_frames:
                    raise MediaError(f"the video gives more than {max_frames} frames at {fps:g} fps", status=413)
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(t)
                next_t = (len(times)) / fps
    except av.FFmpegError:
        raise MediaError("a video_url part is not a decodable video") from None
    if not frames:
        raise MediaError("a video_url part decodes to no frames")
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def same_size(frames: list[np.ndarray]) -> np.ndarray:
    """Stack frames, resizing each to the first frame's size (a chunk is encoded as one video),
    rounded down to even sides as H.264 with 4:2:0 chroma requires."""
    h, w = frames[0].shape[:2]
    h, w = max(2, h - h % 2), max(2, w - w % 2)
    out = [f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC))
           for f in frames]
    return np.stack(out)


def encode_mp4(frames: np.ndarray, fps: float = 2.0) -> bytes:
    """Frames [n, H, W, 3] uint8 -> H.264 mp4 (yuv420p, so H and W must be even), near-lossless."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def encode_png(frame: np.ndarray) -> bytes:
    """One frame as PNG bytes (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()
