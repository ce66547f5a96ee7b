"""Session-wide fixtures: tiny checkpoints built once, and real hermes-serve processes on them."""

from __future__ import annotations

import openai
import pytest

from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.tiny_models import (build_tiny_gemma3, build_tiny_llava_onevision, build_tiny_qwen2_5_vl,
                                               build_tiny_qwen3_vl)


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


# Session API limits of the test servers: one append adds at most 1024 vision tokens and 4 MiB of media.
API_LIMITS = ("--hermes-max-chunk-tokens", "1024", "--hermes-max-media-bytes", str(4 << 20))
# Qwen3-VL's server prefills in chunks of this many tokens (see qwen3_server).
QWEN3_PREFILL_CHUNK = "48"
# Media fetch limits of the session API's server: deadlines short enough for tests of hostile URLs to be quick.
FETCH_LIMITS = {"url_deadline": 2.0, "append_deadline": 3.0, "server_fetches": 6, "stream_fetches": 2}
FETCH_ARGS = ("--hermes-fetch-deadline", str(FETCH_LIMITS["url_deadline"]),
              "--hermes-append-deadline", str(FETCH_LIMITS["append_deadline"]),
              "--hermes-fetch-concurrency", str(FETCH_LIMITS["server_fetches"]),
              "--hermes-stream-fetch-concurrency", str(FETCH_LIMITS["stream_fetches"]))


def _serve(model_dir, tmp_path_factory, name: str, *extra: str, env: dict | None = None,
           startup_timeout: float = 300.0):
    """A real hermes-serve on a tiny model for the whole session, float32 for exact comparisons;
    it publishes every stream's kept positions so tests can compare them with the HF reference."""
    log = tmp_path_factory.mktemp("logs") / f"{name}-server.log"
    server = HermesServer(model_dir, log_path=log,
                          extra_args=["--enable-streaming-session", "--dtype", "float32", *extra],
                          env={"SGLANG_HERMES_EXPOSE_POSITIONS": "1", **(env or {})}, startup_timeout=startup_timeout)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory):
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory):
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory):
    return build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny-llava-onevision"))


@pytest.fixture(scope="session")
def llava_server(llava_dir, tmp_path_factory):
    """LLaVA-OneVision (Qwen2 LM, 1D RoPE), served by SGLang's transformers backend (no native model)."""
    yield from _serve(llava_dir, tmp_path_factory, "llava", "--enable-multimodal")


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory):
    """The stream snapshot directory the session API's servers share (as workers of one deployment would)."""
    return tmp_path_factory.mktemp("snapshots")


@pytest.fixture(scope="session")
def qwen_server(qwen_dir, tmp_path_factory, snapshot_dir):
    """Also the session API's server: metrics on, limits small enough for tests to reach, snapshots in
    ``snapshot_dir``, and the test fault switch (a request whose id names a hook point raises in that
    hook: runtime.turn_faults)."""
    yield from _serve(qwen_dir, tmp_path_factory, "qwen", "--enable-metrics", *API_LIMITS, *FETCH_ARGS,
                      "--hermes-snapshot-dir", str(snapshot_dir), env={"SGLANG_HERMES_TEST_FAULTS": "1"})


@pytest.fixture(scope="session")
def gemma_server(gemma_dir, tmp_path_factory):
    """The 1D-RoPE model (Gemma 3); SGLang disables its multimodal path unless asked."""
    yield from _serve(gemma_dir, tmp_path_factory, "gemma", "--enable-multimodal")


@pytest.fixture(scope="session")
def qwen3_server(qwen3_dir, tmp_path_factory):
    """Qwen3-VL (interleaved M-RoPE, timestamped frames, DeepStack), the one server of every Qwen3-VL test.
    Prefill in chunks of 48 tokens: a 2-frame append (30 tokens + a ~70-token guidance block) spans
    several forwards, so every Qwen3-VL oracle also covers DeepStack and timestamps split across them."""
    yield from _serve(qwen3_dir, tmp_path_factory, "qwen3", "--chunked-prefill-size", QWEN3_PREFILL_CHUNK,
                      startup_timeout=600.0)


@pytest.fixture(scope="session")
def qwen_chunked_server(qwen_dir, tmp_path_factory):
    """Prefill in chunks of 128 tokens: an append spans several forwards (its guidance block split
    across them), and an abort can land between two of them (otherwise an append is one forward)."""
    yield from _serve(qwen_dir, tmp_path_factory, "qwen-chunked", "--chunked-prefill-size", "128")


@pytest.fixture(scope="module")  # one test module uses it: stopped after it (RAM)
def text_only_server(gemma_dir, tmp_path_factory):
    """Gemma 3 with SGLang's multimodal path off (its default): a model without vision input."""
    yield from _serve(gemma_dir, tmp_path_factory, "gemma-text-only")


@pytest.fixture(scope="module")  # one test module uses it: stopped after it (RAM)
def qwen_triton_server(qwen_dir, tmp_path_factory):
    """The same model with every hermes kernel forced onto Triton (interpreted on CPU)."""
    yield from _serve(qwen_dir, tmp_path_factory, "qwen-triton",
                      env={"HERMES_FORCE_TRITON": "1", "TRITON_INTERPRET": "1"})


@pytest.fixture(scope="session")
def qwen_client(qwen_server):
    return _client(qwen_server)


@pytest.fixture(scope="session")
def qwen3_client(qwen3_server):
    return _client(qwen3_server)


@pytest.fixture(scope="session")
def gemma_client(gemma_server):
    return _client(gemma_server)


@pytest.fixture(scope="module")  # one test module uses it: stopped after it (RAM)
def qwen_dp2_server(qwen_dir, tmp_path_factory):
    """Two data-parallel ranks (two schedulers, two KV pools) on SGLang's CPU engine, one core each."""
    yield from _serve(qwen_dir, tmp_path_factory, "qwen-dp2", "--dp-size", "2",
                      env={"SGLANG_CPU_OMP_THREADS_BIND": "0|1"}, startup_timeout=900.0)  # two schedulers start


def _session_servers(item) -> list[str]:
    """The session-scoped ``*_server`` fixtures a test uses: those it names (directly or through other
    fixtures) and those it looks up by its parameters (``request.getfixturevalue(f"{arch}_server")``
    with ``arch`` a parameter: the convention of the tests parametrized by architecture)."""
    manager = item.session._fixturemanager
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names |= {f"{value}_server" for value in callspec.params.values() if isinstance(value, str)}
    servers = []
    for name in names:
        if not name.endswith("_server"):
            continue
        defs = manager.getfixturedefs(name, item)
        if defs and defs[-1].scope == "session":
            servers.append(name)
    return sorted(servers)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups off the tests
def pytest_collection_modifyitems(config, items):
    """Run in parallel without starting a server twice: ``make test`` runs two pytest-xdist workers
    (``--dist loadgroup``), and every session fixture lives once per worker. So every test that uses a
    session-scoped server goes to the group of that server, and tests that use two servers tie their
    groups together. Tests without a server that share a module-scoped fixture (a side server, a batch of
    process starts) stay on one worker too, grouped by module; the rest are spread freely. A group runs
    on one worker, in order."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    uses = [(item, _session_servers(item)) for item in items]
    for _, servers in uses:
        for other in servers[1:]:
            parent[root(other)] = root(servers[0])
    for item, servers in uses:
        if servers:
            item.add_marker(pytest.mark.xdist_group(root(servers[0])))
        elif _shares_a_wider_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _shares_a_wider_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(defs[-1].scope in ("module", "package", "class")
                                    for defs in info.name2fixturedefs.values() if defs)
