"""Frames on the client: images to data URLs, and frames sampled from video files with PyAV.

The session API takes frames as ``image_url`` parts (one image each) or ``video_url`` parts (a clip the
server samples at the stream's fps). Everything here turns what a caller holds (numpy arrays, PIL images,
encoded bytes, video files) into those parts, so the session client stays a thin layer over ``openai``.
Sampling follows presentation timestamps, not frame counts, so variable-rate files keep their timing.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from sglang_hermes.media import data_url

JPEG_QUALITY = 90
# A frame this close before a slot boundary belongs to the next slot: containers with a millisecond
# clock (webm, mkv) store 1/3 s as 0.333, which must still open the slot starting at 1/3 s.
_SLOP = 1e-3
_MIMES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}


class VideoError(ValueError):
    """A video file that is missing, not a video, or not decodable."""


def encode_image(frame, image_format: str = "jpeg", quality: int = JPEG_QUALITY) -> tuple[str, bytes]:
    """One frame -> (mime, encoded bytes).

    ``frame`` is a uint8 array [H, W] or [H, W, 1|3|4], a PIL image, or already encoded image bytes
    (sent unchanged: re-encoding would only lose quality). JPEG by default because frames are large and
    the model sees them through a lossy vision encoder anyway; ``image_format="png"`` is lossless.
    """
    fmt = image_format.lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
        try:
            with Image.open(io.BytesIO(data)) as im:
                kind = im.format
        except (UnidentifiedImageError, OSError):
            raise ValueError("bytes given as a frame are not an encoded image PIL can read") from None
        return _MIMES.get(kind or "", "application/octet-stream"), data
    im = frame if isinstance(frame, Image.Image) else _array_image(frame)
    if im.mode != "RGB":
        im = im.convert("RGB")
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG")
        return "image/png", buf.getvalue()
    im.save(buf, format="JPEG", quality=int(quality))
    return "image/jpeg", buf.getvalue()


def _array_image(frame) -> Image.Image:
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise ValueError(f"frames as arrays must be uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"a frame array must be [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a))


def frame_list(frames) -> list:
    """Split what ``Stream.append`` accepts into single frames: an array [n, H, W, C] (or one [H, W, C]
    frame), one PIL image, encoded image, path or URL, or any iterable of those."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == 4:
            return list(frames)
        if frames.ndim in (2, 3):
            return [frames]
        raise ValueError(f"frames as an array must be [n, H, W, C] or one [H, W, C] frame, got {frames.shape}")
    if isinstance(frames, (Image.Image, bytes, bytearray, memoryview, str, os.PathLike)):
        return [frames]
    return list(frames)


def image_part(frame, image_format: str = "jpeg", quality: int = JPEG_QUALITY) -> dict:
    """An ``image_url`` content part; a string is taken as a URL already (data:, http(s):), a path
    (``os.PathLike``) as an image file to send as it is."""
    if isinstance(frame, str):
        url = frame
    elif isinstance(frame, os.PathLike):
        with open(frame, "rb") as f:
            url = data_url(*encode_image(f.read(), image_format, quality))
    else:
        url = data_url(*encode_image(frame, image_format, quality))
    return {"type": "image_url", "image_url": {"url": url}}


def video_part(mp4: bytes) -> dict:
    return {"type": "video_url", "video_url": {"url": data_url("video/mp4", mp4)}}


# -- video files -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoInfo:
    duration: float | None   # seconds, None when the container does not say
    fps: float | None        # the stream's average frame rate
    width: int
    height: int


def _open(source) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(source))
    else:
        if not os.path.isfile(source):
            raise VideoError(f"no such video file: {source}")
        src = os.fspath(source)
    try:
        container = av.open(src)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"cannot open {_name(source)} as a video: {e}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{_name(source)} has no video stream")
    return container


def _name(source) -> str:
    return "the video bytes" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def video_info(source) -> VideoInfo:
    """Duration, rate and size from the container's header (nothing is decoded)."""
    with _open(source) as c:
        v = c.streams.video[0]
        duration = None
        if v.duration is not None and v.time_base is not None:
            duration = float(v.duration * v.time_base)
        elif c.duration is not None:
            duration = c.duration / av.time_base
        rate = float(v.average_rate) if v.average_rate else None
        return VideoInfo(duration, rate, v.codec_context.width, v.codec_context.height)


def sample_video(source, fps: float | None, start: float | None = None,
                 end: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Decode ``source`` (a path or bytes) and yield (seconds, RGB frame [H, W, 3]) at ``fps``.

    Time from ``start`` is split into slots of 1/fps seconds and the first frame of each slot is kept,
    with its own timestamp, so a 10 fps file sampled at 2 fps gives the frames at 0.0, 0.5, 1.0, ... and a file sparser
    than ``fps`` gives every frame. ``fps=None`` keeps every frame. Only frames with start <= t < end are
    yielded; times are those of the file (a player's clock), never shifted.
    """
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    lo = 0.0 if start is None else float(start)
    hi = math.inf if end is None else float(end)
    container = _open(source)
    try:
        last_slot = None
        count = 0
        for frame in container.decode(video=0):
            t = float(frame.time) if frame.time is not None else (count / fps if fps else float(count))
            count += 1
            if t + _SLOP < lo:
                continue
            if t >= hi - _SLOP:
                break
            if fps is not None:
                slot = math.floor((t - lo + _SLOP) * fps)
                if last_slot is not None and slot <= last_slot:
                    continue
                last_slot = slot
            yield max(t, 0.0), frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise VideoError(f"cannot decode {_name(source)}: {e}") from None
    finally:
        container.close()


def encode_mp4(frames: Iterable[tuple[float, np.ndarray]]) -> bytes:
    """(seconds, RGB frame) pairs -> H.264 mp4 keeping those times (relative to the first frame), so a clip
    cut from the middle of a file plays from 0 with its original spacing. Sides are cropped to even
    sizes, as 4:2:0 chroma requires.

    Times are kept on a 1/90000 s clock (exact for the usual rates, 1/3 s included); the nominal rate is
    the clip's mean rate, since the muxer derives the last frame's duration from it and drops a frame
    whose duration it gets wrong."""
    clip = list(frames)
    if not clip:
        raise ValueError("no frames to encode")
    t0, t1 = clip[0][0], clip[-1][0]
    rate = Fraction((len(clip) - 1) / (t1 - t0)).limit_denominator(1000) if t1 > t0 else Fraction(1)
    h, w = clip[0][1].shape[0] - clip[0][1].shape[0] % 2, clip[0][1].shape[1] - clip[0][1].shape[1] % 2
    if h < 2 or w < 2:
        raise ValueError(f"frames of {clip[0][1].shape[1]}x{clip[0][1].shape[0]} are too small to encode")
    buf = io.BytesIO()
    tb = Fraction(1, 90000)
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = tb
        stream.options = {"crf": "18", "preset": "veryfast"}
        last_pts = -1
        for t, frame in clip:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
            vf.pts = max(round((t - t0) / tb), last_pts + 1)  # strictly increasing, as muxers require
            vf.time_base = tb
            last_pts = vf.pts
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
