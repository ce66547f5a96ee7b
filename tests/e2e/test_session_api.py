"""The public session API end to end, with the real ``openai`` client against a real hermes-serve.

The oracle for "the API builds the right turns" is the native stream (``testing.native_stream``),
which drives SGLang's own endpoints with the stream layout and is itself checked against the HF
reference streamer: same frames, same config, same questions -> same kept positions and answers.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from sglang_hermes.config import HermesConfig
from sglang_hermes.media import encode_png
from sglang_hermes.testing.native_stream import NativeStream

from .api_helpers import (STATS_KEYS, append, ask, close_session, get_stats, image_parts, open_session,
                          streamed_text, video_part)
from .streams import MAX_TOKENS, QUESTIONS, chunks, hermes_state, stream_state, wait_available

BUDGET = 40


def _client(server):
    import openai

    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.mark.parametrize("arch, guidance", [("qwen", "passes"), ("gemma", "block")])
def test_api_stream_equals_the_native_stream(arch, guidance, request, qwen_dir, gemma_dir):
    """Appends as image_url frames and asks through the API keep the same tokens and give the same
    answers as the native stream; the last Q/A conditions the next guidance prompts on both (each
    guidance mode on one architecture, to keep the suite lean)."""
    server = request.getfixturevalue(f"{arch}_server")
    model_dir = qwen_dir if arch == "qwen" else gemma_dir
    client = _client(server)
    video = chunks(arch, n=4, seed=11)
    free_before = wait_available(server, hermes_state(server)["kv_available_slots"])

    native = NativeStream(server.base_url, model_dir, HermesConfig(budget_tokens=BUDGET, guidance=guidance),
                          fps=2.0).open()
    sid = open_session(server, budget_tokens=BUDGET, fps=2.0, chunk_frames=2, guidance=guidance)["id"]
    try:
        seen = 0
        for k, chunk in enumerate(video):
            native.append(chunk)
            r = append(client, sid, image_parts(chunk))
            stats = r.model_extra["session"]
            assert r.choices[0].message.content == "" and set(stats) == STATS_KEYS
            assert r.usage.prompt_tokens == stats["tokens_seen"] - seen > 0
            seen = stats["tokens_seen"]
            assert (stats["frames"], stats["chunks"]) == (2 * (k + 1), k + 1)
            assert stats["time_seconds"] == pytest.approx(len(chunk) * (k + 1) / 2.0)
            assert stats["tokens_held"] == stream_state(server, sid)["memory_len"]
            if k == 1:
                want = native.ask(QUESTIONS[0], MAX_TOKENS)[0]
                got = ask(client, sid, QUESTIONS[0], MAX_TOKENS)
                assert got.choices[0].message.content == want
                assert got.model_extra["session"]["tokens_held"] == stats["tokens_held"]  # the ask left nothing
        mine, theirs = stream_state(server, sid), stream_state(server, native.session_id)
        assert mine["positions"] == theirs["positions"] and mine["clock"] == theirs["clock"]
        assert mine["compressions"] > 0 and stats["tokens_held"] == mine["prefix_len"] + BUDGET
        want = native.ask(QUESTIONS[1], MAX_TOKENS)[0]
        assert ask(client, sid, QUESTIONS[1], MAX_TOKENS).choices[0].message.content == want
        # The same question streamed (SSE) gives the same answer: asks leave the memory as it was.
        assert streamed_text(ask(client, sid, QUESTIONS[1], MAX_TOKENS, stream=True)) == want
    finally:
        native.close()
        close_session(server, sid)
    assert httpx.get(f"{server.base_url}/v1/sessions/{sid}").status_code == 404
    assert wait_available(server, free_before) == free_before


def test_session_routes_video_parts_and_metrics(qwen_server, qwen_client):
    video = chunks("qwen", n=2, frames=4, seed=12)
    created = open_session(qwen_server, id="cam-1", budget_tokens=64, policy="fifo", reindex="eager",
                           system_prompt="You watch a camera.", ttl_seconds=600, fps=4.0, guidance="block")
    assert (created["id"], created["object"]) == ("cam-1", "hermes.session")
    assert created["config"] | {"policy": "fifo", "reindex": "eager", "budget_tokens": 64, "fps": 4.0,
                                "system_prompt": "You watch a camera.", "guidance": "block"} == created["config"]
    try:
        r = append(qwen_client, "cam-1", [video_part(video[0], fps=4.0)])  # decoded, sampled at 4 fps: 4 frames
        assert r.model_extra["session"]["frames"] == 4
        r = append(qwen_client, "cam-1", image_parts(video[1]), timestamps=[10.0, 10.5, 11.0, 11.5])
        stats = r.model_extra["session"]
        assert stats["frames"] == 8 and stats["time_seconds"] == pytest.approx(12.0)
        assert stats["kv_bytes"] > 0 and stats["kv_bytes"] % stats["tokens_held"] == 0
        with _http_frames(chunks("qwen", n=1, seed=15)[0]) as urls:  # frames fetched from an http server
            r = append(qwen_client, "cam-1", [{"type": "image_url", "image_url": {"url": u}} for u in urls])
        assert r.model_extra["session"]["frames"] == 10 and r.usage.prompt_tokens > 0
        listed = httpx.get(f"{qwen_server.base_url}/v1/sessions").json()
        assert listed["object"] == "list" and [s["id"] for s in listed["data"]] == ["cam-1"]
        assert get_stats(qwen_server, "cam-1") == listed["data"][0]
        text = ask(qwen_client, "cam-1", QUESTIONS[0], MAX_TOKENS).choices[0].message.content
        assert text
    finally:
        deleted = httpx.delete(f"{qwen_server.base_url}/v1/sessions/cam-1").json()
    assert deleted == {"id": "cam-1", "object": "hermes.session", "deleted": True}
    metrics = httpx.get(f"{qwen_server.base_url}/metrics").text
    for name in ("hermes_streams_open", "hermes_tokens_held", "hermes_compressions_total",
                 "hermes_compression_seconds_count", "hermes_ask_ttft_seconds_count"):
        assert name in metrics
    ttft_count = [line for line in metrics.splitlines() if line.startswith("hermes_ask_ttft_seconds_count")]
    assert float(ttft_count[0].split()[-1]) >= 1


@contextlib.contextmanager
def _http_frames(frames):
    """Serve frames as PNG files over http on localhost; yields their URLs."""
    with tempfile.TemporaryDirectory() as tmp:
        for k, f in enumerate(frames):
            (Path(tmp) / f"{k}.png").write_bytes(encode_png(f))
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp)
        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as srv:
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            try:
                yield [f"http://127.0.0.1:{srv.server_port}/{k}.png" for k in range(len(frames))]
            finally:
                srv.shutdown()


def test_idle_streams_expire_after_their_ttl_and_free_their_kv(qwen_server, qwen_client):
    free_before = wait_available(qwen_server, hermes_state(qwen_server)["kv_available_slots"])
    sid = open_session(qwen_server, budget_tokens=64, ttl_seconds=2)["id"]
    append(qwen_client, sid, image_parts(chunks("qwen", n=1, seed=13)[0]))
    assert hermes_state(qwen_server)["kv_available_slots"] < free_before
    deadline = time.monotonic() + 30
    while httpx.get(f"{qwen_server.base_url}/v1/sessions/{sid}").status_code != 404:
        assert time.monotonic() < deadline, "the stream did not expire"
        time.sleep(0.5)
    assert sid not in hermes_state(qwen_server)["streams"]
    assert wait_available(qwen_server, free_before) == free_before


def test_admission_refuses_with_429_at_capacity_then_admits_after_a_close(qwen_server):
    total = hermes_state(qwen_server)["kv_total_slots"]
    big = open_session(qwen_server, budget_tokens=total - 4000)  # its worst case takes most of the pool
    try:
        r = httpx.post(f"{qwen_server.base_url}/v1/sessions", json={"budget_tokens": 2048})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.json()["error"]["code"] == "kv_pool_full"
        assert [s["id"] for s in httpx.get(f"{qwen_server.base_url}/v1/sessions").json()["data"]] == [big["id"]]
    finally:
        close_session(qwen_server, big["id"])
    small = open_session(qwen_server, budget_tokens=2048)
    close_session(qwen_server, small["id"])


def test_concurrent_appends_to_one_stream_apply_in_arrival_order(qwen_server, qwen_client):
    video = chunks("qwen", n=4, seed=14)
    control = open_session(qwen_server, budget_tokens=BUDGET, fps=2.0)["id"]
    sid = open_session(qwen_server, budget_tokens=BUDGET, fps=2.0)["id"]
    try:
        for chunk in video:
            append(qwen_client, control, image_parts(chunk))
        results: list = [None] * len(video)

        def send(k):
            results[k] = append(qwen_client, sid, image_parts(video[k])).model_extra["session"]

        threads = [threading.Thread(target=send, args=(k,)) for k in range(len(video))]
        for t in threads:  # all in flight at once, arriving in order
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join(300)
        assert [r["chunks"] for r in results] == [1, 2, 3, 4]
        # ...and concurrent asks on the stream are safe: each gets the answer a lone ask gets.
        alone = ask(qwen_client, control, QUESTIONS[0], MAX_TOKENS).choices[0].message.content
        answers: list = [None] * 3

        def question(k):
            answers[k] = ask(qwen_client, sid, QUESTIONS[0], MAX_TOKENS).choices[0].message.content

        asks = [threading.Thread(target=question, args=(k,)) for k in range(3)]
        for t in asks:
            t.start()
        for t in asks:
            t.join(300)
        assert answers == [alone] * 3
        assert stream_state(qwen_server, sid)["positions"] == stream_state(qwen_server, control)["positions"]
    finally:
        close_session(qwen_server, sid)
        close_session(qwen_server, control)


def test_qwen3_api_stream_stamps_chunks_in_stream_time(qwen3_server, qwen3_dir):
    """Qwen3-VL through the API: chunks with client timestamps, without them (they follow the last frame
    at the stream's fps) and of an odd frame count (its last frame and time repeated to a whole patch)
    keep the same tokens and positions and give the same answers as a native stream told the same frame
    times; the native stream's stamping is itself checked against HF (test_serving_qwen3.py,
    test_stream_equivalence.py)."""
    client = _client(qwen3_server)
    frames = chunks("qwen3", n=1, frames=7, seed=21)[0]
    video = [(frames[:2], [12.0, 13.0]), (frames[2:5], None), (frames[5:], [20.0, 20.5])]
    native = NativeStream(qwen3_server.base_url, qwen3_dir, HermesConfig(budget_tokens=BUDGET), fps=2.0).open()
    sid = open_session(qwen3_server, budget_tokens=BUDGET, fps=2.0, chunk_frames=4)["id"]
    try:
        for chunk, times in video:
            native.append(chunk, times=times)
            stats = append(client, sid, image_parts(chunk), **({"timestamps": times} if times else {})).model_extra[
                "session"]
            mine, theirs = stream_state(qwen3_server, sid), stream_state(qwen3_server, native.session_id)
            assert mine["positions"] == theirs["positions"] and mine["clock"] == theirs["clock"]
            assert stats["time_seconds"] == pytest.approx(native.time_seconds)
        assert stats["time_seconds"] == pytest.approx(21.0) and mine["compressions"] > 0
        want = native.ask(QUESTIONS[1], MAX_TOKENS)[0]
        assert ask(client, sid, QUESTIONS[1], MAX_TOKENS).choices[0].message.content == want
    finally:
        native.close()
        close_session(qwen3_server, sid)
