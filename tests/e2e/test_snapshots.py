"""Stream snapshots (#16 item 2) and idle offload (item 3) on real servers.

A stream's memory is written to the snapshot directory and loaded back by another worker, by the same
worker after a restart (snapshotted at its graceful shutdown, restored when its client comes back), and
an idle stream's memory leaves the KV pool for host RAM and comes back on its next turn. Each time the
next ask must answer as the untouched stream does: the same greedy tokens and log-probs. The oracle is
the original stream itself, asked the same question on the server that never lost it.

One server of its own (restarted once); the other worker is the shared ``qwen_server``.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from sglang_hermes.snapshots import format as snapfmt
from sglang_hermes.testing.server import HermesServer

from .api_helpers import append, close_session, image_parts, open_session
from .streams import chunks

BUDGET = 40
QUESTION = "What is moving?"
TOL = 1e-4
# The own server: a KV pool that holds two streams at their worst case; idle streams leave it after 2 s.
OWN_POOL_TOKENS = 3000
OFFLOAD_AFTER = 2.0
OWN_ARGS = ("--enable-streaming-session", "--dtype", "float32", "--max-total-tokens", str(OWN_POOL_TOKENS),
            "--hermes-max-chunk-tokens", "256", "--hermes-offload-after", str(OFFLOAD_AFTER))


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=600)


def _ask(server, sid: str, question: str = QUESTION, max_tokens: int = 6) -> tuple[str, list[float]]:
    r = _client(server).chat.completions.create(
        model="default", messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0,
        logprobs=True, extra_body={"session": {"id": sid}})
    return r.choices[0].message.content, [t.logprob for t in r.choices[0].logprobs.content]


def _same_answer(a, b) -> bool:
    return a[0] == b[0] and len(a[1]) == len(b[1]) > 0 and max(abs(x - y) for x, y in zip(a[1], b[1])) < TOL


def _snapshot(server, sid: str) -> dict:
    r = httpx.post(f"{server.base_url}/v1/sessions/{sid}/snapshot", timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


class OwnServer:
    """The tests' own worker, restartable on the same snapshot directory."""

    def __init__(self, model_dir, snapshot_dir, log_dir):
        self.model_dir, self.snapshot_dir, self.log_dir, self.starts = model_dir, snapshot_dir, log_dir, 0
        self.server: HermesServer | None = None

    def start(self) -> HermesServer:
        self.starts += 1
        self.server = HermesServer(self.model_dir, log_path=self.log_dir / f"own-{self.starts}.log",
                                   extra_args=[*OWN_ARGS, "--hermes-snapshot-dir", str(self.snapshot_dir)],
                                   startup_timeout=900.0).start()
        return self.server

    def graceful_stop(self, timeout: float = 120) -> None:
        """SIGTERM to the server process alone, as an operator's ``kill``; then wait for it to go."""
        proc = self.server.proc
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except Exception:
            pass
        self.server.stop()  # whatever is left of its process group


@pytest.fixture(scope="module")
def own(qwen_dir, snapshot_dir, tmp_path_factory):
    holder = OwnServer(qwen_dir, snapshot_dir, tmp_path_factory.mktemp("own-logs"))
    holder.start()
    try:
        yield holder
    finally:
        holder.server.stop()


def _compressed_stream(server, sid: str, n: int = 3, seed: int = 31) -> None:
    """A stream past its budget (compacted), with a last Q/A that conditions its next guidance block."""
    open_session(server, id=sid, budget_tokens=BUDGET, fps=2.0, chunk_frames=2)
    client = _client(server)
    for chunk in chunks("qwen", n=n, seed=seed):
        append(client, sid, image_parts(chunk))
    _ask(server, sid, "Which shape moves?", 4)


def test_a_snapshot_restores_on_another_worker(qwen_server, own, snapshot_dir):
    sid = "snap-move"
    _compressed_stream(qwen_server, sid)
    stats = httpx.get(f"{qwen_server.base_url}/v1/sessions/{sid}", timeout=60).json()
    assert stats["compressions"] >= 1
    t0 = time.perf_counter()
    snap = _snapshot(qwen_server, sid)
    assert snap["bytes"] == (snapshot_dir / f"{sid}.hsnap").stat().st_size and snap["kv_tokens"] > 0
    before = _ask(qwen_server, sid)

    restored = open_session(own.server, id="snap-moved", restore_from=sid)
    restore_ms = (time.perf_counter() - t0) * 1e3
    assert restored["config"]["budget_tokens"] == BUDGET
    assert _same_answer(_ask(own.server, "snap-moved"), before)
    moved = httpx.get(f"{own.server.base_url}/v1/sessions/snap-moved", timeout=60).json()
    assert (moved["frames"], moved["chunks"], moved["tokens_seen"], moved["compressions"]) == \
        (stats["frames"], stats["chunks"], stats["tokens_seen"], stats["compressions"])
    # Both go on alike: the next append is guided by the same last Q/A, at the same clock and positions.
    extra = chunks("qwen", n=1, seed=77)[0]
    append(_client(qwen_server), sid, image_parts(extra))
    append(_client(own.server), "snap-moved", image_parts(extra))
    assert _same_answer(_ask(own.server, "snap-moved", "And now?"), _ask(qwen_server, sid, "And now?"))
    close_session(qwen_server, sid)
    print(f"snapshot {snap['bytes']} bytes ({snap['kv_tokens']} memory tokens), written in {snap['ms']:.1f} ms; "
          f"snapshot + restore on the other worker {restore_ms:.0f} ms")


