"""clients.session against the HTTP contract (the in-memory fake in fake_server.py, no hermes-serve)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from clients import HermesClient, VideoError, error_message
from tests.clients.conftest import level
from tests.clients.fake_server import MODEL, FakeHermes


def _frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    return np.stack([np.full((h, w, 3), level(i), np.uint8) for i in range(n)])


def _posts(fake: FakeHermes, path: str) -> list:
    return [b for m, p, b in fake.requests if m == "POST" and p == path]


def test_open_sends_only_the_options_given_and_closes_on_exit(fake):
    hc = fake.client()
    with hc.open_stream(budget_tokens=64, policy="fifo", fps=2.0) as s:
        assert s.id == "sess-1" and s.config["budget_tokens"] == 64 and s.config["fps"] == 2.0
        assert s.id in fake.sessions
    assert _posts(fake, "/v1/sessions") == [{"budget_tokens": 64, "policy": "fifo", "fps": 2.0}]
    assert fake.deleted == ["sess-1"] and s.closed
    s.close()                                                   # twice is fine, nothing sent
    assert fake.deleted == ["sess-1"]


def test_model_is_the_first_the_server_lists_unless_given(fake):
    assert fake.client().model == MODEL
    assert HermesClient("http://fake/v1", model="mine").model == "mine"


def test_append_numpy_batch_as_jpeg_parts_with_timestamps(fake):
    with fake.client().open_stream(id="cam-1") as s:
        r = s.append(_frames(3), timestamps=[0, 0.5, 1.0])
        assert r.tokens == 3 * fake.tokens_per_frame and r.frames == 3 and r.ms > 0
        assert r.stats["frames"] == 3 and r.stats["id"] == "cam-1" and r.stats["time_seconds"] == 1.5
    got = fake.appends[0]
    assert got["mimes"] == ["image/jpeg"] * 3 and got["timestamps"] == [0.0, 0.5, 1.0]
    assert [im.size for im in got["frames"]] == [(48, 32)] * 3
    assert [round(np.asarray(im).mean()) for im in got["frames"]] == pytest.approx([level(i) for i in range(3)],
                                                                                    abs=2)
    body = _posts(fake, "/v1/chat/completions")[0]
    assert body["session"] == {"id": "cam-1", "mode": "append"} and body["model"] == MODEL


def test_append_png_pil_and_bytes_arrive_as_sent(fake):
    frame = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    with fake.client().open_stream() as s:
        s.append([Image.fromarray(frame)], image_format="png")
        s.append(buf.getvalue())
        s.append(frame)                                         # one [H, W, 3] frame
    assert [a["mimes"] for a in fake.appends] == [["image/png"], ["image/png"], ["image/jpeg"]]
    assert np.array_equal(np.asarray(fake.appends[0]["frames"][0]), frame)
    assert np.array_equal(np.asarray(fake.appends[1]["frames"][0]), frame)
    assert fake.appends[1]["timestamps"] is None


def test_append_checks_its_input_before_sending(fake):
    with fake.client().open_stream() as s:
        with pytest.raises(ValueError, match="2 timestamps for 3 frames"):
            s.append(_frames(3), timestamps=[0, 1])
        with pytest.raises(ValueError, match="at least one frame"):
            s.append([])
    assert _posts(fake, "/v1/chat/completions") == []


def test_append_is_never_retried_but_questions_are(fake):
    calls = []

    def flaky(request):
        if request.url.path == "/v1/chat/completions":
            calls.append(request)
            return httpx.Response(503, json={"error": {"message": "busy", "type": "x", "param": None, "code": None}})
        return fake.handle(request)

    hc = HermesClient("http://fake/v1", max_retries=2, http_client=httpx.Client(transport=httpx.MockTransport(flaky)))
    s = hc.open_stream()
    with pytest.raises(openai.InternalServerError):
        s.append(_frames(1))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(openai.InternalServerError):
        s.ask("anything?", stream=False)
    assert len(calls) == 3


def test_ask_streamed_measures_ttft_and_reads_the_stats_of_the_last_chunk(fake):
    with fake.client().open_stream() as s:
        s.append(_frames(4), timestamps=[0, 1, 2, 3])
        a = s.ask("What happened?", max_tokens=16, temperature=0)
    assert a.text == "saw 4 frames up to 4 s" and a.finish_reason == "stop"
    assert 0 < a.ttft_s <= a.total_s and a.stats["frames"] == 4 and a.stats["tokens_seen"] == 16
    body = fake.asks[0]["body"]
    assert body["stream"] is True and body["max_tokens"] == 16 and body["temperature"] == 0
    assert body["session"] == {"id": s.id} and body["messages"] == [{"role": "user", "content": "What happened?"}]


def test_ask_plain_and_piece_by_piece(fake):
    with fake.client().open_stream() as s:
        s.append(_frames(2))
        a = s.ask("q", stream=False, top_k=5)
        assert a.text == "saw 2 frames up to 2 s" and a.ttft_s is None and a.stats["frames"] == 2
        assert a.usage["completion_tokens"] == 7
        assert fake.asks[0]["body"]["top_k"] == 5 and "stream" not in fake.asks[0]["body"]
        pieces = s.ask_stream("q2")
        assert pieces.answer is None
        assert list(pieces) == ["saw ", "2 ", "frames ", "up ", "to ", "2 ", "s"]
        assert pieces.answer.text == "saw 2 frames up to 2 s" and pieces.answer.stats["chunks"] == 1


def test_append_video_sends_one_clip_of_the_frames_the_stream_samples(fake, video_10fps):
    with fake.client().open_stream(fps=2.0) as s:
        r = s.append_video(video_10fps, start=1.0, end=3.0)
        assert r.stats["frames"] == 4 and r.frames == 4
        assert s.append_video(video_10fps.read_bytes(), start=3.0).frames == 2
        with pytest.raises(VideoError, match="no frames"):
            s.append_video(video_10fps, start=10.0)
    clip = fake.appends[0]
    assert clip["mimes"] == ["video/mp4"] and clip["timestamps"] is None
    assert clip["times"] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=1e-3)     # the clip plays from 0
    assert [round(np.asarray(im).mean()) for im in clip["frames"]] == pytest.approx(
        [level(10), level(15), level(20), level(25)], abs=2)
    assert fake.appends[1]["times"] == pytest.approx([2.0, 2.5], abs=1e-3)    # placed after the last frame


def test_append_video_on_a_handle_reads_the_streams_fps_first(fake, video_10fps):
    hc = fake.client()
    hc.open_stream(id="cam", fps=1.0)
    r = hc.stream("cam").append_video(video_10fps)
    assert r.frames == 4 and fake.appends[0]["times"] == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-3)


def test_model_is_looked_up_once_before_the_first_turn(fake):
    s = fake.client().open_stream()
    s.append(_frames(1))
    s.ask("q")
    paths = [p for _, p, _ in fake.requests]
    assert paths == ["/v1/sessions", "/v1/models", "/v1/chat/completions", "/v1/chat/completions"]


def test_server_errors_are_openai_exceptions_with_the_servers_message(fake):
    hc = fake.client()
    with pytest.raises(openai.NotFoundError) as e:
        hc.stats("nope")
    assert error_message(e.value) == "no session 'nope' (unknown, closed or expired) (HTTP 404)"
    hc.open_stream(id="dup")
    with pytest.raises(openai.ConflictError):
        hc.open_stream(id="dup")
    assert len([1 for m, p, _ in fake.requests if p == "/v1/sessions" and m == "POST"]) == 2   # no retry
    fake.fail["open"] = (429, "the KV pool cannot hold another stream")
    with pytest.raises(openai.RateLimitError) as e:
        hc.open_stream()
    assert e.value.response.headers["retry-after"] == "5"
    assert hc.close_stream("dup") is True and hc.close_stream("dup") is False


def test_a_failed_close_does_not_hide_the_error_that_ended_the_block(fake):
    hc = fake.client()
    with pytest.raises(openai.NotFoundError):
        with hc.open_stream(id="x") as s:
            fake.sessions.clear()                              # expired on the server
            s.append(_frames(1))
    assert s.closed


def test_list_and_stats(fake):
    hc = fake.client()
    a, b = hc.open_stream(), hc.open_stream(id="b")
    b.append(_frames(2))
    assert [x["id"] for x in hc.list_streams()] == [a.id, "b"]
    assert b.stats()["frames"] == 2 and hc.stream("b").stats()["frames"] == 2


def test_connection_errors_say_where(fake):
    def down(request):
        raise httpx.ConnectError("connection refused", request=request)

    hc = HermesClient("http://nowhere:1/v1", max_retries=0, http_client=httpx.Client(transport=httpx.MockTransport(down)))
    with pytest.raises(openai.APIConnectionError) as e:
        hc.open_stream()
    assert error_message(e.value).startswith("cannot reach the server at http://nowhere:1/v1/sessions")


def test_through_a_gateway_every_request_of_a_stream_carries_its_id_as_routing_key(fake):
    """Gateway mode: the client picks the id, sends it in X-SMG-Routing-Key on every request about the
    stream, and opens, reads and closes through chat completions (a gateway proxies no /v1/sessions)."""
    hc = fake.client(gateway=True)
    with hc.open_stream(budget_tokens=64, fps=2.0) as s:
        assert s.id.startswith("stream-") and s.config["budget_tokens"] == 64
        s.append(_frames(2))
        assert s.ask("what?", max_tokens=3).text
        assert s.stats()["chunks"] == 1
    assert fake.deleted == [s.id] and s.id not in fake.sessions
    assert not [p for p, _ in fake.routing_keys if p.startswith("/v1/sessions")]
    assert {key for p, key in fake.routing_keys if p != "/v1/models"} == {s.id}
    chats = _posts(fake, "/v1/chat/completions")
    assert [c["session"].get("mode") for c in chats] == ["open", "append", None, "stats", "close"]
    assert chats[0]["session"] == {"id": s.id, "mode": "open", "options": {"budget_tokens": 64, "fps": 2.0}}
    assert hc.close_stream(s.id) is False                      # already gone: 404 read as False
    with pytest.raises(RuntimeError, match="each server"):
        hc.list_streams()


def test_a_direct_client_names_a_chosen_stream_in_the_routing_header_too(fake):
    hc = fake.client()
    with hc.open_stream(id="cam-9") as s:
        s.stats()
    assert [key for p, key in fake.routing_keys if p.startswith("/v1/sessions")] == ["cam-9"] * 3
