"""CPU an idle hermes-serve burns, with SGLang's idle sleep (the default) and without it, side by side.

Two servers on the tiny Qwen2.5-VL run at the same time, one started with ``--hermes-busy-idle`` (the
scheduler polls its sockets without sleeping, SGLang's behaviour without ``--sleep-on-idle``). After
both are healthy and settled, the CPU seconds of every process of each server (HTTP process, scheduler,
detokenizer) are read twice, ``--seconds`` apart, with no request in between. Prints each server's
share of a core and the ratio busy / sleeping. Both servers share the machine's load, so the ratio is
fair even on a noisy machine; the absolute shares are not.

    python bench/idle_cpu.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))

from sglang_hermes.testing.server import HermesServer  # noqa: E402
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl  # noqa: E402


def cpu_seconds(server: HermesServer) -> float:
    """User + system CPU seconds of the server and all its children so far."""
    root = psutil.Process(server.proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="idle window measured")
    ap.add_argument("--settle", type=float, default=10.0, help="wait after startup before measuring")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_qwen2_5_vl(Path(tmp) / "qwen")
        servers = {"sleep-on-idle (default)": HermesServer(model, log_path=Path(tmp) / "sleep.log"),
                   "busy idle": HermesServer(model, extra_args=["--hermes-busy-idle"], log_path=Path(tmp) / "busy.log")}
        try:
            for s in servers.values():
                s.start()
            time.sleep(args.settle)
            before = {name: cpu_seconds(s) for name, s in servers.items()}
            time.sleep(args.seconds)
            share = {name: (cpu_seconds(s) - before[name]) / args.seconds for name, s in servers.items()}
        finally:
            for s in servers.values():
                s.stop()
    print(f"{'server':<26} {'idle CPU (cores)':>17}")
    for name, v in share.items():
        print(f"{name:<26} {v:>17.3f}")
    sleeping = share["sleep-on-idle (default)"]
    print(f"busy / sleep-on-idle: {share['busy idle'] / sleeping:.1f}x" if sleeping > 0 else "sleeping server used no CPU")


if __name__ == "__main__":
    main()
