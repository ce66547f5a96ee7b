"""SGLang's model gateway (``smg``, the Shepherd Model Gateway) configured for hermes streams.

A stream lives in one worker's memory, so every request about it must reach that worker. The gateway's
``consistent_hashing`` policy maps the routing key of a request (header ``X-SMG-Routing-Key``, set by
``clients.session`` to the stream id) onto a hash ring of the worker URLs: the same id always lands on
the same worker, with no routing table to lose when the gateway restarts, and adding a worker moves only
~1/N of the keys. The other settings keep the gateway from moving a stream's turns elsewhere:

- ``--disable-retries``: appends and opens are not idempotent (a retried append would add frames twice);
- ``--disable-circuit-breaker``: a client's bad request or one stream's error must not take a worker,
  and every stream on it, out of routing;
- a worker is left out only when its ``/health`` fails (a crashed worker lost its streams anyway: their
  turns then get a clear 404 from the worker their key falls to); the gateway waits for SGLang's own
  verdict (``/health`` answers once the scheduler has produced output, 503 after 20 s) instead of cutting
  it at 5 s, which a long prefill (a large append) can outlast.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from sglang_hermes.cluster.processes import free_port, spawn, stop

POLICY = "consistent_hashing"
ROUTING_HEADER = "X-SMG-Routing-Key"  # smg's default --routing-key-headers; clients.session sets it
ROUTED_WORKER_HEADER = "x-smg-routed-worker-id"  # smg's answer: the worker a request went to
DEFAULT_METRICS_PORT = 29000  # smg's own default
HEALTH_CHECK_TIMEOUT_SECONDS = 25  # SGLang's /health gives its verdict within 20 s (SGLANG_HEALTH_CHECK_TIMEOUT)
STREAM_SETTINGS = ("--policy", POLICY, "--disable-retries", "--disable-circuit-breaker",
                   "--health-check-timeout-secs", str(HEALTH_CHECK_TIMEOUT_SECONDS))


def gateway_command(worker_urls: list[str], *, host: str = "127.0.0.1", port: int = 30000,
                    metrics_port: int = DEFAULT_METRICS_PORT, extra_args: list[str] | None = None) -> list[str]:
    """``smg launch`` routing streams by id over ``worker_urls`` (``extra_args`` go to smg as they are).
    Its Prometheus metrics listen on ``host``:``metrics_port`` (two gateways on one machine need two)."""
    if not worker_urls:
        raise ValueError("a gateway needs at least one worker URL")
    return [sys.executable, "-m", "smg", "launch", "--host", host, "--port", str(port),
            "--prometheus-host", host, "--prometheus-port", str(metrics_port),
            "--worker-urls", *worker_urls, *STREAM_SETTINGS, *(extra_args or [])]


class Gateway:
    """A live ``smg`` gateway on 127.0.0.1 in front of running workers; use as a context manager."""

    def __init__(self, worker_urls: list[str], *, port: int | None = None, log_path: str | Path | None = None,
                 extra_args: list[str] | None = None, startup_timeout: float = 120.0):
        self.worker_urls = list(worker_urls)
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else Path(f"/tmp/hermes-gateway-{self.port}.log")
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Gateway":
        self._log = open(self.log_path, "w")
        self.proc = spawn(gateway_command(self.worker_urls, port=self.port, metrics_port=free_port(),
                                          extra_args=self.extra_args), stdout=self._log, cwd="/tmp")
        try:
            wait_ready(self.base_url, len(self.worker_urls), self.startup_timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self._log.close()
            self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_ready(base_url: str, workers: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Until the gateway answers and routes to ``workers`` healthy workers (it checks them itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}")
        if healthy_workers(base_url) >= workers:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the gateway at {base_url} did not route to {workers} workers in {timeout:.0f}s")


def healthy_workers(base_url: str) -> int:
    """Workers the gateway would route to now (its ``GET /workers``); 0 while it is not up."""
    try:
        r = httpx.get(f"{base_url}/workers", timeout=5)
        if r.status_code != 200:
            return 0
        return sum(1 for w in _worker_list(r.json()) if w.get("is_healthy", True))
    except (httpx.HTTPError, ValueError):
        return 0


def _worker_list(body) -> list[dict]:
    if isinstance(body, dict):
        body = body.get("workers", body.get("data", []))
    return [w for w in body if isinstance(w, dict)] if isinstance(body, list) else []
