"""Hostile clients through every route hermes-serve serves (issue #18, #17 items 1, 7, 8): each case is
refused with OpenAI error JSON (or served, for legal input that used to fail), the server stays healthy,
no file of the server is opened, and a bystander stream's greedy answer is unchanged."""

from __future__ import annotations

import io
import json
import os
import threading

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from sglang_hermes.media import data_url, encode_mp4
from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import append, ask, close_session, get_stats, image_parts, open_session
from .streams import MAX_TOKENS, QUESTIONS, chunks, stream_state

PNG = image_parts(synthetic_frames(1, size=112))[0]
BOMB_DEPTH = 100_000


def _post(server, path: str, body=None, *, content: bytes | None = None) -> httpx.Response:
    if content is not None:
        return httpx.post(f"{server.base_url}{path}", content=content, timeout=300,
                          headers={"content-type": "application/json"})
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=300)


def _chat_body(content, **extra) -> dict:
    return {"model": "default", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **extra}


def _assert_error(r: httpx.Response, status: int, param: str | None = None, words: str = "") -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert words in error["message"], error
    if param is not None:
        assert error["param"] == param, error
    return error


@pytest.fixture(scope="module")
def bystander(qwen_server):
    """A stream that must not notice anything: one chunk in, and the greedy answer it gives."""
    client = openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    sid = open_session(qwen_server, id="edge-bystander", budget_tokens=40, fps=2.0, chunk_frames=4)["id"]
    append(client, sid, image_parts(chunks("qwen", n=1, seed=31)[0]))
    answer = ask(client, sid, QUESTIONS[0], MAX_TOKENS).choices[0].message.content
    yield client, sid, answer, _memory(qwen_server, sid)
    close_session(qwen_server, sid)


def _memory(server, sid: str) -> dict:
    """What a stream holds: its state minus the counters an ask moves."""
    return stream_state(server, sid) | {"asks": 0, "last_turn_rid": ""}


def _unchanged(server, bystander) -> None:
    """The server is healthy and the bystander's stream holds exactly what it held (its greedy answer is
    compared once, by the last test of the module, after every case has run)."""
    _, sid, _, state = bystander
    assert httpx.get(f"{server.base_url}/health", timeout=60).status_code == 200
    assert _memory(server, sid) == state


# -- local media on every route: refused, and the file is never opened -------------------------------------

@pytest.fixture
def fifo(tmp_path):
    """A FIFO: a server that opened it for reading would hold it open (blocked, waiting for a writer)."""
    path = tmp_path / "frame.png"
    os.mkfifo(path)
    yield str(path)
    _release_reader(str(path))


