"""A minimal stream driver over SGLang's native endpoints (/open_session, /generate).

It fixes the stream token layout that makes a stream equal to one stateless request: the prefix is
the chat template up to the user turn, each chunk is one vision segment, a question closes the turn.
Tests use it to exercise the runtime below the public OpenAI-shaped API.
"""

from __future__ import annotations

import base64
import uuid

import httpx

VIDEO_SEGMENT = "<|vision_start|><|video_pad|><|vision_end|>"
DEFAULT_SYSTEM = "You are a helpful assistant."


def qwen_prefix(system: str = DEFAULT_SYSTEM) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"


def question_suffix(question: str) -> str:
    return f"{question}<|im_end|>\n<|im_start|>assistant\n"


def mp4_data_url(mp4: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(mp4).decode()


class NativeStream:
    def __init__(self, base_url: str, session_id: str | None = None, *, system: str = DEFAULT_SYSTEM):
        self.base_url = base_url
        self.session_id = session_id or f"stream-{uuid.uuid4().hex[:12]}"
        self.system = system
        self.chunks = 0
        self.http = httpx.Client(base_url=base_url, timeout=120)

    def open(self) -> "NativeStream":
        r = self.http.post("/open_session", json={"capacity_of_str_len": 1 << 20,
                                                  "session_id": self.session_id, "streaming": True})
        r.raise_for_status()
        return self

    def append_mp4(self, mp4: bytes) -> dict:
        text = (qwen_prefix(self.system) if self.chunks == 0 else "") + VIDEO_SEGMENT
        r = self.http.post("/generate", json={
            "text": text, "video_data": [mp4_data_url(mp4)],
            "sampling_params": {"max_new_tokens": 0, "temperature": 0},
            "session_params": {"id": self.session_id}})
        r.raise_for_status()
        self.chunks += 1
        return r.json()

    def ask(self, question: str, max_new_tokens: int = 8) -> tuple[str, list[float], dict]:
        r = self.http.post("/generate", json={
            "text": question_suffix(question),
            "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0},
            "session_params": {"id": self.session_id}, "return_logprob": True})
        r.raise_for_status()
        out = r.json()
        return out["text"], [lp[0] for lp in out["meta_info"]["output_token_logprobs"]], out["meta_info"]

    def close(self) -> None:
        self.http.post("/close_session", json={"session_id": self.session_id})
        self.http.close()
