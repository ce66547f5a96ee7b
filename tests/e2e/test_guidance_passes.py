"""A ``passes`` stream's append is all or nothing: its chunk waits in the row (not a candidate) while
one score turn per guidance prompt runs after it; the last score adds the chunk and compacts. A score
turn aborted mid-flight, or any other turn sent before the scores are complete, drops the chunk and
leaves the stream exactly as before the append (memory, clock, answers, KV slots). Score turns are
refused where they do not belong."""

from __future__ import annotations

import uuid

import pytest

from sglang_hermes.config import GuidancePrompts, HermesConfig
from sglang_hermes.protocol import StreamTurn
from sglang_hermes.testing.native_stream import NativeStream, StreamRequestError

from .streams import (MAX_TOKENS, QUESTIONS, abort_once_running, chunks, close_logprobs, hermes_state, run_stream, stream_state,
                      wait_available)

TOL = 1e-4
CFG = HermesConfig(budget_tokens=40, guidance="passes")
# A local prompt long enough (~800 tokens) that its score turn spans several forwards on a server
# prefilling 128 tokens at a time, so that an abort can land in the middle of it.
LONG_LOCAL = GuidancePrompts(local=" ".join(["Describe the current scene in detail."] * 100))
STATE_KEYS = ("memory_len", "candidates", "clock", "appends", "compressions", "tokens_seen", "positions")


def _unchanged(before: dict, after: dict) -> bool:
    return all(before[k] == after[k] for k in STATE_KEYS) and after["awaiting_scores"] == []


def _append_chunk_only(stream: NativeStream, chunk) -> None:
    text, tag, media = stream.build_append(chunk)
    stream._generate(text, tag, max_new_tokens=0, **media)


def _abort_score_mid_prefill(server, stream: NativeStream, name: str) -> str:
    rid = f"score-{uuid.uuid4().hex[:8]}"
    return abort_once_running(server, stream.session_id, rid, lambda: stream.score(name, rid=rid))


def test_an_unscored_chunk_is_dropped_by_the_next_turn_and_score_turns_are_checked(qwen_server, qwen_dir):
    video = chunks("qwen", n=3, seed=31)
    control, _ = run_stream(qwen_server, qwen_dir, CFG, video, ask_after=(1,))
    free_before = wait_available(qwen_server, hermes_state(qwen_server)["kv_available_slots"])
    stream = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    try:
        for chunk in video[:2]:
            stream.append(chunk)  # under budget: no score turns needed
            assert stream_state(qwen_server, stream.session_id)["awaiting_scores"] == []
        before = stream_state(qwen_server, stream.session_id)
        with pytest.raises(StreamRequestError, match="no append"):
            stream.score("local")

        _append_chunk_only(stream, video[2])  # over budget: the chunk waits for its three passes
        pending = stream_state(qwen_server, stream.session_id)
        assert pending["awaiting_scores"] == ["local", "global", "mixed"]
        assert pending["memory_len"] == before["memory_len"] and pending["clock"] > before["clock"]
        stream.score("global")
        assert stream_state(qwen_server, stream.session_id)["awaiting_scores"] == ["local", "mixed"]
        with pytest.raises(StreamRequestError, match="prefill-only"):
            stream._generate("Describe.\n", StreamTurn(role="score", prompt="local"), max_new_tokens=1)
        assert stream_state(qwen_server, stream.session_id)["awaiting_scores"] == ["local", "mixed"]

        # An ask before the scores are complete: the chunk is dropped, the answer is the one without it.
        text, logprobs, _ = stream.ask(QUESTIONS[0], MAX_TOKENS)
        assert (text, True) == (control.answers[0][0], close_logprobs(logprobs, control.answers[0][1], TOL))
        assert _unchanged(before, stream_state(qwen_server, stream.session_id))

        stream.append(video[2])
        after = stream_state(qwen_server, stream.session_id)
        assert after["positions"] == control.states[2]["positions"] and after["compressions"] == 1
    finally:
        stream.close()
    assert wait_available(qwen_server, free_before) == free_before
    assert "pool memory leak" not in qwen_server.log_text()


def test_an_aborted_score_turn_rolls_the_append_back(qwen_chunked_server, qwen_dir):
    server = qwen_chunked_server
    cfg = HermesConfig(budget_tokens=40, guidance="passes", prompts=LONG_LOCAL)
    video = chunks("qwen", n=3, seed=32)
    free_before = wait_available(server, hermes_state(server)["kv_available_slots"])
    stream = NativeStream(server.base_url, qwen_dir, cfg).open()
    try:
        for chunk in video[:2]:
            stream.append(chunk)
        before = stream_state(server, stream.session_id)
        _append_chunk_only(stream, video[2])
        assert "abort" in _abort_score_mid_prefill(server, stream, "local")
        assert _unchanged(before, stream_state(server, stream.session_id))
        assert stream.ask(QUESTIONS[0], 2)[0] is not None  # the stream goes on from where it was
        assert _unchanged(before, stream_state(server, stream.session_id))
    finally:
        stream.close()
    assert wait_available(server, free_before) == free_before
    assert "pool memory leak" not in server.log_text()


def test_score_turns_belong_to_passes_streams_only(qwen_server, qwen_dir):
    stream = NativeStream(qwen_server.base_url, qwen_dir, HermesConfig(budget_tokens=40, guidance="block")).open()
    try:
        stream.append(chunks("qwen", n=1, seed=33)[0])
        with pytest.raises(StreamRequestError, match="guidance mode 'passes'"):
            stream.score("local")
    finally:
        stream.close()
