"""``hermes-cluster``: N hermes-serve workers and SGLang's model gateway in front of them, in one command.

    hermes-cluster --workers 2 --port 30000 -- --model-path Qwen/Qwen2.5-VL-7B-Instruct

Everything after ``--`` is passed to every worker as it is (any ``hermes-serve`` flag); the launcher
gives each worker its port (``--worker-base-port`` + i) and, with ``--gpus-per-worker``, its own GPUs.
``--worker-url`` adds servers already running (on this machine or another) to the gateway. Clients
talk to the gateway's port with ``HermesClient(gateway=True)`` (see ``sglang_hermes.cluster.gateway``
for how a stream's requests stay on its worker).

The launcher stays in the foreground; Ctrl-C, SIGTERM or the exit of any worker or of the gateway
stops them all (and they die with it if it is killed).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from sglang_hermes.cluster.gateway import DEFAULT_METRICS_PORT, gateway_command, wait_ready
from sglang_hermes.cluster.processes import spawn, stop

WORKER_HEALTH_TIMEOUT = 1800.0  # the gateway's own default wait for workers (large models load slowly)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        at = argv.index("--")
        argv, serve_args = argv[:at], argv[at + 1:]
    else:
        serve_args = []
    p = argparse.ArgumentParser(prog="hermes-cluster", description=__doc__.split("\n\n")[0],
                                epilog="Flags after -- go to every hermes-serve worker.")
    p.add_argument("--workers", type=int, default=2, help="hermes-serve processes to start (default 2)")
    p.add_argument("--host", default="127.0.0.1", help="address the gateway listens on")
    p.add_argument("--port", type=int, default=30000, help="the gateway's port: the one clients use")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help="the gateway's Prometheus metrics port (on --host)")
    p.add_argument("--worker-host", default="127.0.0.1", help="address the workers listen on")
    p.add_argument("--worker-base-port", type=int, default=31000, help="worker i listens on this + i")
    p.add_argument("--worker-url", action="append", default=[], metavar="URL",
                   help="a hermes-serve already running, routed to as well (repeatable)")
    p.add_argument("--gpus-per-worker", type=int, default=0,
                   help="give worker i the GPUs i*K .. i*K+K-1 (CUDA_VISIBLE_DEVICES); 0 leaves it unset")
    p.add_argument("--log-dir", type=Path, help="write worker-<i>.log and gateway.log here (default: this terminal)")
    p.add_argument("--gateway-args", default="", help="more smg flags, one shell-quoted string")
    p.add_argument("--startup-timeout", type=float, default=WORKER_HEALTH_TIMEOUT,
                   help="seconds to wait for every worker to be healthy behind the gateway")
    args = p.parse_args(argv)
    if args.workers < 0 or (args.workers == 0 and not args.worker_url):
        p.error("--workers must be >= 1 (or 0 with --worker-url)")
    if any(a == "--port" or a.startswith("--port=") or a == "--host" or a.startswith("--host=")
           for a in serve_args):
        p.error("worker ports and hosts are set by the launcher (--worker-base-port, --worker-host)")
    if args.workers and not any(a == "--model-path" or a.startswith("--model-path=") for a in serve_args):
        p.error("pass the workers' model after --, e.g. -- --model-path Qwen/Qwen2.5-VL-7B-Instruct")
    return args, serve_args


def worker_command(serve_args: list[str], host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "sglang_hermes.launch_server", *serve_args, "--host", host, "--port", str(port)]


def worker_env(i: int, gpus_per_worker: int) -> dict[str, str]:
    if gpus_per_worker <= 0:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i * gpus_per_worker + g) for g in range(gpus_per_worker))}


def main(argv: list[str] | None = None) -> int:
    args, serve_args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)

    def log(name: str):
        return open(args.log_dir / f"{name}.log", "w") if args.log_dir else None

    procs: dict[str, subprocess.Popen] = {}
    urls = list(args.worker_url)
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for i in range(args.workers):
            port = args.worker_base_port + i
            procs[f"worker {i}"] = spawn(worker_command(serve_args, args.worker_host, port),
                                         env=worker_env(i, args.gpus_per_worker), stdout=log(f"worker-{i}"))
            urls.append(f"http://{args.worker_host}:{port}")
        procs["gateway"] = spawn(gateway_command(urls, host=args.host, port=args.port, metrics_port=args.metrics_port,
                                                 extra_args=shlex.split(args.gateway_args)), stdout=log("gateway"))
        gateway_url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
        _wait_ready(gateway_url, len(urls), args.startup_timeout, procs, lambda: stopping)
        print(f"[hermes-cluster] ready: {len(urls)} workers behind the gateway at {gateway_url}/v1 "
              f"({', '.join(urls)})", flush=True)
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"[hermes-cluster] {name} exited with {proc.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for proc in reversed(list(procs.values())):  # the gateway first: no request reaches a stopping worker
            stop(proc)


def _wait_ready(gateway_url: str, workers: int, timeout: float, procs: dict, stopped) -> None:
    deadline = time.monotonic() + timeout
    while not stopped():
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"[hermes-cluster] {name} exited with {proc.returncode} while starting")
        try:
            wait_ready(gateway_url, workers, min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise SystemExit(f"[hermes-cluster] not every worker was healthy after {timeout:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
