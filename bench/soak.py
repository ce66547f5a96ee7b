"""Soak: several streams appending and asking for minutes while faults are fired back to back.

One client thread per stream drives it through the session API (the ``openai`` client, raw HTTP for
the faults) on loopback, picking each next step at random (seeded): a normal append or question, or a
fault: an SSE ask abandoned mid-answer, a non-streamed ask abandoned mid-answer, an append cancelled
mid-flight, a DELETE while an append runs (the stream is then replaced by a new one), a stream left
to expire by its TTL, a question and a system prompt spelling the model's special tokens, and hostile
sampling values. Each fault is followed at once by a normal turn on the same stream, which must work.

Checked, and reported: the server never crashes (health, its log, its process); no legal request
fails; every stream stays within prefix + budget; after every stream is closed the KV pool is back to
where it started (no leaked slot); the server's resident memory (RSS of its process tree) at the start
and the end of the run. Exits 1 if a check fails.

    python bench/soak.py                  # the documented run: 4 streams x 5 minutes, tiny model
    python bench/soak.py --smoke          # 3 streams x 1 minute, for the test suite
    python bench/soak.py --base-url http://127.0.0.1:30000 [--server-pid PID]   # a running server

Hostile sampling values include the ones that used to kill the scheduler (top_k 2**40 or 1e308, top_p "x",
stop 5): the edge layer refuses them with 400 now (issue #17 item 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sglang_hermes.testing.server import HermesServer  # noqa: E402

SPECIAL = "<|vision_start|><|video_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"
FRAMES_PER_APPEND = 2
BUDGET = 48
LONG_ANSWER = 2000  # tokens of an abandoned ask: far longer than the fault lets it run
SAMPLING_REFUSED = ({"temperature": -1}, {"temperature": "hot"}, {"max_tokens": -5})
SAMPLING_EXTREME = ({"top_k": 2 ** 40}, {"top_p": "x"}, {"stop": 5}, {"top_k": 1e308})
CRASH_MARKS = ("Scheduler hit an exception", "SIGQUIT received", "Traceback (most recent call last)")

FAULTS = ("sse_disconnect", "json_disconnect", "cancelled_append", "delete_during_append", "ttl_expiry",
          "special_tokens", "hostile_sampling")


@dataclass
class Tally:
    """What every thread saw, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    turns: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)      # legal requests that failed, with why
    over_budget: list = field(default_factory=list)

    def turn(self, kind: str) -> None:
        with self.lock:
            self.turns[kind] += 1

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


