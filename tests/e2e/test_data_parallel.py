"""``--dp-size 2``: every turn of a stream reaches the data-parallel rank that holds its KV.

SGLang's DP controller balances requests round robin and ignores sessions; without pinning, about
every other turn of a stream landed on the rank that never saw its opening turn and was refused.
"""

from __future__ import annotations

import httpx
import openai

from sglang_hermes.runtime.engine_client import dp_rank
from sglang_hermes.testing.video import synthetic_frames

from .api_helpers import append, ask, close_session, image_parts, open_session


def _ids_on_both_ranks() -> list[str]:
    ids = [f"dp-stream-{i}" for i in range(16)]
    by_rank = {r: [i for i in ids if dp_rank(i, 2) == r] for r in (0, 1)}
    return by_rank[0][:2] + by_rank[1][:2]


def test_streams_stay_on_their_rank_for_every_turn(qwen_dp2_server):
    server = qwen_dp2_server
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    ids = _ids_on_both_ranks()
    frames = synthetic_frames(4, size=56, seed=5)
    for sid in ids:
        open_session(server, id=sid, budget_tokens=64)
    try:
        for step in range(2):  # interleaved, so the controller's round robin would scatter them
            for sid in ids:
                append(client, sid, image_parts(frames[2 * step:2 * step + 2]))
        for sid in ids:
            assert ask(client, sid, "What changed?", 2).choices[0].message.content is not None
        states = httpx.get(f"{server.base_url}/server_info", timeout=60).json()["internal_states"]
        held = {s["hermes"]["dp_rank"]: set(s["hermes"]["streams"]) for s in states}
        assert held == {0: {i for i in ids if dp_rank(i, 2) == 0}, 1: {i for i in ids if dp_rank(i, 2) == 1}}
        for sid in ids:  # both appends reached the stream on its rank
            got = httpx.get(f"{server.base_url}/v1/sessions/{sid}", timeout=60).json()
            assert got["chunks"] == 2 and got["tokens_seen"] > 0
    finally:
        for sid in ids:
            close_session(server, sid)
