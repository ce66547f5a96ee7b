"""Streams through SGLang's model gateway (``smg``) in front of two hermes-serve workers.

The deployment is the documented one, ``hermes-cluster`` (one new worker started with the session
server's flags, the session server itself added with ``--worker-url``, and the real ``smg`` binary in
front), driven by the real client in gateway mode. The gateway names the worker each request went to
(``x-smg-routed-worker-id``): every request of a stream must name the same one. The oracle for the
answers is the same stream run directly on one server (the session server, no gateway): greedy
answers, per-append stats and kept positions must be identical.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import httpx
import openai
import pytest

from clients import HermesClient
from sglang_hermes.cluster.gateway import ROUTED_WORKER_HEADER, ROUTING_HEADER, Gateway, healthy_workers
from sglang_hermes.cluster.processes import free_port, spawn, stop

from .streams import MAX_TOKENS, QUESTIONS, chunks, stream_state

pytestmark = pytest.mark.server

BUDGET = 40
OPTIONS = dict(budget_tokens=BUDGET, fps=2.0, chunk_frames=2)
CLUSTER_STARTUP_SECONDS = 900.0
# Stream state fields that depend on timing or request ids, not on what the stream holds (and the float
# attention scores, compared through the positions they keep).
VOLATILE = {"last_turn_rid", "last_compression_ms", "last_append_ms", "turn_in_flight", "last_attention"}


@pytest.fixture(scope="module")
def cluster(qwen_server, qwen_dir, tmp_path_factory):
    """``hermes-cluster --workers 1 --worker-url <session server>``: two workers behind the gateway."""
    log_dir = tmp_path_factory.mktemp("cluster")
    port = free_port()
    command = [sys.executable, "-m", "sglang_hermes.cluster.launch", "--workers", "1", "--port", str(port),
               "--metrics-port", str(free_port()),
               "--worker-base-port", str(free_port()), "--worker-url", qwen_server.base_url,
               "--log-dir", str(log_dir), "--", "--model-path", str(qwen_dir), *qwen_server.extra_args]
    with open(log_dir / "launcher.log", "w") as log:
        proc = spawn(command, env=qwen_server.env, stdout=log, cwd="/tmp")
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + CLUSTER_STARTUP_SECONDS
            while healthy_workers(url) < 2:
                assert proc.poll() is None, (log_dir / "launcher.log").read_text()
                assert time.monotonic() < deadline, "the cluster did not start"
                time.sleep(1)
            workers = [qwen_server.base_url, *(u for u in _worker_urls(url) if u != qwen_server.base_url)]
            yield SimpleNamespace(url=url, workers=workers, proc=proc, log_dir=log_dir)
        finally:
            stop(proc)


def _worker_urls(gateway_url: str) -> list[str]:
    return [w["url"] for w in httpx.get(f"{gateway_url}/workers", timeout=10).json()["workers"]]


class Routes:
    """Every response seen by a client: (routing key sent, worker the gateway named)."""

    def __init__(self):
        self.seen: list[tuple[str | None, str | None]] = []

    def __call__(self, response: httpx.Response) -> None:
        self.seen.append((response.request.headers.get(ROUTING_HEADER), response.headers.get(ROUTED_WORKER_HEADER)))

    def workers_of(self, stream_id: str) -> set[str | None]:
        return {w for key, w in self.seen if key == stream_id}


def _gateway_client(cluster, routes: Routes) -> HermesClient:
    http = httpx.Client(timeout=300, event_hooks={"response": [routes]})
    return HermesClient(f"{cluster.url}/v1", gateway=True, max_retries=0, timeout=300, http_client=http)


def _run(stream, server_url: str, video) -> dict:
    """Appends and questions (streamed and not); the holder's view of the stream after each append."""
    states, stats, answers = [], [], []
    for i, chunk in enumerate(video):
        r = stream.append(chunk)
        stats.append({k: r.stats[k] for k in ("frames", "chunks", "tokens_seen", "tokens_held", "compressions")})
        state = stream_state(SimpleNamespace(base_url=server_url), stream.id)
        states.append({k: v for k, v in state.items() if k not in VOLATILE})
        if i == 1:
            answers.append(stream.ask(QUESTIONS[0], max_tokens=MAX_TOKENS, temperature=0).text)
    answers.append(stream.ask(QUESTIONS[1], max_tokens=MAX_TOKENS, temperature=0, stream=False).text)
    return {"states": states, "stats": stats, "answers": answers}


def test_each_stream_stays_on_one_worker_and_answers_as_one_server(cluster, qwen_server):
    routes = Routes()
    hc = _gateway_client(cluster, routes)
    # Open streams until each worker holds one (the hash ring decides where; 16 ids leave a 2**-15 chance
    # that all land on one of two workers).
    held: dict[str, object] = {}
    extra = []
    for k in range(16):
        s = hc.open_stream(id=f"gw-{k}", **OPTIONS)
        (worker,) = routes.workers_of(s.id)
        if worker in held:
            extra.append(s)
        else:
            held[worker] = s
        if len(held) == 2:
            break
    for s in extra:
        s.close()
    assert set(held) == set(cluster.workers), routes.seen

    # A second gateway, started now over the same workers, routes each stream to its worker too: the
    # placement is a function of the id and the worker URLs, not a table the first gateway keeps.
    fresh_routes = Routes()
    with Gateway(cluster.workers, log_path=cluster.log_dir / "fresh-gateway.log") as fresh:
        fresh_client = _gateway_client(SimpleNamespace(url=fresh.base_url), fresh_routes)
        for worker, stream in held.items():
            assert fresh_client.stats(stream.id)["id"] == stream.id
            assert fresh_routes.workers_of(stream.id) == {worker}

    direct = HermesClient(f"{qwen_server.base_url}/v1", max_retries=0, timeout=300)
    for n, (worker, stream) in enumerate(held.items()):
        video = chunks("qwen", n=3, seed=30 + n)
        got = _run(stream, worker, video)
        with direct.open_stream(id=f"oracle-{stream.id}", **OPTIONS) as oracle:
            want = _run(oracle, qwen_server.base_url, video)
        assert got == want, worker
        assert any(s["compressions"] for s in got["stats"])  # the budget was reached: HERMES compressed

        # Every request about the stream went to the worker that holds it; the other has never seen it.
        assert routes.workers_of(stream.id) == {worker}
        other = next(w for w in cluster.workers if w != worker)
        assert httpx.get(f"{worker}/v1/sessions/{stream.id}", timeout=60).json()["chunks"] == 3
        assert httpx.get(f"{other}/v1/sessions/{stream.id}", timeout=60).status_code == 404
        assert stream.stats()["chunks"] == 3
        stream.close()
        assert httpx.get(f"{worker}/v1/sessions/{stream.id}", timeout=60).status_code == 404
        assert routes.workers_of(stream.id) == {worker}


def test_errors_cross_the_gateway_as_openai_errors(cluster):
    hc = _gateway_client(cluster, Routes())
    with pytest.raises(openai.NotFoundError):
        hc.stream("gw-never-opened").ask("hi?", max_tokens=2)
    with hc.open_stream(id="gw-twice", **OPTIONS):
        with pytest.raises(openai.ConflictError):
            hc.open_stream(id="gw-twice")
    assert hc.close_stream("gw-twice") is False  # closed on leaving the block
    with pytest.raises(openai.BadRequestError, match="budget_tokens"):
        hc.open_stream(id="gw-bad", budget_tokens=0)
