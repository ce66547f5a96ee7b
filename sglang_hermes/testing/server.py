"""Start and stop a real ``hermes-serve`` process: used by the test fixtures, the demo and bench/.

The server runs in its own process group so that stopping it also stops SGLang's scheduler and
detokenizer children, even when the test that started it failed. It also dies with the process that
started it (Linux parent-death signal): a killed pytest run must not leave servers spinning, and
SGLang's own children already die with the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sglang_hermes.cluster.processes import die_with_parent as _die_with_parent
from sglang_hermes.cluster.processes import free_port


class HermesServer:
    """A live ``hermes-serve`` on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        extra_args: list[str] | None = None,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 300.0,
    ):
        self.model_path = str(model_path)
        self.port = free_port()
        self.extra_args = list(extra_args or [])
        self.log_path = Path(log_path) if log_path else Path(f"/tmp/hermes-serve-{self.port}.log")
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "sglang_hermes.launch_server",
            "--model-path", self.model_path,
            "--host", "127.0.0.1", "--port", str(self.port),
            *self.extra_args,
        ]

    def start(self) -> "HermesServer":
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "w")
        t0 = time.monotonic()
        # Run from a neutral folder: a checkout's sglang_hermes/ next to cwd would shadow nothing here
        # (we are installed editable), but SGLang writes caches relative to cwd.
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, cwd="/tmp", preexec_fn=_die_with_parent,
        )
        self._wait_healthy()
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hermes-serve exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"hermes-serve not healthy in {self.startup_timeout}s; log:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self._log.close()
        self.proc = None

    def __enter__(self) -> "HermesServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