def _has_reader(path: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO when nobody has it open for reading
    except OSError:
        return False
    os.close(fd)
    return True


def _release_reader(path: str) -> None:
    """If a reader is blocked on the FIFO (the feature broke), give it EOF so it does not hang forever."""
    threading.Thread(target=_has_reader, args=(path,), daemon=True).start()


LOCAL_CASES = {
    # name -> (path, body given the local reference, param naming the field)
    "chat image_url file://": ("/v1/chat/completions",
                               lambda ref: _chat_body([{"type": "image_url", "image_url": {"url": f"file://{ref}"}},
                                                       {"type": "text", "text": "what is it?"}]),
                               "messages[0].content[0].image_url.url"),
    "chat image_url path": ("/v1/chat/completions",
                            lambda ref: _chat_body([{"type": "image_url", "image_url": {"url": ref}}]),
                            "messages[0].content[0].image_url.url"),
    "chat video_url": ("/v1/chat/completions",
                       lambda ref: _chat_body([{"type": "video_url", "video_url": {"url": ref}}]),
                       "messages[0].content[0].video_url.url"),
    "chat audio_url": ("/v1/chat/completions",
                       lambda ref: _chat_body([{"type": "audio_url", "audio_url": {"url": ref}}]),
                       "messages[0].content[0].audio_url.url"),
    "sagemaker invocations": ("/invocations",
                              lambda ref: _chat_body([{"type": "image_url", "image_url": {"url": ref}}]),
                              "messages[0].content[0].image_url.url"),
    "generate image_data": ("/generate", lambda ref: {"text": "<|vision_start|><|image_pad|><|vision_end|>",
                                                      "image_data": ref}, "image_data"),
    "generate nested video_data": ("/generate", lambda ref: {"text": "x", "video_data": [["data:video/mp4;base64,AAAA",
                                                                                       f"file://{ref}"]]},
                                   "video_data[0][1]"),
    "generate audio_data": ("/generate", lambda ref: {"text": "x", "audio_data": [ref]}, "audio_data[0]"),
    "generate image_data object": ("/generate", lambda ref: {"text": "x", "image_data": [{"url": ref}]},
                                   "image_data[0].url"),
    "completions": ("/v1/completions", lambda ref: {"model": "default", "prompt": "x", "image_data": ref},
                    "image_data"),
}


@pytest.mark.parametrize("case", list(LOCAL_CASES))
def test_local_media_is_refused_on_every_route_without_opening_the_file(case, fifo, qwen_server, bystander):
    path, body, param = LOCAL_CASES[case]
    r = _post(qwen_server, path, body(fifo))
    _assert_error(r, 400, param, "--hermes-allow-local-media")
    assert not _has_reader(fifo), "the server opened the file"
    _unchanged(qwen_server, bystander)


def test_an_escaped_session_key_is_a_session_request(qwen_server, bystander, fifo):
    """``"\\u0073ession"`` is ``"session"``: routing is decided on the parsed JSON, never on raw bytes."""
    sid = open_session(qwen_server, budget_tokens=200, chunk_frames=4)["id"]
    try:
        body = json.dumps(_chat_body([PNG])).replace('"model"', '"\\u0073ession": ' + json.dumps(
            {"id": sid, "mode": "append"}) + ', "model"', 1)
        assert '"session"' not in body
        r = _post(qwen_server, "/v1/chat/completions", content=body.encode())
        assert r.status_code == 200, r.text
        assert r.json()["session"]["chunks"] == 1 and get_stats(qwen_server, sid)["chunks"] == 1
        # ... and with a local file, it is refused as an append, the file unopened.
        body = body.replace(PNG["image_url"]["url"], f"file://{fifo}")
        _assert_error(_post(qwen_server, "/v1/chat/completions", content=body.encode()), 400, None, "local paths")
        assert not _has_reader(fifo)
    finally:
        close_session(qwen_server, sid)
    _unchanged(qwen_server, bystander)


# -- sampling values: a 400 naming the field on every generation route, never a dead scheduler --------------

SAMPLING_CASES = {
    # name -> (path, body, param)
    "chat top_k 2**40": ("/v1/chat/completions", _chat_body("hi", top_k=2**40), "top_k"),
    "chat top_k 1e308": ("/v1/chat/completions", _chat_body("hi", top_k=1e308), "top_k"),
    "chat top_p string": ("/v1/chat/completions", _chat_body("hi", top_p="x"), "top_p"),
    "chat stop number": ("/v1/chat/completions", _chat_body("hi", stop=5), "stop"),
    "chat n huge": ("/v1/chat/completions", _chat_body("hi", n=10**6), "n"),
    "chat logit_bias inf": ("/v1/chat/completions", _chat_body("hi", logit_bias={"5": 1e309}), "logit_bias"),
    "chat logit_bias beyond vocab": ("/v1/chat/completions", _chat_body("hi", logit_bias={"99999999": 1}),
                                     "logit_bias"),
    "chat top_logprobs beyond vocab": ("/v1/chat/completions", _chat_body("hi", logprobs=True, top_logprobs=10**6),
                                       "top_logprobs"),
    "chat seed beyond int64": ("/v1/chat/completions", _chat_body("hi", seed=2**64), "seed"),
    "completions top_k 2**40": ("/v1/completions", {"model": "default", "prompt": "hi", "top_k": 2**40}, "top_k"),
    "completions temperature nan": ("/v1/completions",
                                    {"model": "default", "prompt": "hi", "temperature": float("nan")}, "temperature"),
    "generate top_k 2**40": ("/generate", {"text": "hi", "sampling_params": {"top_k": 2**40}},
                             "sampling_params.top_k"),
    "generate list top_k": ("/generate", {"text": ["a", "b"], "sampling_params": [{}, {"top_k": 1e308}]},
                            "sampling_params[1].top_k"),
    "generate stop_token_ids": ("/generate", {"text": "hi", "sampling_params": {"stop_token_ids": [2**40]}},
                                "sampling_params.stop_token_ids"),
    "generate top_logprobs_num": ("/generate", {"text": "hi", "return_logprob": True, "top_logprobs_num": 10**7},
                                  "top_logprobs_num"),
    "generate max_new_tokens float": ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 1e308}},
                                      "sampling_params.max_new_tokens"),
}