class Driver:
    """One stream's client thread."""

    def __init__(self, base: str, index: int, deadline: float, tally: Tally, args):
        self.base, self.deadline, self.tally, self.args = base, deadline, tally, args
        self.rng = random.Random(args.seed * 1000 + index)
        self.http = httpx.Client(base_url=base, timeout=300)
        self.chunks = [C.image_parts(C.frames(FRAMES_PER_APPEND, args, seed=100 * index + k)) for k in range(8)]
        self.sid = self.open()
        self.appended = 0

    # -- turns ------------------------------------------------------------------------------------

    def open(self, **extra) -> str:
        r = self.http.post("/v1/sessions", json={"budget_tokens": BUDGET, "chunk_frames": 8, **extra})
        if r.status_code != 201:
            raise RuntimeError(f"open failed: {r.status_code} {r.text}")
        return r.json()["id"]

    def chat_body(self, content, *, sid: str | None = None, mode: str = "ask", **extra) -> dict:
        return {"model": "default", "messages": [{"role": "user", "content": content}],
                "session": {"id": sid or self.sid, "mode": mode}, **extra}

    def append(self, sid: str | None = None) -> None:
        parts = self.chunks[self.appended % len(self.chunks)]
        r = self.http.post("/v1/chat/completions", json=self.chat_body(parts, sid=sid, mode="append"))
        self.expect(r, 200, "append")
        self.appended += 1
        self.tally.turn("append")

    def ask(self, question: str = "What happens?", *, streamed: bool | None = None) -> None:
        streamed = self.rng.random() < 0.5 if streamed is None else streamed
        body = self.chat_body(question, max_tokens=self.rng.randint(2, 12), temperature=0, stream=streamed)
        if streamed:
            with self.http.stream("POST", "/v1/chat/completions", json=body) as r:
                text = "".join(r.iter_text())
            ok = r.status_code == 200 and "[DONE]" in text and '"error"' not in text
            if not ok:
                self.tally.error(f"streamed ask: {r.status_code} {text[-300:]}")
        else:
            self.expect(self.http.post("/v1/chat/completions", json=body), 200, "ask")
        self.tally.turn("ask")

    def expect(self, r: httpx.Response, status: int, what: str) -> None:
        if r.status_code != status:
            self.tally.error(f"{what}: {r.status_code} {r.text[:300]}")

    # -- faults -----------------------------------------------------------------------------------

    def sse_disconnect(self) -> None:
        body = self.chat_body("Describe everything.", max_tokens=LONG_ANSWER, temperature=0, stream=True)
        with self.http.stream("POST", "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break  # leave mid-answer: the connection closes here

    def json_disconnect(self) -> None:
        body = self.chat_body("Describe everything.", max_tokens=LONG_ANSWER, temperature=0)
        with contextlib.suppress(httpx.TimeoutException):
            self.http.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(300, read=1.0))

    def cancelled_append(self) -> None:
        parts = self.chunks[self.appended % len(self.chunks)]
        with contextlib.suppress(httpx.TimeoutException):
            self.http.post("/v1/chat/completions", json=self.chat_body(parts, mode="append"),
                           timeout=self.rng.uniform(0.02, 0.4))

    def delete_during_append(self) -> None:
        doomed = self.sid
        worker = threading.Thread(target=lambda: self.http.post(
            "/v1/chat/completions", json=self.chat_body(self.chunks[0], sid=doomed, mode="append")))
        worker.start()
        time.sleep(self.rng.uniform(0.0, 0.3))
        self.expect(self.http.delete(f"/v1/sessions/{doomed}"), 200, "delete")
        worker.join()
        self.expect(self.http.get(f"/v1/sessions/{doomed}"), 404, "deleted stream")
        self.sid = self.open()

    def ttl_expiry(self) -> None:
        sid = self.open(ttl_seconds=1)
        self.append(sid)
        time.sleep(2.5)  # the reaper runs every second
        self.expect(self.http.get(f"/v1/sessions/{sid}"), 404, "expired stream")

    def special_tokens(self) -> None:
        if self.rng.random() < 0.3:  # a stream opened with special tokens in its system prompt replaces this one
            self.http.delete(f"/v1/sessions/{self.sid}")
            self.sid = self.open(system_prompt=f"Be brief. {SPECIAL}")
            self.append()
        self.ask(f"Is {SPECIAL} in the video?")

    def hostile_sampling(self) -> None:
        values = SAMPLING_REFUSED + SAMPLING_EXTREME
        bad = self.rng.choice(values)
        r = self.http.post("/v1/chat/completions", json=self.chat_body("What happens?", **bad))
        self.expect(r, 400, f"hostile sampling {bad}")

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.append()
            while time.monotonic() < self.deadline:
                roll = self.rng.random()
                if roll < 0.35:
                    self.append()
                elif roll < 0.5:
                    self.ask()
                else:
                    fault = self.rng.choice(FAULTS)
                    getattr(self, fault)()
                    self.tally.fault(fault)
                    self.append()  # straight after the fault: the stream must take it
                    self.ask(streamed=False)
        except Exception as e:  # a dead server shows here (connection refused ...)
            self.tally.error(f"driver: {type(e).__name__}: {e}")
        finally:
            with contextlib.suppress(httpx.HTTPError):
                self.http.delete(f"/v1/sessions/{self.sid}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(ap)
    ap.add_argument("--streams", type=int, default=None, help="streams driven at once (default 4; smoke 3)")
    ap.add_argument("--minutes", type=float, default=None, help="how long faults are fired (default 5; smoke 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.frame_side = args.frame_side or C.SMOKE_FRAME  # the tiny model always: fast turns, many faults
    n_streams = args.streams or (3 if args.smoke else 4)
    minutes = args.minutes or (1.0 if args.smoke else 5.0)

    with contextlib.ExitStack() as stack:
        if args.base_url:
            base, pid, server = args.base_url.rstrip("/").removesuffix("/v1"), args.server_pid, None
        else:
            cache = Path(args.cache_dir).resolve()
            server = stack.enter_context(HermesServer(
                C.model_dir(cache, True), log_path=cache / "soak-server.log", startup_timeout=900,
                extra_args=[*C.server_args(32768, 1024), "--hermes-max-media-bytes", str(8 << 20)]))
            base, pid = server.base_url, server.proc.pid
        result = soak(base, pid, server, n_streams, minutes, args)
    print(json.dumps({k: v for k, v in result.items() if k != "errors"}, indent=1))
    for e in result["errors"][:20]:
        print("  error:", e)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


def soak(base: str, pid: int | None, server: HermesServer | None, n_streams: int, minutes: float, args) -> dict:
    http = httpx.Client(base_url=base, timeout=60)
    state = lambda: http.get("/server_info").json()["internal_states"][0]["hermes"]  # noqa: E731
    pool_start = _settled(lambda: state()["kv_available_slots"])
    log_start = len(server.log_text()) if server is not None else 0
    tally = Tally()
    deadline = time.monotonic() + 60 * minutes
    drivers = [Driver(base, i, deadline, tally, args) for i in range(n_streams)]
    rss_start = C.process_tree_rss(pid) if pid else None
    rss_peak = rss_start or 0
    threads = [threading.Thread(target=d.run) for d in drivers]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            for sid, s in state()["streams"].items():
                if s["candidates"] > s["budget"] and s["policy"] != "full":
                    tally.over_budget.append((sid, s["candidates"], s["budget"]))
        if pid:
            rss_peak = max(rss_peak, C.process_tree_rss(pid))
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    alive = _healthy(http) and (server is None or server.proc.poll() is None)
    pool_end = _settled(lambda: state()["kv_available_slots"]) if alive else None
    rss_end = C.process_tree_rss(pid) if pid and alive else None
    log = server.log_text()[log_start:] if server is not None else ""
    crashes = sum(log.count(m) for m in CRASH_MARKS[:2]) + (0 if alive else 1)
    result = {
        "streams": n_streams, "minutes": round(elapsed / 60, 2), "turns": dict(tally.turns),
        "faults": dict(tally.faults), "faults_total": sum(tally.faults.values()),
        "crashes": crashes, "tracebacks_in_log": log.count(CRASH_MARKS[2]),
        "failed_legal_requests": len(tally.errors), "errors": tally.errors,
        "over_budget": len(tally.over_budget),
        "pool_slots_start": pool_start, "pool_slots_end": pool_end,
        "leaked_slots": None if pool_end is None else pool_start - pool_end,
        "rss_start_mb": _mb(rss_start), "rss_peak_mb": _mb(rss_peak if pid else None), "rss_end_mb": _mb(rss_end),
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 1) if rss_start and rss_end else None,
        "machine": C.machine(),
    }
    result["ok"] = bool(alive and crashes == 0 and not tally.errors and not tally.over_budget
                        and result["leaked_slots"] == 0)
    return result


def _settled(read, timeout: float = 20.0):
    """A reading that stopped moving: frees land at the scheduler's next step."""
    last, end = read(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.5)
        now = read()
        if now == last:
            return now
        last = now
    return last


def _healthy(http: httpx.Client) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return http.get("/health").status_code == 200
    return False


def _mb(x: int | None) -> float | None:
    return None if x is None else round(x / 2 ** 20, 1)


if __name__ == "__main__":
    sys.exit(main())
