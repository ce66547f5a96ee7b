"""Child processes that never outlive the process that started them.

A worker or gateway left running by a killed launcher (or test run) holds a port, RAM and, on a GPU
machine, a whole device: each child runs in its own process group (stopping it stops its own children,
SGLang's scheduler and detokenizer) and asks the kernel to kill it when its parent dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys


def die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL it when its parent thread dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(command: list[str], *, env: dict[str, str] | None = None, stdout=None, cwd: str | None = None
          ) -> subprocess.Popen:
    """Start ``command`` in its own process group, bound to this process's life."""
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=stdout,
                            stderr=subprocess.STDOUT if stdout is not None else None, cwd=cwd,
                            start_new_session=True, preexec_fn=die_with_parent)


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the child's process group, SIGKILL it if it is still there after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