@pytest.mark.parametrize("case", list(SAMPLING_CASES))
def test_hostile_sampling_values_get_a_400_naming_the_field(case, qwen_server, bystander):
    path, body, param = SAMPLING_CASES[case]
    r = _post(qwen_server, path, content=json.dumps(body).encode())
    _assert_error(r, 400, param)
    _unchanged(qwen_server, bystander)


ASK_CASES = {"top_k 2**40": ({"top_k": 2**40}, "top_k"), "top_k 1e308": ({"top_k": 1e308}, "top_k"),
             "top_p string": ({"top_p": "x"}, "top_p"), "top_k string": ({"top_k": "x"}, "top_k"),
             "stop number": ({"stop": 5}, "stop"), "max_tokens 0": ({"max_tokens": 0}, "max_tokens"),
             "max_completion_tokens 0": ({"max_completion_tokens": 0}, "max_completion_tokens"),
             "temperature negative": ({"temperature": -1}, "temperature")}


@pytest.mark.parametrize("case", list(ASK_CASES))
def test_hostile_sampling_values_on_an_ask(case, qwen_server, bystander):
    _, sid, _, _ = bystander
    extra, param = ASK_CASES[case]
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTIONS[0]}], "session": {"id": sid}, **extra}
    _assert_error(_post(qwen_server, "/v1/chat/completions", content=json.dumps(body).encode()), 400, param)
    _unchanged(qwen_server, bystander)


def test_ask_sampling_values_reach_the_engine(qwen_server, bystander):
    """Valid values still work on an ask: a stop string cuts the greedy answer where it first occurs."""
    client, sid, answer, _ = bystander
    stop = answer[len(answer) // 2:len(answer) // 2 + 2]
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTIONS[0]}],
                                       max_tokens=MAX_TOKENS, temperature=0, top_p=0.9, stop=[stop],
                                       extra_body={"session": {"id": sid}, "top_k": 5})
    assert r.choices[0].message.content == answer[:answer.index(stop)]


# -- JSON nesting bombs on any route ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/generate", "/v1/completions", "/v1/sessions",
                                  "/v1/responses"])
def test_a_json_nesting_bomb_gets_a_400_in_openai_shape(path, qwen_server, bystander):
    bomb = b'{"model": "m", "x": ' + b"[" * BOMB_DEPTH + b"]" * BOMB_DEPTH + b"}"
    _assert_error(_post(qwen_server, path, content=bomb), 400, None, "nests deeper")
    _unchanged(qwen_server, bystander)


# -- decode bounds, single and tiny frames (#17 items 7, 8) -----------------------------------------------

def _video(frames: np.ndarray, fps: float) -> dict:
    return {"type": "video_url", "video_url": {"url": data_url("video/mp4", encode_mp4(frames, fps=fps))}}


@pytest.fixture
def victim(qwen_server):
    sid = open_session(qwen_server, budget_tokens=2000, chunk_frames=64, fps=2.0)["id"]
    yield sid
    close_session(qwen_server, sid)


def _append_raw(server, sid, parts) -> httpx.Response:
    return _post(server, "/v1/chat/completions", {"model": "m", "session": {"id": sid, "mode": "append"},
                                                  "messages": [{"role": "user", "content": parts}]})


def test_a_single_frame_append_works_and_the_stream_answers(qwen_server, victim, bystander):
    client = bystander[0]
    r = _append_raw(qwen_server, victim, [PNG])
    assert r.status_code == 200, r.text
    assert r.json()["session"]["frames"] == 1 and r.json()["usage"]["prompt_tokens"] > 0
    # an odd count after it: every frame is kept (the last one repeated to a whole temporal patch)
    r = _append_raw(qwen_server, victim, image_parts(synthetic_frames(3, size=112)))
    assert r.status_code == 200, r.text
    assert r.json()["session"]["frames"] == 4
    assert ask(client, victim, QUESTIONS[0], 4).choices[0].message.content is not None
    _unchanged(qwen_server, bystander)


@pytest.mark.parametrize("side", [16, 2])
def test_tiny_frames_work(side, qwen_server, victim, bystander):
    frames = synthetic_frames(4, size=side)
    r = _append_raw(qwen_server, victim, image_parts(frames))
    assert r.status_code == 200, r.text
    assert r.json()["session"]["frames"] == 4
    _unchanged(qwen_server, bystander)


