"""A stream driven over SGLang's native endpoints (/open_session, /generate) with hermes tags.

The thin internal API tests use below the public OpenAI-shaped one: it builds each turn in the
stream layout (``sglang_hermes.layout``), tags it (``sglang_hermes.protocol``) and keeps the last
question and answer, which condition the next guidance prompts (as the HF reference streamer does).
A ``passes`` stream's append is followed by the score turns the stream asks for.
"""

from __future__ import annotations

import uuid

import httpx
import numpy as np

from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import (DEFAULT_SYSTEM, TIMESTAMPED_VIDEO_MODELS, chunk_fps, chunk_is_video, chunk_text,
                                  frame_times, frames_to_patches, guidance_block, guidance_parts, next_frame_time,
                                  prefix_text, question_text)
from sglang_hermes.policy import get_policy
from sglang_hermes.protocol import StreamTurn, VideoTimes
from sglang_hermes.media import data_url, encode_mp4, encode_png


def mp4_data_url(mp4: bytes) -> str:
    return data_url("video/mp4", mp4)


class StreamRequestError(RuntimeError):
    pass


class NativeStream:
    def __init__(self, base_url: str, model_dir, cfg: HermesConfig, *, session_id: str | None = None,
                 system: str = DEFAULT_SYSTEM, fps: float = 2.0):
        from transformers import AutoConfig, AutoTokenizer

        self.base_url = base_url
        self.cfg = cfg
        self.session_id = session_id or f"stream-{uuid.uuid4().hex[:12]}"
        self.system = system
        self.fps = fps
        config = AutoConfig.from_pretrained(model_dir)
        self.model_type = config.model_type
        self.temporal_patch = getattr(getattr(config, "vision_config", None), "temporal_patch_size", 1) or 1
        self.time_seconds = 0.0  # where the next frame sent without a time sits (as the session API does)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.last_qa: tuple[str, str] | None = None
        self.http = httpx.Client(base_url=base_url, timeout=300)

    # -- turns ---------------------------------------------------------------------------------

    def open(self) -> "NativeStream":
        r = self.http.post("/open_session", json={"capacity_of_str_len": 1 << 24,
                                                  "session_id": self.session_id, "streaming": True})
        r.raise_for_status()
        self._generate(prefix_text(self.system), StreamTurn(role="open", config=self.cfg), max_new_tokens=0)
        return self

    def append(self, frames: np.ndarray, *, times: list[float] | None = None, rid: str | None = None) -> dict:
        """One chunk of frames [n, H, W, 3] at stream ``times`` (default: following the last frame at
        the stream's fps): an mp4 video for the Qwen VLs, PNG images otherwise."""
        times = frame_times(self.time_seconds, len(frames), self.fps) if times is None else list(times)
        text, tag, media = self.build_append(frames, times)
        out = self._generate(text, tag, max_new_tokens=0, rid=rid, **media)
        self.time_seconds = next_frame_time(times, self.fps)
        if self.cfg.guidance == "passes":
            for name in self.awaiting_scores():
                self.score(name)
        return out

    def awaiting_scores(self) -> list[str]:
        """The guidance passes the stream's last append still needs (none while under budget)."""
        state = self.http.get("/server_info").json()["internal_states"][0]["hermes"]
        return state["streams"][self.session_id]["awaiting_scores"]

    def score(self, name: str, *, rid: str | None = None) -> dict:
        """One guidance pass: the prompt `name` alone after the pending chunk."""
        text = guidance_parts(self.cfg.prompts, self.last_qa)[name]
        return self._generate(text, StreamTurn(role="score", prompt=name), max_new_tokens=0, rid=rid)

    def build_append(self, frames: np.ndarray, times: list[float] | None = None) -> tuple[str, StreamTurn, dict]:
        """The append's text (chunk, + guidance block in mode ``block``), its tag and its encoded media
        (with the frames' stream times for a model that stamps them: Qwen3-VL)."""
        times = frame_times(self.time_seconds, len(frames), self.fps) if times is None else list(times)
        text, media = chunk_text(self.model_type, len(frames)), {}
        if chunk_is_video(self.model_type):
            if len(frames) % self.temporal_patch:  # whole temporal patches, the last frame repeated (as the API does)
                frames = np.concatenate([frames, np.repeat(frames[-1:], -len(frames) % self.temporal_patch, axis=0)])
            media["video_data"] = [mp4_data_url(encode_mp4(frames, fps=chunk_fps(times, self.fps)))]
            if self.model_type in TIMESTAMPED_VIDEO_MODELS:
                media["video_times"] = VideoTimes(videos=[frames_to_patches(times, self.temporal_patch)])
        else:
            media["image_data"] = [data_url("image/png", encode_png(f)) for f in frames]
        tag = StreamTurn(role="append")
        if get_policy(self.cfg).uses_attention and self.cfg.guidance == "block":
            block = guidance_block(self.cfg.prompts, self.last_qa, self._tokenize)
            text += block.text
            tag = StreamTurn(role="append", guidance_ids=block.token_ids, guidance_segments=block.segment_lengths)
        return text, tag, media

    def ask(self, question: str, max_new_tokens: int = 8, *, rid: str | None = None,
            ignore_eos: bool = False) -> tuple[str, list[float], dict]:
        out = self._generate(question_text(question), StreamTurn(role="ask"), max_new_tokens=max_new_tokens,
                             rid=rid, return_logprob=True, ignore_eos=ignore_eos)
        self.last_qa = (question, out["text"])
        return out["text"], [lp[0] for lp in out["meta_info"]["output_token_logprobs"]], out["meta_info"]

    def close(self) -> None:
        self.http.post("/close_session", json={"session_id": self.session_id})
        self.http.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate(self, text: str, tag: StreamTurn, *, max_new_tokens: int, rid: str | None = None,
                  return_logprob: bool = False, ignore_eos: bool = False, video_times: VideoTimes | None = None,
                  **media) -> dict:
        custom = {**tag.custom_params(), **(video_times.custom_params() if video_times is not None else {})}
        body = {"text": text, **media, "session_params": {"id": self.session_id},
                "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0, "ignore_eos": ignore_eos,
                                    "custom_params": custom},
                "return_logprob": return_logprob}
        if rid is not None:
            body["rid"] = rid
        r = self.http.post("/generate", json=body)
        out = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"error": r.text}
        finish = out.get("meta_info", {}).get("finish_reason") if isinstance(out, dict) else None
        if r.status_code != 200 or (isinstance(finish, dict) and finish.get("type") == "abort"):
            raise StreamRequestError(f"{r.status_code}: {out}")
        return out
