"""The server harness never leaves a server behind: a server dies with the process that started it,
even when that process is SIGKILLed (no fixture teardown runs then)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (reaped later by init) counts as gone
        return f.read().split(")")[-1].split()[0] != "Z"


def test_a_started_server_dies_when_its_starter_is_killed(tmp_path):
    # The starter runs HermesServer.start with a stand-in command (no model needed): the harness's own
    # spawning is what is tested, through the same start() every fixture, bench and demo uses.
    starter = textwrap.dedent(f"""
        import sys
        from sglang_hermes.testing.server import HermesServer

        class Sleeper(HermesServer):
            def command(self):
                return [sys.executable, "-c", "import time; time.sleep(600)"]
            def _wait_healthy(self):
                pass

        s = Sleeper("unused", log_path={str(tmp_path / "log")!r}).start()
        print(s.proc.pid, flush=True)
        import time; time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
