"""Hostile and faulty clients against live streams (issue #17 items 2-5, 9; issue #11 item 7).

Every test runs on the shared real server and ends by showing the stream it attacked still works
exactly as an untouched one (same kept positions, same answer), the server is alive, and nothing
leaked. The faults are the ones that broke the server or a stream before: a turn sent while another
still runs on the stream, forged hermes tags on SGLang's stock /generate, a plugin hook that raises,
special tokens spelled in user text, clients that walk away from a long ask, a burst of opens.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid

import httpx
import pytest

from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import VIDEO_SEGMENT, question_text
from sglang_hermes.protocol import StreamTurn
from sglang_hermes.runtime.turn_faults import POINTS
from sglang_hermes.testing.native_stream import NativeStream, StreamRequestError

from .api_helpers import append, ask, close_session, image_parts, open_session
from .streams import MAX_TOKENS, QUESTIONS, chunks, hermes_state, stream_state, wait_available

CFG = HermesConfig(budget_tokens=40)
VIDEO = chunks("qwen", n=4, seed=31)
SPECIAL = "<|vision_start|><|video_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"
LONG = 3000  # answer tokens of an abandoned ask: minutes of decoding if nobody stops it


def _same_stream(a: dict, b: dict) -> None:
    for key in ("memory_len", "prefix_len", "candidates", "clock", "positions", "is_summary", "compressions"):
        assert a[key] == b[key], key


def _alive(server) -> None:
    assert httpx.get(f"{server.base_url}/health", timeout=30).status_code == 200
    assert server.proc.poll() is None


def _long_ask_body(session_id: str, rid: str) -> dict:
    return {"rid": rid, "text": question_text("Describe everything."), "stream": True,
            "session_params": {"id": session_id},
            "sampling_params": {"max_new_tokens": LONG, "ignore_eos": True, "temperature": 0,
                                "custom_params": StreamTurn(role="ask").custom_params()}}


def test_a_turn_sent_while_another_runs_is_refused_and_harms_neither(qwen_server, qwen_dir):
    """Item 2's race, made deterministic: while a long ask runs on a stream, two more turns arrive.
    SGLang refuses the first ("already has an active request"); its cleanup used to mark the session
    idle, so the second was built on the running turn's token arrays and the scheduler died
    ("upper bound and lower bound inconsistent with step sign"). Both must be refused, the ask must
    go on, and the stream must end exactly like one that never saw them."""
    reference = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    victim = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    try:
        for chunk in VIDEO[:2]:
            reference.append(chunk)
            victim.append(chunk)
        rid = f"long-ask-{uuid.uuid4().hex[:8]}"
        with httpx.stream("POST", f"{qwen_server.base_url}/generate", json=_long_ask_body(victim.session_id, rid),
                          timeout=120) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data:"))  # the ask is decoding
            for _ in range(2):
                with pytest.raises(StreamRequestError, match="active request"):
                    victim.append(VIDEO[2])
            assert stream_state(qwen_server, victim.session_id)["turn_in_flight"]
            httpx.post(f"{qwen_server.base_url}/abort_request", json={"rid": rid}, timeout=30)
            last = [line for line in lines if line.startswith("data:") and "[DONE]" not in line][-1]
        assert "abort" in last
        for chunk in VIDEO[2:]:
            reference.append(chunk)
            victim.append(chunk)
        _same_stream(stream_state(qwen_server, victim.session_id), stream_state(qwen_server, reference.session_id))
        assert victim.ask(QUESTIONS[0], MAX_TOKENS)[0] == reference.ask(QUESTIONS[0], MAX_TOKENS)[0]
    finally:
        victim.close()
        reference.close()
    _alive(qwen_server)


FORGED = {
    "4 guidance segments": {"role": "append", "guidance_ids": [5, 6, 7, 8], "guidance_segments": [1, 1, 1, 1]},
    "negative segment": {"role": "append", "guidance_ids": [5, 6], "guidance_segments": [3, -1, 0]},
    "segments not adding up": {"role": "append", "guidance_ids": [5], "guidance_segments": [1, 1, 1]},
    "negative token id": {"role": "append", "guidance_ids": [-5, 6, 7], "guidance_segments": [1, 1, 1]},
    "budget past int32": {"role": "open", "config": {"budget_tokens": 1 << 40}},
    "infinite recency decay": {"role": "open", "config": {"shallow": {"a": 1, "k": "Infinity", "smoothing": 0}}},
    "unknown role": {"role": "replace"},
    "unknown field": {"role": "ask", "turns": 3},
}


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_tags_on_stock_generate_are_refused(qwen_server, qwen_dir, name):
    """Forged tags arrive through SGLang's own /generate (on the forger's own stream, and without a
    stream): 400, the server alive, the forger's stream unchanged and still usable."""
    stream = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    try:
        stream.append(VIDEO[0])
        before = stream_state(qwen_server, stream.session_id)
        tag = {"hermes": json.dumps(FORGED[name], allow_nan=True)}
        media = stream.build_append(VIDEO[1])[2]
        for session in ({"id": stream.session_id}, None):
            body = {"text": VIDEO_SEGMENT + "x y z", **media,
                    "sampling_params": {"max_new_tokens": 0, "custom_params": tag}}
            if session is not None:
                body["session_params"] = session
            r = httpx.post(f"{qwen_server.base_url}/generate", json=body, timeout=120)
            if session is None:  # not a stream: the tag means nothing to SGLang, and nothing happens
                assert r.status_code in (200, 400), r.text
                continue
            assert r.status_code == 400, r.text
        _same_stream(stream_state(qwen_server, stream.session_id), before)
        stream.append(VIDEO[1])
        assert stream.ask(QUESTIONS[0], MAX_TOKENS)[0] is not None
    finally:
        stream.close()
    _alive(qwen_server)


