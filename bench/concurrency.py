"""Several live streams at once: aggregate ingest rate, ask TTFT under load, memory, budgets kept.

One hermes-serve. For each level S in --streams (1, 2, 4, 8), S HERMES streams (--budget tokens each,
each its own synthetic video) are opened and driven by one client thread per stream, all starting
together: append --chunks chunks of 16 frames (1 fps) back to back, and after every --ask-every-th
chunk ask a streamed question (TTFT = time to the first non-empty answer delta) while the other
streams keep appending. SGLang's scheduler batches the streams' appends and asks together.

Per level: aggregate frames/s (all frames appended / wall time of the level), p50 and p95 of the
append latency and of the ask TTFT over all streams, the server's resident memory (RSS of the process
tree, peak sampled every 0.25 s) and the KV bytes the streams hold, and whether every stream stayed
within prefix + budget after every append. Streams are closed between levels.

    python bench/concurrency.py            # the documented run: 1, 2, 4, 8 streams x 12 chunks, bench model, ~1.5 min
    python bench/concurrency.py --smoke    # tiny model, 1 and 2 streams x 3 chunks, for the test suite
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(ap)
    ap.add_argument("--streams", default=None, help="levels, comma-separated (default 1,2,4,8; smoke 1,2)")
    ap.add_argument("--chunks", type=int, default=None, help="16-frame chunks per stream (default 12; smoke 3)")
    ap.add_argument("--ask-every", type=int, default=None, help="ask after every k-th chunk (default 3; smoke 1)")
    ap.add_argument("--budget", type=int, default=None, help="tokens kept per stream (default 512; smoke 256)")
    ap.add_argument("--policy", default="hermes", help="policy of the streams (hermes; fifo etc. for comparison)")
    ap.add_argument("--max-tokens", type=int, default=4, help="answer length of each question")
    ap.add_argument("--max-total-tokens", type=int, default=32768, help="KV pool of the server it starts")
    ap.add_argument("--plot", default=None, help="PNG path (default next to the JSON)")
    args = ap.parse_args(argv)
    levels = [int(x) for x in (args.streams or ("1,2" if args.smoke else "1,2,4,8")).split(",")]
    n_chunks = args.chunks or (3 if args.smoke else 12)
    ask_every = args.ask_every or (1 if args.smoke else 3)
    budget = args.budget or (256 if args.smoke else 512)

    t_start = time.perf_counter()
    videos = [C.chunked_parts(C.frames(n_chunks * C.CHUNK_FRAMES, args, seed=10 + s)) for s in range(max(levels))]
    rows = []
    with C.serve(args, max_total_tokens=args.max_total_tokens) as target:
        api = C.Api(target)
        api.warm_up(videos[0][0])
        model = C.model_info(args, api)
        for level in levels:
            row = run_level(api, level, videos, n_chunks, ask_every, budget, args)
            rows.append(row)
            print(f"  {level} stream(s): {row['frames_per_s']:.1f} frames/s, ask TTFT p50 "
                  f"{C.fmt(row['ttft_p50_ms'], '.0f')} ms, p95 {C.fmt(row['ttft_p95_ms'], '.0f')} ms, "
                  f"within budget: {row['within_budget']}", flush=True)
        startup = target.startup_seconds
    elapsed = time.perf_counter() - t_start

    base = rows[0]
    for r in rows:
        r["speedup"] = r["frames_per_s"] / base["frames_per_s"]
    summary = {"all_within_budget": all(r["within_budget"] for r in rows),
               "frames_per_s": {r["streams"]: r["frames_per_s"] for r in rows},
               "ttft_p95_ms": {r["streams"]: r["ttft_p95_ms"] for r in rows},
               "errors": sum(r["errors"] for r in rows)}
    print_report(rows, summary, budget, args.policy)
    out_json = C.write_json(args.json_path, "concurrency", {
        "script": "concurrency.py", "argv": sys.argv[1:] if argv is None else argv, "smoke": args.smoke,
        "model": model,
        "machine": C.machine(), "policy": args.policy, "budget_tokens": budget, "chunks_per_stream": n_chunks,
        "ask_every": ask_every, "chunk_frames": C.CHUNK_FRAMES, "fps": C.FPS, "frame_side": C.frame_side(args),
        "max_tokens": args.max_tokens, "server_startup_s": startup, "elapsed_s": elapsed, "rows": rows,
        "summary": summary}, args.smoke)
    png = Path(args.plot) if args.plot else out_json.with_suffix(".png")
    xs = [r["streams"] for r in rows]
    drew = C.plot(png, [
        C.Panel("Aggregate ingest rate", "concurrent streams", "frames/s (all streams)",
                {"frames/s": list(zip(xs, [r["frames_per_s"] for r in rows]))}, logx=True),
        C.Panel("Ask TTFT while all streams append", "concurrent streams", "ms",
                {"p50": list(zip(xs, [r["ttft_p50_ms"] for r in rows])),
                 "p95": list(zip(xs, [r["ttft_p95_ms"] for r in rows]))}, logx=True),
    ])
    print(f"\nwrote {out_json} and {png} ({drew}); {elapsed:.0f} s in all, {C.startup_note(startup)};\n"
          f"{C.load_note()}")
    return 0 if summary["errors"] == 0 else 1


def run_level(api: C.Api, level: int, videos, n_chunks: int, ask_every: int, budget: int, args) -> dict:
    sids = [api.open(args.policy, budget) for _ in range(level)]
    prefix = api.scheduler_streams()[sids[0]]["prefix_len"]
    appends, ttfts, held_max, errors = [], [], [0] * level, []
    lock = threading.Lock()
    start = threading.Barrier(level + 1)

    def drive(s: int) -> None:
        start.wait()
        try:
            for c, parts in enumerate(videos[s][:n_chunks]):
                latency, stats = api.append(sids[s], parts)
                with lock:
                    appends.append(latency)
                    held_max[s] = max(held_max[s], stats["tokens_held"])
                if (c + 1) % ask_every == 0:
                    got = api.ask(f"Stream {s}, chunk {c + 1}: what is moving?", args.max_tokens, sid=sids[s])
                    with lock:
                        ttfts.append(got["ttft"])
        except Exception as e:  # reported, and the level is marked failed
            with lock:
                errors.append(f"stream {s}: {type(e).__name__}: {e}")

    peak = {"rss": api.rss_bytes() or 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            rss = api.rss_bytes()
            if rss:
                peak["rss"] = max(peak["rss"], rss)

    threads = [threading.Thread(target=drive, args=(s,)) for s in range(level)]
    sampler = threading.Thread(target=sample, daemon=True)
    for t in threads:
        t.start()
    sampler.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    state = api.hermes_state()
    streams = state.get("streams", {})
    held_now = [int(streams.get(sid, {}).get("memory_len", 0)) for sid in sids]
    kv_per_token = state.get("kv_bytes_per_token") or 0
    rss_end = api.rss_bytes()
    for sid in sids:
        api.close(sid)
    for e in errors:
        print(f"  ERROR {e}", file=sys.stderr)
    frames = len(appends) * C.CHUNK_FRAMES
    return {"streams": level, "frames": frames, "wall_s": wall, "frames_per_s": frames / wall,
            "append_p50_ms": _ms(C.percentile(appends, 50)), "append_p95_ms": _ms(C.percentile(appends, 95)),
            "ttft_p50_ms": _ms(C.percentile(ttfts, 50)), "ttft_p95_ms": _ms(C.percentile(ttfts, 95)),
            "asks": len(ttfts), "prefix_len": prefix, "held_max": max(held_max), "held_now": held_now,
            "within_budget": all(h <= prefix + budget for h in held_max + held_now) and not errors,
            "kv_bytes_held": sum(held_now) * kv_per_token, "rss_peak_bytes": peak["rss"] or None,
            "rss_end_bytes": rss_end, "errors": len(errors)}


def _ms(x):
    return None if x is None else x * 1e3


def print_report(rows, summary, budget, policy) -> None:
    print(f"\n{policy} streams appending at once (budget {budget} tokens each); latencies over all streams")
    view = [{**r, "rss_gib": r["rss_peak_bytes"] / 2**30 if r["rss_peak_bytes"] else None,
             "kv_mib": r["kv_bytes_held"] / 2**20} for r in rows]
    cols = [("streams", "streams", "d"), ("frames", "frames", "d"), ("wall_s", "wall s", ".1f"),
            ("frames_per_s", "frames/s", ".1f"), ("speedup", "vs 1 stream", ".2f"),
            ("append_p50_ms", "append p50 ms", ".0f"), ("append_p95_ms", "append p95 ms", ".0f"),
            ("asks", "asks", "d"), ("ttft_p50_ms", "TTFT p50 ms", ".0f"), ("ttft_p95_ms", "TTFT p95 ms", ".0f"),
            ("held_max", "max held", "d"), ("kv_mib", "KV MiB", ".1f"), ("rss_gib", "peak RSS GiB", ".2f"),
            ("within_budget", "within budget", "s")]
    print(C.table(view, cols))
    print(f"\nEvery stream within prefix + budget after every append: "
          f"{'yes' if summary['all_within_budget'] else 'NO'}; errors: {summary['errors']}")


if __name__ == "__main__":
    raise SystemExit(main())
