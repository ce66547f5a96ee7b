"""The recent_hermes policy through the real server: opened per stream by the session API, it holds
prefix + M and the newest W stream tokens in every layer, with HERMES choosing the rest."""

from __future__ import annotations

from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import close_session, open_session
from .streams import lockstep

BUDGET, WINDOW = 40, 24  # 2 frames of 112x112 = 18 tokens per chunk: the window spans two chunks


def test_recent_hermes_stream_keeps_the_newest_window_in_every_layer(qwen_server, qwen_client):
    frames = synthetic_frames(10, seed=31)
    common = dict(budget_tokens=BUDGET, fps=2.0, chunk_frames=2)
    recent = open_session(qwen_server, policy="recent_hermes", recent_tokens=WINDOW, **common)
    fifo = open_session(qwen_server, policy="fifo", **common)  # same frames: its newest tokens are the oracle
    assert recent["config"]["policy"] == "recent_hermes" and recent["config"]["recent_tokens"] == WINDOW
    try:
        for mine, oracle in lockstep(qwen_server, qwen_client, [recent["id"], fifo["id"]], frames, 2):
            newest = {tuple(p) for p in oracle["positions"][0][-WINDOW:]}
            for layer in mine["positions"]:
                assert newest <= {tuple(p) for p in layer}
        assert mine["compressions"] >= 2 and mine["memory_len"] == mine["prefix_len"] + BUDGET
        assert mine["positions"] != oracle["positions"]  # older tokens were chosen by HERMES, not by age
        assert any(any(row) for row in mine["is_summary"])  # deep layers fold what they evict
    finally:
        close_session(qwen_server, recent["id"])
        close_session(qwen_server, fifo["id"])
