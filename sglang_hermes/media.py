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
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# decord, which SGLang decodes videos with, fails on some narrow H.264 frames (16, 24, 48, 72 px wide):
# chunks narrower than this are scaled up before they are encoded.
MIN_VIDEO_WIDTH = 80
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


LOCAL_MEDIA_REFUSED = ("local paths and file:// URLs are refused (the operator can allow them with "
                       "--hermes-allow-local-media)")


@dataclass(frozen=True)
class DecodeLimits:
    """How much decoding one append may produce, checked against headers before pixels are decoded.

    A frame wider or taller than ``max_side`` is refused; a larger frame than ``frame_pixels`` is scaled
    down while it is decoded (aspect kept: the models resize to less anyway); the frames of one chunk
    hold at most ``chunk_pixels`` pixels after that.
    """

    max_side: int = 4096
    frame_pixels: int = 1280 * 720
    chunk_pixels: int = 1 << 24


def is_local_reference(ref: str) -> bool:
    """Whether a media string would make SGLang's loaders (or ours) read a file of this server.

    ``file:`` URLs, paths (``/``, ``~``, ``.``, ``C:``) and any other string that is neither a data or
    http(s) URL nor plain base64 (SGLang opens a video or audio string naming an existing file).
    """
    if ref.startswith(("data:", "http://", "https://")):
        return False
    scheme = urlparse(ref[:64]).scheme
    if scheme == "file" or len(scheme) == 1 or ref.startswith(("/", "~", ".", "\\")):
        return True
    return not scheme and _BASE64.fullmatch(ref) is None


def load_url(url: str, *, max_bytes: int, allow_local: bool = False) -> bytes:
    """The bytes behind a data URL, or a local file only if allowed. http(s) URLs are downloaded by
    ``sglang_hermes.media_fetch``, on the event loop and under its deadlines."""
    if not isinstance(url, str) or not url:
        raise MediaError("a media part needs a non-empty url")
    if url.startswith("data:"):
        return _data_url_bytes(url, max_bytes)
    parsed = urlparse(url)
    if is_local_reference(url):
        if not allow_local:
            raise MediaError(LOCAL_MEDIA_REFUSED)
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


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """One encoded image -> [H, W, 3] uint8 RGB, its size checked from the header before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = _fitted(*im.size, limits)
            if (w, h) != im.size:
                im.draft("RGB", (w, h))  # JPEG decodes at a reduced scale directly
            rgb = im.convert("RGB")
            return np.asarray(rgb if rgb.size == (w, h) else rgb.resize((w, h), Image.BILINEAR))
    except Image.DecompressionBombError as e:
        raise MediaError(f"an image_url part is too large to decode: {e}", status=413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise MediaError("an image_url part is not a decodable image") from None


def check_inline(ref: str, limits: DecodeLimits) -> None:
    """Refuses (413) media carried inline (a data URL or plain base64) whose header declares a frame
    beyond ``limits.max_side``, before anyone decodes it; anything else is left to its route."""
    payload = ref.split(",", 1)[1] if ref.startswith("data:") and "," in ref else ref
    if ref.startswith(("http://", "https://")) or _BASE64.fullmatch(payload[:4096]) is None:
        return
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return
    try:
        with Image.open(io.BytesIO(data)) as im:
            _fitted(*im.size, limits)
            return
    except Image.DecompressionBombError as e:
        raise MediaError(f"an image is too large to decode: {e}", status=413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    try:
        with av.open(io.BytesIO(data)) as container:
            for stream in container.streams.video:
                _fitted(stream.codec_context.width or 1, stream.codec_context.height or 1, limits)
    except av.FFmpegError:
        pass


def _fitted(width: int, height: int, limits: DecodeLimits) -> tuple[int, int]:
    """The size a frame is decoded at: refused above ``max_side``, scaled down to ``frame_pixels``."""
    if width < 1 or height < 1:
        raise MediaError(f"a frame of {width}x{height} pixels has no content")
    if max(width, height) > limits.max_side:
        raise MediaError(f"a {width}x{height} frame is larger than the {limits.max_side}-pixel side limit "
                         f"(--hermes-max-frame-side)", status=413)
    scale = math.sqrt(limits.frame_pixels / (width * height))
    if scale >= 1:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def too_many_pixels(limits: DecodeLimits) -> MediaError:
    return MediaError(f"the append decodes to more than {limits.chunk_pixels} pixels (--hermes-max-chunk-pixels)",
                      status=413)


def decode_video(data: bytes, fps: float, *, max_frames: int, limits: DecodeLimits = DecodeLimits(),
                 max_pixels: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """An encoded video sampled at ``fps`` by presentation time -> frames ([H, W, 3] each), seconds [n].

    Frame k is the first decoded frame at or after k/fps; a video with no frames is an error. The
    stream's declared size is checked before the first frame is decoded, and every kept frame is
    scaled down while it is converted, so memory is bounded by what is kept (at most ``max_pixels``).
    """
    budget = limits.chunk_pixels if max_pixels is None else max_pixels
    frames, times = [], []
    next_t = 0.0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("a video_url part holds no video stream")
            stream = container.streams.video[0]
            _fitted(stream.codec_context.width or 1, stream.codec_context.height or 1, limits)
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(times) / fps
                if t + 1e-6 < next_t:
                    continue
                if len(frames) == max_frames:
                    raise MediaError(f"the video gives more than {max_frames} frames at {fps:g} fps", status=413)
                w, h = _fitted(frame.width, frame.height, limits)
                budget -= w * h
                if budget < 0:
                    raise too_many_pixels(limits)
                frames.append(frame.to_ndarray(format="rgb24", width=w, height=h))
                times.append(t)
                next_t = (len(times)) / fps
    except av.FFmpegError:
        raise MediaError("a video_url part is not a decodable video") from None
    if not frames:
        raise MediaError("a video_url part decodes to no frames")
    return frames, np.asarray(times, dtype=np.float64)


def same_size(frames: list[np.ndarray]) -> np.ndarray:
    """Stack frames, resizing each to the first frame's size (a chunk is encoded as one video),
    rounded down to even sides as H.264 with 4:2:0 chroma requires."""
    h, w = frames[0].shape[:2]
    h, w = max(2, h - h % 2), max(2, w - w % 2)
    out = [f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC))
           for f in frames]
    return np.stack(out)


def encode_mp4(frames: np.ndarray, fps: float = 2.0) -> bytes:
    """Frames [n, H, W, 3] uint8 -> H.264 mp4 (yuv420p, so H and W must be even), near-lossless;
    frames narrower than ``MIN_VIDEO_WIDTH`` are scaled up first, so that SGLang can decode the video."""
    if frames.shape[2] < MIN_VIDEO_WIDTH:
        h = max(2, round(frames.shape[1] * MIN_VIDEO_WIDTH / frames.shape[2]))
        size = (MIN_VIDEO_WIDTH, h - h % 2)
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) for f in frames])
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
