"""A stream's life in a shared engine: exactly prefix + M slots after every append, nothing left after
close, aborted turns leave no trace, bad turns are refused without harm, many streams at once give
each the answers it gets alone, and requests that are not streams behave as stock SGLang."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import VIDEO_SEGMENT, prefix_text, question_text
from sglang_hermes.protocol import StreamTurn
from sglang_hermes.testing.native_stream import NativeStream, StreamRequestError, mp4_data_url
from sglang_hermes.testing.video import encode_mp4, synthetic_frames

from .streams import (MAX_TOKENS, QUESTIONS, abort_once_running, chunks, close_logprobs, hermes_state,
                      reference_run, run_stream, stream_state, wait_available)

CFG = HermesConfig(budget_tokens=40)
TOL = 1e-4


def settled_available(server) -> int:
    """Frees done inside result processing land at the next scheduler step: read until stable."""
    last = hermes_state(server)["kv_available_slots"]
    while True:
        time.sleep(0.3)
        now = hermes_state(server)["kv_available_slots"]
        if now == last:
            return now
        last = now


def _abort_ask_mid_decode(server, stream: NativeStream) -> dict:
    """Start a long ask as an SSE stream, abort it once tokens flow, return its last message."""
    rid = f"ask-{uuid.uuid4().hex[:8]}"
    body = {"rid": rid, "text": question_text("Describe everything."), "stream": True,
            "session_params": {"id": stream.session_id},
            "sampling_params": {"max_new_tokens": 400, "ignore_eos": True, "temperature": 0,
                                "custom_params": StreamTurn(role="ask").custom_params()}}
    last = None
    with httpx.stream("POST", f"{server.base_url}/generate", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            last = line
            if "abort" not in line and not getattr(r, "_aborted", False):
                httpx.post(f"{server.base_url}/abort_request", json={"rid": rid}, timeout=30)
                r._aborted = True
    return {"last": last}


def _abort_append_mid_prefill(server, stream: NativeStream) -> None:
    """Abort a large append once the scheduler has started it: with chunked prefill it spans many
    forwards, and the abort lands between two of them."""
    rid = f"append-{uuid.uuid4().hex[:8]}"
    text, tag, media = stream.build_append(synthetic_frames(64, size=336, seed=99))  # ~0.5k tokens
    error = abort_once_running(server, stream.session_id, rid,
                               lambda: stream._generate(text, tag, max_new_tokens=0, rid=rid, **media))
    assert "abort" in error, error


def test_memory_is_exact_aborts_leave_no_trace_and_bad_turns_are_refused(qwen_chunked_server, qwen_dir):
    """On a server that prefills in chunks of 128 tokens, so an append spans several forwards and an
    abort can land in the middle of one (appends here are ~280 tokens, guidance block included)."""
    video = chunks("qwen", n=5, seed=7)
    control = reference_run("qwen", qwen_dir, CFG, video, ask_after=())
    chunked, _ = run_stream(qwen_chunked_server, qwen_dir, CFG, video, ask_after=())
    # Chunked prefill splits the guidance block across forwards: scores and kept tokens stay the same.
    assert [s["positions"] for s in chunked.states] == [s["positions"] for s in control.states]
    qwen_server = qwen_chunked_server

    free_before = wait_available(qwen_server, hermes_state(qwen_server)["kv_available_slots"])
    stream = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    held = []
    try:
        for i, chunk in enumerate(video[:3]):
            stream.append(chunk)
            s = stream_state(qwen_server, stream.session_id)
            assert s["memory_len"] == s["prefix_len"] + min(s["candidates"], CFG.budget_tokens)
            held.append(free_before - settled_available(qwen_server) - s["memory_len"])
        assert len(set(held)) == 1  # beyond the memory the stream holds nothing (guidance, evicted tokens: freed)

        # An ask aborted mid-decode, and an append aborted mid-flight.
        assert "abort" in _abort_ask_mid_decode(qwen_server, stream)["last"]
        _abort_append_mid_prefill(qwen_chunked_server, stream)

        # Bad turns are refused with a clear message, and change nothing.
        r = httpx.post(f"{qwen_server.base_url}/generate", timeout=60, json={
            "text": question_text("untagged?"), "session_params": {"id": stream.session_id},
            "sampling_params": {"max_new_tokens": 2}})
        assert r.status_code == 400 and "must carry its hermes tag" in r.text
        with pytest.raises(StreamRequestError, match="opening turn"):
            stream._generate(prefix_text(), StreamTurn(role="open", config=CFG), max_new_tokens=0)
        with pytest.raises(StreamRequestError, match="guidance"):
            stream._generate(VIDEO_SEGMENT, StreamTurn(role="append"), max_new_tokens=0,
                             video_data=[mp4_data_url(encode_mp4(video[3], fps=2.0))])

        for chunk in video[3:]:
            stream.append(chunk)
        answer = stream.ask(QUESTIONS[1], MAX_TOKENS)
        final = stream_state(qwen_server, stream.session_id)
        assert final["positions"] == control.states[-1]["positions"]
        assert answer[0] == control.answers[-1][0] and close_logprobs(answer[1], control.answers[-1][1], TOL)
        assert final["appends"] == 5
    finally:
        stream.close()
    assert wait_available(qwen_server, free_before) == free_before
    assert stream.session_id not in hermes_state(qwen_server)["streams"]
    assert "pool memory leak" not in qwen_server.log_text()


def test_concurrent_streams_answer_as_they_do_alone(qwen_server, qwen_dir):
    videos = [chunks("qwen", n=4, seed=20 + k) for k in range(4)]
    alone = [run_stream(qwen_server, qwen_dir, CFG, v, ask_after=(1,))[0] for v in videos]
    together: list = [None] * len(videos)

    def one(k):
        together[k] = run_stream(qwen_server, qwen_dir, CFG, videos[k], ask_after=(1,))[0]

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(videos))]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=600)
    for a, b in zip(alone, together):
        assert b is not None
        assert b.states[-1]["positions"] == a.states[-1]["positions"]
        for (ta, la), (tb, lb) in zip(a.answers, b.answers):
            assert ta == tb and close_logprobs(la, lb, TOL)
    assert len({a.answers[-1][0] for a in alone}) >= 2  # different videos, different answers


def test_requests_without_a_stream_behave_as_stock(qwen_server, qwen_client, qwen_dir):
    """A plain request gives the same result before and after streams ran, and an untagged streaming
    session keeps SGLang's own semantics (its turns accumulate; it is not a hermes stream)."""
    def plain():
        r = qwen_client.chat.completions.create(
            model="tiny", max_tokens=MAX_TOKENS, temperature=0, logprobs=True,
            messages=[{"role": "user", "content": "Describe the scene."}])
        return r.choices[0].message.content, [t.logprob for t in r.choices[0].logprobs.content]

    before = plain()
    run_stream(qwen_server, qwen_dir, CFG, chunks("qwen", n=3, seed=3), ask_after=())
    after = plain()
    assert before[0] == after[0] and close_logprobs(before[1], after[1], TOL)  # the radix cache may split the prefill

    sid = f"stock-{uuid.uuid4().hex[:8]}"
    http = httpx.Client(base_url=qwen_server.base_url, timeout=120)
    http.post("/open_session", json={"capacity_of_str_len": 1 << 20, "session_id": sid, "streaming": True})
    try:
        mp4 = encode_mp4(chunks("qwen", n=1, seed=4)[0], fps=2.0)
        first = http.post("/generate", json={"text": prefix_text() + VIDEO_SEGMENT, "video_data": [mp4_data_url(mp4)],
                                             "sampling_params": {"max_new_tokens": 0},
                                             "session_params": {"id": sid}}).json()
        ask = http.post("/generate", json={"text": question_text("What moves?"), "session_params": {"id": sid},
                                           "sampling_params": {"max_new_tokens": 3, "temperature": 0}}).json()
        assert ask["meta_info"]["cached_tokens"] == first["meta_info"]["prompt_tokens"]  # stock row reuse
        assert sid not in hermes_state(qwen_server)["streams"]
    finally:
        http.post("/close_session", json={"session_id": sid})
        http.close()
