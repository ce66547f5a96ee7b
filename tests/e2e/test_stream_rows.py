"""A stream's row holds its memory only: questions and answers are dropped after each ask, exactly
freeing their KV slots, and without compression the stream answers like one stateless request."""

from __future__ import annotations

import time

import httpx

from sglang_hermes.testing.native_stream import NativeStream, mp4_data_url
from sglang_hermes.testing.video import encode_mp4, synthetic_frames

MAX_TOKENS = 6


def hermes_state(server) -> dict:
    return httpx.get(f"{server.base_url}/server_info").json()["internal_states"][0]["hermes"]


def wait_available(server, expected: int, timeout: float = 10.0) -> int:
    """Frees done inside result processing land at the next scheduler step: poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        got = hermes_state(server)["kv_available_slots"]
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def chunks_of(seed: int, n_chunks: int = 4, frames_per_chunk: int = 4):
    frames = synthetic_frames(n_chunks * frames_per_chunk, seed=seed)
    return [encode_mp4(frames[i:i + frames_per_chunk], fps=2.0)
            for i in range(0, len(frames), frames_per_chunk)]


def stateless(client, chunks, question):
    r = client.chat.completions.create(
        model="tiny", max_tokens=MAX_TOKENS, temperature=0, logprobs=True,
        messages=[{"role": "user", "content": [
            *[{"type": "video_url", "video_url": {"url": mp4_data_url(c)}} for c in chunks],
            {"type": "text", "text": question}]}])
    return r.choices[0].message.content, [t.logprob for t in r.choices[0].logprobs.content]


def close_logprobs(a, b, tol=1e-4):
    return len(a) == len(b) > 0 and max(abs(x - y) for x, y in zip(a, b)) < tol


def test_asks_leave_the_stream_as_it_was_and_answers_equal_stateless(qwen_server, qwen_client):
    chunks = chunks_of(seed=11)
    free_before = wait_available(qwen_server, hermes_state(qwen_server)["kv_available_slots"])
    stream = NativeStream(qwen_server.base_url).open()
    try:
        stream.append_mp4(chunks[0])
        stream.append_mp4(chunks[1])
        memory_two = hermes_state(qwen_server)["streams"][stream.session_id]["memory_len"]
        mid_text, mid_lp, mid_meta = stream.ask("What happened so far?", MAX_TOKENS)
        assert mid_meta["prompt_tokens"] > memory_two  # the question was prefilled on top of memory
        assert wait_available(qwen_server, free_before - memory_two) == free_before - memory_two

        stream.append_mp4(chunks[2])
        stream.append_mp4(chunks[3])
        memory = hermes_state(qwen_server)["streams"][stream.session_id]["memory_len"]
        first = stream.ask("Which shape moves?", MAX_TOKENS)
        second = stream.ask("Which shape moves?", MAX_TOKENS)
        # The mid-stream ask left no trace, and neither did the first of the two equal asks.
        want_text, want_lp = stateless(qwen_client, chunks, "Which shape moves?")
        assert first[0] == second[0] == want_text
        assert close_logprobs(first[1], want_lp) and close_logprobs(second[1], want_lp)
        assert first[2]["cached_tokens"] == memory  # answered from the row, nothing re-encoded
        assert wait_available(qwen_server, free_before - memory) == free_before - memory
    finally:
        stream.close()
    assert wait_available(qwen_server, free_before) == free_before
    assert stream.session_id not in hermes_state(qwen_server)["streams"]  # its record went with it
    assert "pool memory leak" not in qwen_server.log_text()