def test_a_20000_pixel_1bit_png_is_refused_with_413(qwen_server, victim, bystander):
    r = _append_raw(qwen_server, victim, [{"type": "image_url", "image_url": {"url": _bomb_png()}}])
    _assert_error(r, 413, None, "too large to decode")
    assert get_stats(qwen_server, victim)["chunks"] == 0
    _unchanged(qwen_server, bystander)


def _bomb_png() -> str:
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    return data_url("image/png", buf.getvalue())


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", lambda url: _chat_body([{"type": "image_url", "image_url": {"url": url}}]),
     "messages[0].content[0].image_url.url"),
    ("/generate", lambda url: {"text": "x", "image_data": [url.split(",", 1)[1]]}, "image_data[0]"),
])
def test_an_image_bomb_on_a_stock_route_is_refused_with_413(path, body, param, qwen_server, bystander):
    _assert_error(_post(qwen_server, path, body(_bomb_png())), 413, param, "too large to decode")
    _unchanged(qwen_server, bystander)


def test_a_frame_above_the_side_limit_is_refused_before_decoding(qwen_server, victim, bystander):
    r = _append_raw(qwen_server, victim, [_video(np.zeros((2, 64, 4200, 3), np.uint8), fps=2.0)])
    _assert_error(r, 413, None, "--hermes-max-frame-side")
    _unchanged(qwen_server, bystander)


def test_a_video_of_10000_frames_at_1000_fps_is_sampled_not_a_500(qwen_server, victim, bystander):
    frames = np.repeat(synthetic_frames(1, size=16), 10000, axis=0)
    r = _append_raw(qwen_server, victim, [_video(frames, fps=1000.0)])
    assert r.status_code == 200, r.text
    assert r.json()["session"]["frames"] == 20  # 10 s sampled at the stream's 2 fps
    _unchanged(qwen_server, bystander)


def _rss_peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))


def _reset_rss_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def test_a_4096px_video_is_decoded_scaled_down_in_bounded_memory(qwen_server, victim, bystander):
    """16 frames at 4096x4096 (tens of KiB on the wire) took ~6 GB before; now each frame is scaled to
    --hermes-max-frame-pixels while it is decoded. Peak RSS of the HTTP process (which decodes) is printed."""
    frame = np.zeros((4096, 4096, 3), np.uint8)
    frame[::64] = 255
    part = _video(np.broadcast_to(frame, (16, *frame.shape)), fps=2.0)
    pid = qwen_server.proc.pid
    _reset_rss_peak(pid)
    base = _rss_peak_kib(pid)
    r = _append_raw(qwen_server, victim, [part])
    assert r.status_code == 200, r.text
    assert r.json()["session"]["frames"] == 16
    rise = _rss_peak_kib(pid) - base
    print(f"\nhttp process: peak RSS {_rss_peak_kib(pid) / 1024:.0f} MiB, {rise / 1024:.0f} MiB above its RSS "
          f"before the append (payload {len(part['video_url']['url']) / 1024:.0f} KiB)")
    assert rise < 1 << 20, f"peak RSS rose by {rise / 1024:.0f} MiB"
    _unchanged(qwen_server, bystander)


def test_too_many_pixels_in_one_chunk_is_413(qwen_server, victim, bystander):
    """64 frames of 720p hold 59 M pixels, over the 16.8 M default of --hermes-max-chunk-pixels."""
    frames = np.broadcast_to(np.zeros((720, 1280, 3), np.uint8), (64, 720, 1280, 3))
    r = _append_raw(qwen_server, victim, [_video(frames, fps=2.0)])
    _assert_error(r, 413, None, "--hermes-max-chunk-pixels")
    _unchanged(qwen_server, bystander)


def test_the_fifo_check_sees_a_reader(fifo):
    """The FIFO check the local-media tests rely on: it reports a reader exactly while one has it open."""
    assert not _has_reader(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert _has_reader(fifo)
    finally:
        os.close(fd)
    assert not _has_reader(fifo)


def test_the_bystander_answers_as_before(qwen_server, bystander):
    """Last in the module: after every hostile case above, the bystander's greedy answer is unchanged."""
    client, sid, answer, _ = bystander
    _unchanged(qwen_server, bystander)
    assert ask(client, sid, QUESTIONS[0], MAX_TOKENS).choices[0].message.content == answer