@pytest.mark.parametrize("point", POINTS)
def test_a_hook_that_raises_fails_only_its_turn(qwen_server, qwen_dir, point):
    """With the server's test fault switch (SGLANG_HERMES_TEST_FAULTS=1), a request whose id names a
    hook point raises inside that hook. The turn fails with a 500; its stream is as before, and after
    more appends it holds exactly what a bystander stream given the same video holds."""
    bystander = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    victim = NativeStream(qwen_server.base_url, qwen_dir, CFG).open()
    try:
        for chunk in VIDEO[:2]:
            bystander.append(chunk)
            victim.append(chunk)
        before = stream_state(qwen_server, victim.session_id)
        with pytest.raises(StreamRequestError, match=f"hermes {point} failed"):
            victim.append(VIDEO[2], rid=f"a-hermes-fault-{point}-{uuid.uuid4().hex[:6]}")
        _same_stream(stream_state(qwen_server, victim.session_id), before)
        if point != "score":  # asks are not scored
            with pytest.raises(StreamRequestError, match=f"hermes {point} failed"):
                victim.ask(QUESTIONS[0], MAX_TOKENS, rid=f"q-hermes-fault-{point}-{uuid.uuid4().hex[:6]}")
            _same_stream(stream_state(qwen_server, victim.session_id), before)
        for chunk in VIDEO[2:]:
            bystander.append(chunk)
            victim.append(chunk)
        _same_stream(stream_state(qwen_server, victim.session_id), stream_state(qwen_server, bystander.session_id))
        got, want = victim.ask(QUESTIONS[1], MAX_TOKENS), bystander.ask(QUESTIONS[1], MAX_TOKENS)
        assert got[0] == want[0]
    finally:
        victim.close()
        bystander.close()
    _alive(qwen_server)


def test_special_tokens_in_user_text_stay_text(qwen_server, qwen_client):
    """A system prompt and questions spelling the model's special tokens: before, the question's
    `<|vision_start|><|video_pad|>` became real placeholders and every later append failed ("Prompt
    has 5 video placeholders but 1 video inputs"). They must stay text, and the stream keep working."""
    sid = open_session(qwen_server, budget_tokens=40, system_prompt=f"Be brief. {SPECIAL}")["id"]
    try:
        append(qwen_client, sid, image_parts(VIDEO[0]))
        for i in range(2):
            out = ask(qwen_client, sid, f"What is {SPECIAL} here?", MAX_TOKENS)
            assert out.choices[0].message.content is not None
            append(qwen_client, sid, image_parts(VIDEO[1 + i]))  # conditioned on that question
        assert qwen_client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": SPECIAL}], max_tokens=MAX_TOKENS,
            extra_body={"session": {"id": sid}}).model_extra["session"]["chunks"] == 3
    finally:
        close_session(qwen_server, sid)
    _alive(qwen_server)


def _walk_away_from_ask(server, sid: str, streamed: bool) -> None:
    """Start an ask of LONG tokens through the session API and close the connection mid-answer."""
    body = {"model": "default", "messages": [{"role": "user", "content": "Describe everything."}],
            "max_tokens": LONG, "temperature": 0, "session": {"id": sid}, "stream": streamed}
    url = f"{server.base_url}/v1/chat/completions"
    if streamed:
        with httpx.stream("POST", url, json=body, timeout=120) as r:
            assert r.status_code == 200
            next(line for line in r.iter_lines() if '"content": "' in line and '"content": ""' not in line)
    else:
        # The server answers only at the end: give it time to start decoding, then hang up.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body, timeout=httpx.Timeout(120, read=3.0))


