"""Streams kept out of the KV pool (#16 items 2 and 3), measured on one hermes-serve on the tiny Qwen2.5-VL.

1. Snapshots: size per stream, time to write one (``POST /v1/sessions/{id}/snapshot``), time to open a
   stream from it (``restore_from``) next to opening a fresh stream, side by side.
2. Idle offload: a KV pool that holds ``--resident`` streams at their worst case (admission's count:
   without offload the next open is refused with 429). With ``--hermes-offload-after``, ``--streams`` are
   opened and appended to; idle ones leave the pool (after the idle time, or at once when the pool is
   full). Reports how many are open against the pool, and the host RAM each parked one takes.
3. Resume cost: an ask on a resident stream vs an ask on an offloaded one (its memory comes back into
   the pool first), interleaved stream by stream.

    python bench/stream_memory.py [--streams 12] [--resident 2] [--budget 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import openai

from sglang_hermes.media import data_url, encode_png
from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames

MAX_CHUNK_TOKENS = 256
ASK_RESERVE = 512  # the server's default --ask-reserve-tokens (admission keeps 2x for an ask)
OFFLOAD_AFTER = 1.0


def _frames_parts(seed: int) -> list[dict]:
    return [{"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(f))}}
            for f in synthetic_frames(2, size=336, seed=seed)]


class Client:
    def __init__(self, base_url: str):
        self.base = base_url
        self.http = httpx.Client(base_url=base_url, timeout=300)
        self.oa = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=300)

    def open(self, sid: str, budget: int, **extra) -> httpx.Response:
        return self.http.post("/v1/sessions", json={"id": sid, "budget_tokens": budget, "fps": 2.0, "chunk_frames": 2,
                                                    **extra} if "restore_from" not in extra else
                              {"id": sid, **extra})

    def append(self, sid: str, seed: int) -> None:
        self.oa.chat.completions.create(model="default", messages=[{"role": "user", "content": _frames_parts(seed)}],
                                        extra_body={"session": {"id": sid, "mode": "append"}})

    def ask(self, sid: str) -> float:
        t0 = time.perf_counter()
        self.oa.chat.completions.create(model="default", messages=[{"role": "user", "content": "What moves?"}],
                                        max_tokens=4, temperature=0, extra_body={"session": {"id": sid}})
        return (time.perf_counter() - t0) * 1e3

    def state(self) -> dict:
        return self.http.get("/server_info").json()["internal_states"][0]["hermes"]


def _worst_case(model: Path, prefix_len: int, budget: int) -> int:
    """The slots admission promises one stream (``api.service._worst_case_tokens``): what the pool holds."""
    from transformers import AutoTokenizer

    from sglang_hermes.config import HermesConfig
    from sglang_hermes.layout import guidance_block

    tok = AutoTokenizer.from_pretrained(model)
    guidance = len(guidance_block(HermesConfig().prompts, None,
                                  lambda t: tok(t, add_special_tokens=False)["input_ids"]).token_ids)
    return prefix_len + budget + MAX_CHUNK_TOKENS + guidance + 2 * ASK_RESERVE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=12, help="streams to keep open with offload")
    ap.add_argument("--resident", type=int, default=2, help="streams the KV pool holds at their worst case")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--chunks", type=int, default=3, help="appends per stream (past the budget: compressed)")
    ap.add_argument("--repeats", type=int, default=5, help="snapshot/restore/open timings to take")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    out: dict = {"budget_tokens": args.budget}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_qwen2_5_vl(tmp / "qwen")
        # The worst case admission reserves per stream (prefix ~ 30 tokens, guidance block ~ 100).
        reserve_guess = 30 + args.budget + MAX_CHUNK_TOKENS + 100 + 2 * ASK_RESERVE
        pool = reserve_guess * args.resident + reserve_guess // 2
        flags = ["--enable-streaming-session", "--dtype", "float32", "--max-total-tokens", str(pool),
                 "--hermes-max-chunk-tokens", str(MAX_CHUNK_TOKENS), "--hermes-snapshot-dir", str(tmp / "snaps"),
                 "--hermes-offload-after", str(OFFLOAD_AFTER)]
        with HermesServer(model, extra_args=flags, log_path=tmp / "server.log") as server:
            c = Client(server.base_url)
            out["kv_total_slots"] = c.state()["kv_total_slots"]
            out["kv_bytes_per_token"] = c.state()["kv_bytes_per_token"]

            # 1. snapshots (one stream at a time: the pool is small)
            snap_ms, restore_ms, fresh_ms, sizes = [], [], [], []
            for i in range(args.repeats):
                sid = f"snap-{i}"
                assert c.open(sid, args.budget).status_code == 201
                for k in range(args.chunks):
                    c.append(sid, seed=100 * i + k)
                r = c.http.post(f"/v1/sessions/{sid}/snapshot")
                snap = r.json()
                sizes.append((snap["bytes"], snap["kv_tokens"]))
                snap_ms.append(snap["ms"])
                t0 = time.perf_counter()
                r = c.open(f"restored-{i}", args.budget, restore_from=sid)
                restore_ms.append((time.perf_counter() - t0) * 1e3)
                assert r.status_code == 201, r.text
                c.http.delete(f"/v1/sessions/restored-{i}")
                c.http.delete(f"/v1/sessions/{sid}")  # closing a stream removes its snapshot
                t0 = time.perf_counter()
                assert c.open(f"fresh-{i}", args.budget).status_code == 201
                fresh_ms.append((time.perf_counter() - t0) * 1e3)
                c.http.delete(f"/v1/sessions/fresh-{i}")
            out["snapshot_bytes"], out["snapshot_kv_tokens"] = sizes[-1]
            out["snapshot_write_ms"] = statistics.median(snap_ms)
            out["restore_open_ms"] = statistics.median(restore_ms)
            out["fresh_open_ms"] = statistics.median(fresh_ms)

            # 2. streams open vs the pool: every stream is appended to, then left idle; a full pool sends
            # the least recently used idle stream to host RAM instead of refusing the next one
            sids = []
            for k in range(args.streams):
                sid = f"s-{k}"
                r = c.open(sid, args.budget)
                assert r.status_code == 201, r.text
                c.append(sid, seed=k)
                sids.append(sid)
            prefix_len = min(v["prefix_len"] for v in c.state()["streams"].values())
            out["reserve_per_stream"] = _worst_case(model, prefix_len, args.budget)
            out["streams_without_offload"] = out["kv_total_slots"] // out["reserve_per_stream"]
            time.sleep(OFFLOAD_AFTER + 1.5)
            st = c.state()
            listed = c.http.get("/v1/sessions").json()["data"]
            out["streams_open_with_offload"] = len([s for s in listed if s["id"] in sids])
            out["streams_resident"] = len([s for s in sids if s in st["streams"]])
            parked = [st["parked_bytes"][s] for s in sids if s in st["parked_bytes"]]
            out["host_bytes_per_offloaded_stream"] = statistics.median(parked) if parked else None

            # 3. resume cost: ask on an offloaded stream (comes back first), then at once on the same resident one
            offloaded_ms, resident_ms = [], []
            for sid in sids:
                offloaded_ms.append(c.ask(sid))
                resident_ms.append(c.ask(sid))
                c.http.delete(f"/v1/sessions/{sid}")
            out["ask_ms_offloaded"] = statistics.median(offloaded_ms)
            out["ask_ms_resident"] = statistics.median(resident_ms)
            out["resume_ms"] = out["ask_ms_offloaded"] - out["ask_ms_resident"]
    for k, v in out.items():
        print(f"{k:<34} {v:.1f}" if isinstance(v, float) else f"{k:<34} {v}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
