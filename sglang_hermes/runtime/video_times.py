"""Qwen3-VL's frame timestamps in stream time: the chunk's frames are stamped where they sit in the stream.

Qwen3-VL's processor writes "<t seconds>" before every temporal patch of a video, t being the mean
time of the patch's frames, computed from the video's metadata (``frames_indices / fps``). SGLang
decodes each video part on its own, so every chunk of a stream would say it starts at 0 s. A request
that carries frame times (``protocol.VideoTimes``, in ``custom_params``) gets them written instead:

- an AROUND hook on the Qwen-VL processor's request entry reads the times and keeps them for this
  request's coroutine (a context variable: concurrent requests in the tokenizer's event loop do not
  see each other's);
- an AROUND hook on SGLang's video sampler (``preprocess_video``, called once per video in order)
  rewrites the metadata it returns: ``frames_indices`` = the sampled frames' stream times in seconds
  and ``fps`` = 1, so the processor's own arithmetic gives ``t`` in stream seconds. The frames SGLang
  samples (it may drop some) keep their own times.

Only the model types in ``layout.TIMESTAMPED_VIDEO_MODELS`` are touched (for Qwen2.5-VL the metadata's
fps also sets the temporal M-RoPE axis). Runs in the HTTP process, where SGLang's tokenizer processes
media; an error (times for the wrong number of videos or frames) fails that request with its message.
"""

from __future__ import annotations

from contextvars import ContextVar

import numpy as np
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

from sglang_hermes.layout import TIMESTAMPED_VIDEO_MODELS
from sglang_hermes.protocol import VIDEO_TIMES_KEY, VideoTimes

_MODULE = "sglang.srt.multimodal.processors.qwen_vl"
REQUEST_TARGET = f"{_MODULE}.QwenVLImageProcessor._process_mm_data_uncached"
SAMPLER_TARGET = f"{_MODULE}.preprocess_video"

# The frame times of the videos of the request being processed in this coroutine, not yet consumed.
_pending: ContextVar[list[list[float]] | None] = ContextVar("hermes_video_times", default=None)


def _request_times(request_obj) -> VideoTimes | None:
    params = getattr(request_obj, "sampling_params", None)
    if isinstance(params, list):  # a batch request: frame times are a single-request feature
        params = params[0] if params else None
    return VideoTimes.from_custom_params((params or {}).get("custom_params"))


async def _around_request(original, processor, image_data, input_text, request_obj, *args, **kwargs):
    times = None
    if getattr(processor, "model_type", None) in TIMESTAMPED_VIDEO_MODELS:
        times = _request_times(request_obj)
    if times is None:
        return await original(processor, image_data, input_text, request_obj, *args, **kwargs)
    videos = getattr(request_obj, "video_data", None) or []
    if len(times.videos) != len(videos):
        raise ValueError(f"{VIDEO_TIMES_KEY} has frame times for {len(times.videos)} videos; the request has "
                         f"{len(videos)}")
    token = _pending.set([list(t) for t in times.videos])
    try:
        return await original(processor, image_data, input_text, request_obj, *args, **kwargs)
    finally:
        _pending.reset(token)


async def _around_sampler(original, video, *args, **kwargs):
    frames, metadata = await original(video, *args, **kwargs)
    pending = _pending.get()
    if not pending or metadata is None:
        return frames, metadata
    times = pending.pop(0)
    if len(times) != metadata["total_num_frames"]:
        raise ValueError(f"{VIDEO_TIMES_KEY}: a video has {metadata['total_num_frames']} frames and "
                         f"{len(times)} frame times")
    sampled = np.asarray(metadata["frames_indices"], dtype=np.int64)
    return frames, {**metadata, "frames_indices": np.asarray(times, dtype=np.float64)[sampled], "fps": 1.0}


def install() -> None:
    HookRegistry.register(REQUEST_TARGET, _around_request, HookType.AROUND)
    HookRegistry.register(SAMPLER_TARGET, _around_sampler, HookType.AROUND)
