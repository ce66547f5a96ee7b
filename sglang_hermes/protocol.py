"""What a stream request tells the scheduler, riding in ``sampling_params.custom_params``.

SGLang carries ``custom_params`` untouched from the HTTP request to the scheduler's ``Req`` (JSON
values only), so a stream needs no new IPC message: the turn's role, the stream's configuration on
its opening turn, the guidance block's token ids on appends of a ``block`` stream, and on a ``score``
turn (a ``passes`` stream's guidance pass) which prompt it carries. Validated on both ends: a tag also
arrives from any client through SGLang's stock routes (``/generate``), so every field is checked here,
before the scheduler's hooks use it (a refused tag fails its request with 400, never the scheduler).
A ``restore`` turn follows the opening turn of a stream restored from a snapshot (``runtime.stream_snapshot``):
it carries only filler ids for the memory's slots, and is accepted only when a snapshot is parked for the stream.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import GUIDANCE_ORDER, GuidancePrompt

CUSTOM_PARAMS_KEY = "hermes"
VIDEO_TIMES_KEY = "hermes_video_times"
MAX_GUIDANCE_TOKENS = 1 << 16  # far above any real guidance block; bounds what a forged tag can ask for
MAX_TAG_CHARS = 1 << 20
MAX_VIDEO_FRAMES = 1 << 16


class StreamTurn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["open", "append", "ask", "score", "restore"]
    config: HermesConfig | None = Field(None, description="the stream's configuration; on the opening turn only")
    guidance_ids: list[int] = Field(default_factory=list, max_length=MAX_GUIDANCE_TOKENS,
                                    description="the guidance block ending an append")
    guidance_segments: list[int] = Field(default_factory=list, description="its prompts' token counts")
    prompt: GuidancePrompt | None = Field(None, description="the guidance prompt a score turn carries")

    @model_validator(mode="after")
    def _check(self) -> "StreamTurn":
        if (self.role == "open") != (self.config is not None):
            raise ValueError("the opening turn, and only it, carries the stream's config")
        if self.guidance_segments and (len(self.guidance_segments) != len(GUIDANCE_ORDER) or
                                       min(self.guidance_segments) < 1):
            raise ValueError(f"guidance_segments must hold {len(GUIDANCE_ORDER)} positive token counts, one per "
                             f"prompt ({', '.join(GUIDANCE_ORDER)})")
        if min(self.guidance_ids, default=0) < 0:
            raise ValueError("guidance_ids must be token ids (>= 0)")
        if sum(self.guidance_segments) != len(self.guidance_ids):
            raise ValueError("guidance_segments must add up to the number of guidance_ids")
        if self.guidance_ids and self.role != "append":
            raise ValueError("only appends carry a guidance block")
        if (self.role == "score") != (self.prompt is not None):
            raise ValueError("a score turn, and only it, names its guidance prompt")
        return self

    def custom_params(self) -> dict[str, str]:
        return {CUSTOM_PARAMS_KEY: self.model_dump_json(by_alias=True, exclude_defaults=True)}

    @classmethod
    def from_custom_params(cls, custom_params) -> "StreamTurn | None":
        """None for a request that is not part of a stream; raises ValueError if the tag is malformed."""
        return _read_param(cls, custom_params, CUSTOM_PARAMS_KEY, "the hermes tag")


class VideoTimes(BaseModel):
    """The stream time of every frame of a request's videos, for models that write frame timestamps
    into the prompt (Qwen3-VL: "<t seconds>" before each temporal patch).

    Rides in ``custom_params[VIDEO_TIMES_KEY]`` of any request, stream turn or not: one list per video
    of the request, in order, one time (seconds) per frame of the encoded video. Without it SGLang
    stamps each video with its own time from 0; with it the model's processor stamps the frames at
    these times (``runtime.video_times``), so a chunk says where it sits in the stream.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    videos: list[list[float]] = Field(max_length=MAX_VIDEO_FRAMES)

    @model_validator(mode="after")
    def _check(self) -> "VideoTimes":
        for times in self.videos:
            if not times or len(times) > MAX_VIDEO_FRAMES:
                raise ValueError(f"every video needs between 1 and {MAX_VIDEO_FRAMES} frame times")
            if any(not (0.0 <= t < 1e9) for t in times) or any(b < a for a, b in zip(times, times[1:])):
                raise ValueError("frame times must be finite seconds >= 0, non-decreasing within a video")
        return self

    def custom_params(self) -> dict[str, str]:
        return {VIDEO_TIMES_KEY: self.model_dump_json()}

    @classmethod
    def from_custom_params(cls, custom_params) -> "VideoTimes | None":
        """None when the request carries no frame times; raises ValueError if they are malformed."""
        return _read_param(cls, custom_params, VIDEO_TIMES_KEY, VIDEO_TIMES_KEY)


def _read_param(model: type[BaseModel], custom_params, key: str, what: str):
    """One hermes field of SGLang's ``custom_params``: None when absent; a bounded JSON string validated
    by ``model`` otherwise (a client may put anything there, through any route)."""
    if not isinstance(custom_params, dict) or key not in custom_params:
        return None
    raw = custom_params[key]
    if not isinstance(raw, (str, bytes)) or len(raw) > MAX_TAG_CHARS:
        raise ValueError(f"{what} must be a JSON string of at most {MAX_TAG_CHARS} characters")
    return model.model_validate_json(raw)