def test_open_streams_survive_a_restart(qwen_server, own, snapshot_dir):
    """Snapshotted at graceful shutdown, restored when the client's next turn names the stream."""
    sid = "snap-restart"
    _compressed_stream(own.server, sid, seed=41)
    _compressed_stream(qwen_server, "snap-restart-twin", seed=41)  # the oracle: the same stream, never restarted
    (snapshot_dir / f"{sid}.hsnap").unlink(missing_ok=True)
    own.graceful_stop()
    assert (snapshot_dir / f"{sid}.hsnap").exists(), own.server.log_tail()
    assert (snapshot_dir / "snap-moved.hsnap").exists()  # every open stream, offloaded ones too
    own.start()
    assert _same_answer(_ask(own.server, sid), _ask(qwen_server, "snap-restart-twin"))
    close_session(qwen_server, "snap-restart-twin")


def test_idle_streams_leave_the_pool_and_come_back(own):
    """More streams stay open than the KV pool could hold at once: admission counts resident ones."""
    server = own.server
    state = httpx.get(f"{server.base_url}/server_info", timeout=60).json()["internal_states"][0]["hermes"]
    assert state["kv_total_slots"] <= OWN_POOL_TOKENS
    sids, answers = [f"idle-{i}" for i in range(5)], {}
    for i, sid in enumerate(sids):
        deadline = time.monotonic() + 60
        while True:  # a full pool answers 429 until an idle stream has left it
            r = httpx.post(f"{server.base_url}/v1/sessions", json={"id": sid, "budget_tokens": BUDGET, "fps": 2.0,
                                                                   "chunk_frames": 2}, timeout=120)
            if r.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 201, r.text
        append(_client(server), sid, image_parts(chunks("qwen", n=1, seed=50 + i)[0]))
        answers[sid] = _ask(server, sid)
    listed = httpx.get(f"{server.base_url}/v1/sessions", timeout=60).json()["data"]
    assert {s["id"] for s in listed} >= set(sids)
    time.sleep(OFFLOAD_AFTER + 2)  # all idle now: all in host RAM
    state = httpx.get(f"{server.base_url}/server_info", timeout=60).json()["internal_states"][0]["hermes"]
    assert not set(sids) & set(state["streams"])
    t0 = time.perf_counter()
    for sid in sids:
        assert _same_answer(_ask(server, sid), answers[sid]), sid
    print(f"{len(sids)} streams open on a pool of {state['kv_total_slots']} slots; "
          f"resume + ask {(time.perf_counter() - t0) * 1e3 / len(sids):.0f} ms per stream")
    for sid in sids:
        close_session(server, sid)


def test_bad_snapshots_are_refused_with_a_clear_error(qwen_server, snapshot_dir):
    sid = "snap-bad"
    _compressed_stream(qwen_server, sid, n=2, seed=61)
    _snapshot(qwen_server, sid)
    good = (snapshot_dir / f"{sid}.hsnap").read_bytes()
    close_session(qwen_server, sid)
    assert not (snapshot_dir / f"{sid}.hsnap").exists()  # a closed stream does not come back

    def restore(name: str, data: bytes | None = None, **extra) -> httpx.Response:
        if data is not None:
            (snapshot_dir / f"{name}.hsnap").write_bytes(data)
        return httpx.post(f"{qwen_server.base_url}/v1/sessions", json={"restore_from": name, **extra}, timeout=120)

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    header, tensors = snapfmt.decode(good)
    cases = {"truncated": (good[:len(good) - 100], 422, "corrupt or truncated"),
             "flipped": (bytes(flipped), 422, "corrupt or truncated"),
             "other-model": (snapfmt.encode({**header, "model": "another-model"}, tensors), 422, "written with model="),
             "other-dtype": (snapfmt.encode({**header, "dtype": "bfloat16"}, tensors), 422, "written with dtype="),
             "missing": (None, 404, "no snapshot")}
    open_before = {s["id"] for s in httpx.get(f"{qwen_server.base_url}/v1/sessions", timeout=60).json()["data"]}
    for name, (data, status, message) in cases.items():
        r = restore(name, data)
        assert r.status_code == status and message in r.json()["error"]["message"], (name, r.text)
    r = restore("intact", good, budget_tokens=99)
    assert r.status_code == 400 and "takes its config from the snapshot" in r.text
    open_after = {s["id"] for s in httpx.get(f"{qwen_server.base_url}/v1/sessions", timeout=60).json()["data"]}
    assert open_after == open_before  # nothing half-loaded stayed open
    r = restore("intact")  # the intact file loads
    assert r.status_code == 201, r.text
    close_session(qwen_server, r.json()["id"])