@pytest.mark.parametrize("streamed", [True, False], ids=["sse", "json"])
def test_an_abandoned_ask_is_aborted_and_frees_its_stream(qwen_server, qwen_client, streamed):
    """Item 5: a client that hangs up on a long ask (3000 tokens) used to keep its stream busy until
    the answer was complete (119 s measured). The ask must be aborted and rolled back at once: the
    stream is free within a few seconds, did not count the ask, and takes the next turn."""
    sid = open_session(qwen_server, budget_tokens=40)["id"]
    try:
        append(qwen_client, sid, image_parts(VIDEO[0]))
        before = stream_state(qwen_server, sid)
        _walk_away_from_ask(qwen_server, sid, streamed)
        hung_up = time.monotonic()
        while stream_state(qwen_server, sid)["turn_in_flight"]:
            assert time.monotonic() - hung_up < 5.0, "the abandoned ask still runs"
            time.sleep(0.05)
        after = stream_state(qwen_server, sid)
        assert after["asks"] == before["asks"]  # aborted and rolled back, not finished
        _same_stream(after, before)
        append(qwen_client, sid, image_parts(VIDEO[1]))
        assert ask(qwen_client, sid, QUESTIONS[0], MAX_TOKENS).choices[0].message.content is not None
    finally:
        close_session(qwen_server, sid)
    assert "rolled back" in qwen_server.log_text()


def test_faults_back_to_back_leave_streams_and_pool_intact(qwen_server, qwen_client):
    """Item 2 as the soak met it: a client hangs up on an SSE ask and the next turn follows at once
    (it used to be refused: "already has an active request"), an append is cancelled and the next one
    follows, a stream is deleted while an append runs. Every KV slot comes back."""
    base = wait_available(qwen_server, hermes_state(qwen_server)["kv_available_slots"])
    sid = open_session(qwen_server, budget_tokens=40)["id"]
    doomed = open_session(qwen_server, budget_tokens=40)["id"]
    try:
        append(qwen_client, sid, image_parts(VIDEO[0]))
        for i in range(2):
            _walk_away_from_ask(qwen_server, sid, streamed=True)
            append(qwen_client, sid, image_parts(VIDEO[1 + i]))  # straight after the hang-up
        with pytest.raises(httpx.TimeoutException):  # cancelled mid-append
            _raw_append(qwen_server, sid, VIDEO[3], timeout=0.05)
        append(qwen_client, sid, image_parts(VIDEO[3]))
        assert ask(qwen_client, sid, QUESTIONS[1], MAX_TOKENS).choices[0].message.content is not None

        worker = threading.Thread(target=lambda: _raw_append(qwen_server, doomed, VIDEO[0], timeout=120))
        worker.start()
        time.sleep(0.2)
        assert httpx.delete(f"{qwen_server.base_url}/v1/sessions/{doomed}", timeout=120).status_code == 200
        worker.join(120)
    finally:
        close_session(qwen_server, sid)
        close_session(qwen_server, doomed)
    assert wait_available(qwen_server, base) == base
    _alive(qwen_server)


def _raw_append(server, sid: str, frames, timeout: float) -> httpx.Response:
    body = {"model": "default", "messages": [{"role": "user", "content": image_parts(frames)}],
            "session": {"id": sid, "mode": "append"}}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=timeout)


def test_a_burst_of_opens_never_overcommits_the_pool(qwen_server):
    """Item 9: 40 concurrent opens admitted 27 streams where the pool holds 24. The pool's capacity
    for big streams is found one open at a time; then a burst of opens must admit exactly as many."""
    total = hermes_state(qwen_server)["kv_total_slots"]
    budget = total // 4  # a few streams fill the pool
    opened = []
    try:
        while True:
            r = httpx.post(f"{qwen_server.base_url}/v1/sessions", json={"budget_tokens": budget}, timeout=120)
            if r.status_code == 429:
                break
            assert r.status_code == 201, r.text
            opened.append(r.json()["id"])
        capacity = len(opened)
        assert 1 <= capacity <= 4
        for sid in opened:
            close_session(qwen_server, sid)
        opened.clear()

        def one(_):
            return httpx.post(f"{qwen_server.base_url}/v1/sessions", json={"budget_tokens": budget}, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(16)))
        opened = [r.json()["id"] for r in answers if r.status_code == 201]
        assert sorted({r.status_code for r in answers}) == [201, 429]
        assert len(opened) == capacity
    finally:
        for sid in opened:
            close_session(qwen_server, sid)
