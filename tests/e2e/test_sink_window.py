"""The sink_window policy's sink size set per stream through the session API (``sink_tokens``): the
stream keeps its first S tokens and the newest budget - S in every layer, and a sink that leaves no window
is refused at open with a 400 naming the field."""

from __future__ import annotations

import httpx

from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import close_session, open_session
from .streams import lockstep

BUDGET, SINK = 40, 6  # 2 frames of 112x112 = 18 tokens per chunk: the first chunk is not compressed


def test_sink_tokens_keep_the_first_tokens_and_the_newest_window(qwen_server, qwen_client):
    frames = synthetic_frames(10, seed=37)
    common = dict(budget_tokens=BUDGET, fps=2.0, chunk_frames=2)
    sink = open_session(qwen_server, policy="sink_window", sink_tokens=SINK, **common)
    fifo = open_session(qwen_server, policy="fifo", **common)  # same frames: its newest tokens are the oracle
    assert sink["config"]["policy"] == "sink_window" and sink["config"]["sink_tokens"] == SINK
    try:
        first = None
        for mine, oracle in lockstep(qwen_server, qwen_client, [sink["id"], fifo["id"]], frames, 2):
            first = first or {tuple(p) for p in oracle["positions"][0][:SINK]}
            newest = {tuple(p) for p in oracle["positions"][0][-(BUDGET - SINK):]}
            for layer in mine["positions"]:
                assert first | newest == {tuple(p) for p in layer}
        assert mine["compressions"] >= 2 and mine["memory_len"] == mine["prefix_len"] + BUDGET
    finally:
        close_session(qwen_server, sink["id"])
        close_session(qwen_server, fifo["id"])


def test_a_sink_as_large_as_the_budget_is_refused(qwen_server):
    r = httpx.post(f"{qwen_server.base_url}/v1/sessions", timeout=60,
                   json=dict(policy="sink_window", budget_tokens=BUDGET, sink_tokens=BUDGET))
    assert r.status_code == 400, r.text
    assert "sink_tokens (40) must be < budget_tokens (40)" in r.json()["error"]["message"]
    assert httpx.get(f"{qwen_server.base_url}/v1/sessions", timeout=60).json()["data"] == []
