"""Time to first token of a question after N frames of live video: HERMES against what users would use instead.

One hermes-serve; the same synthetic video (16-frame chunks at 1 fps) goes into four streams, chunk by
chunk, appends interleaved round-robin with a rotating first stream so machine noise hits all alike:
  hermes        HERMES at --budget tokens (smaller than the video: compression runs)
  full          the same engine without compression: what SGLang's streaming sessions give today
  fifo          the newest --budget tokens            } baselines at the same budget
  sink_window   the first chunk + the newest tokens   }
and, at each checkpoint N, stateless: one ordinary chat request carrying all N frames (one mp4
video part) and the question, what OpenAI-style serving does. Every stateless request differs from
the ones before in one pixel of its first frame, so SGLang reuses neither a cached prefix nor a cached
vision embedding: each pays for the whole clip, as a stateless server does for each question.

At each N (frames appended so far) every approach answers --asks questions (streamed, temperature 0,
--max-tokens tokens); TTFT = time to the first non-empty answer delta seen by the openai client.
Prints the median TTFT per approach, tokens held per stream, KV bytes and the server's resident
memory (RSS of the whole process tree), the ratios the targets name, and writes JSON and a PNG plot.

    python bench/ttft_vs_frames.py                 # the documented run (bench model, ~2 min on 2 CPU cores)
    python bench/ttft_vs_frames.py --smoke         # tiny model, 16..48 frames, for the test suite (~25 s)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

STREAMS = ("hermes", "full", "fifo", "sink_window")
APPROACHES = (*STREAMS, "stateless")
QUESTIONS = ("What is moving in the video?", "Where is the circle now?", "What colour is the square?",
             "Describe what just happened.", "How many shapes are there?")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(ap)
    ap.add_argument("--frames", default=None, help="checkpoints, comma-separated (default 16,32,64,128,256; "
                                                   "smoke 16,32,48); multiples of 16")
    ap.add_argument("--budget", type=int, default=None, help="tokens kept by hermes/fifo/sink_window "
                                                             "(default 512, ~2.5 chunks; smoke 256)")
    ap.add_argument("--asks", type=int, default=None, help="questions per approach per checkpoint (default 5; smoke 1)")
    ap.add_argument("--max-tokens", type=int, default=4, help="answer length of each question")
    ap.add_argument("--max-total-tokens", type=int, default=32768, help="KV pool of the server it starts")
    ap.add_argument("--plot", default=None, help="PNG path (default next to the JSON)")
    args = ap.parse_args(argv)
    checkpoints = [int(x) for x in (args.frames or ("16,32,48" if args.smoke else "16,32,64,128,256")).split(",")]
    if any(n % C.CHUNK_FRAMES for n in checkpoints) or checkpoints != sorted(set(checkpoints)):
        ap.error(f"--frames must be increasing multiples of {C.CHUNK_FRAMES}")
    budget = args.budget or (256 if args.smoke else 512)
    asks = args.asks or (1 if args.smoke else 5)
    total_frames = checkpoints[-1]

    t_start = time.perf_counter()
    video = C.frames(total_frames, args)
    appends = C.chunked_parts(video)
    rows, raw = [], {a: {} for a in APPROACHES}
    with C.serve(args, max_total_tokens=args.max_total_tokens) as target:
        api = C.Api(target)
        per_chunk = api.warm_up(appends[0], C.video_part(video[:C.CHUNK_FRAMES], variant=-1))
        model = C.model_info(args, api)
        full_budget = len(appends) * per_chunk + 64  # a full stream's budget is a hard cap: the whole video
        sids = {p: api.open(p, full_budget if p == "full" else budget) for p in STREAMS}
        try:
            checkpoint_at = set(checkpoints)
            for i, parts in enumerate(appends):
                order = STREAMS[i % len(STREAMS):] + STREAMS[:i % len(STREAMS)]
                stats = {}
                for p in order:
                    _, stats[p] = api.append(sids[p], parts)
                n = (i + 1) * C.CHUNK_FRAMES
                if n not in checkpoint_at:
                    continue
                rss_streams = api.rss_bytes()  # before this checkpoint's questions
                ttft = {a: [] for a in APPROACHES}
                prompt_tokens = {}
                for k in range(asks):
                    q = f"{QUESTIONS[k % len(QUESTIONS)]} ({n} frames, question {k})"
                    rot = (k + i) % len(APPROACHES)
                    for a in APPROACHES[rot:] + APPROACHES[:rot]:
                        if a == "stateless":
                            got = api.ask(q, args.max_tokens, video=C.video_part(video[:n], variant=k))
                        else:
                            got = api.ask(q, args.max_tokens, sid=sids[a])
                        ttft[a].append(got["ttft"])
                        prompt_tokens[a] = got["prompt_tokens"]
                sched = api.scheduler_streams()
                row = {"frames": n, "tokens_seen": stats["full"]["tokens_seen"],
                       "prefix_len": sched.get(sids["hermes"], {}).get("prefix_len"),
                       "rss_bytes": rss_streams, "rss_after_asks_bytes": api.rss_bytes()}
                for a in APPROACHES:
                    row[f"ttft_ms_{a}"] = C.median(ttft[a]) * 1e3
                    row[f"prompt_tokens_{a}"] = prompt_tokens[a]
                    raw[a][n] = [t * 1e3 for t in ttft[a]]
                for p in STREAMS:
                    row[f"held_{p}"] = stats[p]["tokens_held"]
                    row[f"kv_bytes_{p}"] = stats[p]["kv_bytes"]
                    row[f"compressions_{p}"] = stats[p]["compressions"]
                row["stateless_over_hermes"] = row["ttft_ms_stateless"] / row["ttft_ms_hermes"]
                row["full_over_hermes"] = row["ttft_ms_full"] / row["ttft_ms_hermes"]
                rows.append(row)
                print(f"  {n:>4} frames: " + "  ".join(f"{a} {row[f'ttft_ms_{a}']:.0f} ms" for a in APPROACHES),
                      flush=True)
        finally:
            for sid in sids.values():
                api.close(sid)
        startup = target.startup_seconds
    elapsed = time.perf_counter() - t_start

    first, last = rows[0], rows[-1]
    prefix = last["prefix_len"]
    reached = [r for r in rows if r["compressions_hermes"] > 0]
    summary = {
        "hermes_ttft_last_over_first": last["ttft_ms_hermes"] / first["ttft_ms_hermes"],
        "budget_reached_at_frames": reached[0]["frames"] if reached else None,
        "hermes_ttft_last_over_budget_reached": (last["ttft_ms_hermes"] / reached[0]["ttft_ms_hermes"]
                                                 if reached else None),
        "stateless_over_hermes_last": last["stateless_over_hermes"],
        "full_over_hermes_last": last["full_over_hermes"],
        "hermes_held_after_budget": sorted({r["held_hermes"] for r in reached}),
        "hermes_held_within_budget": all(r["held_hermes"] <= prefix + budget for r in rows),
        "full_held": [r["held_full"] for r in rows],
        "full_grows_linearly": all(r["held_full"] == prefix + r["tokens_seen"] for r in rows),
    }
    print_report(rows, summary, budget, prefix, first["frames"], last["frames"])

    out_json = C.write_json(args.json_path, "ttft_vs_frames", {
        "script": "ttft_vs_frames.py", "argv": sys.argv[1:] if argv is None else argv, "smoke": args.smoke,
        "model": model,
        "machine": C.machine(), "budget_tokens": budget, "full_budget_tokens": full_budget,
        "chunk_frames": C.CHUNK_FRAMES, "fps": C.FPS, "frame_side": C.frame_side(args), "asks": asks,
        "max_tokens": args.max_tokens, "server_startup_s": startup, "elapsed_s": elapsed,
        "rows": rows, "ttft_ms_samples": raw, "summary": summary}, args.smoke)
    png = Path(args.plot) if args.plot else out_json.with_suffix(".png")
    xs = [r["frames"] for r in rows]
    drew = C.plot(png, [
        C.Panel("Time to first token vs frames streamed", "frames (16 per chunk, 1 fps)", "median TTFT (ms, log)",
                {a: list(zip(xs, [r[f"ttft_ms_{a}"] for r in rows])) for a in APPROACHES}, logx=True, logy=True),
        C.Panel("KV tokens held per stream", "frames", "tokens held (prefix + memory)",
                {p: list(zip(xs, [r[f"held_{p}"] for r in rows])) for p in STREAMS}, logx=True),
    ])
    print(f"\nwrote {out_json} and {png} ({drew}); {elapsed:.0f} s in all, {C.startup_note(startup)};\n"
          f"{C.load_note()}")
    return 0


def print_report(rows, summary, budget, prefix, n0, n1) -> None:
    print(f"\nTTFT of a question (median, ms) after N frames; hermes/fifo/sink_window budget {budget} tokens")
    cols = [("frames", "frames", "d"), ("tokens_seen", "video tokens", "d")]
    cols += [(f"ttft_ms_{a}", a, ".0f") for a in APPROACHES]
    cols += [("stateless_over_hermes", "stateless/hermes", ".1f"), ("full_over_hermes", "full/hermes", ".2f")]
    print(C.table(rows, cols))
    print(f"\nMemory: tokens held per stream (prefix {prefix} + memory), KV MiB; server RSS (process tree) after\n"
          f"the appends and after the checkpoint's questions (stateless requests add transient vision buffers)")
    mem_rows = [{**r, **{f"kv_mib_{p}": r[f"kv_bytes_{p}"] / 2**20 for p in STREAMS},
                 "rss_gib": (r["rss_bytes"] / 2**30) if r["rss_bytes"] else None,
                 "rss_after_gib": (r["rss_after_asks_bytes"] / 2**30) if r["rss_after_asks_bytes"] else None}
                for r in rows]
    cols = [("frames", "frames", "d")] + [(f"held_{p}", f"held {p}", "d") for p in STREAMS]
    cols += [(f"kv_mib_{p}", f"KV MiB {p}", ".1f") for p in ("hermes", "full")]
    cols += [("prompt_tokens_stateless", "stateless prompt", "d"), ("rss_gib", "RSS GiB", ".2f"),
             ("rss_after_gib", "RSS after asks", ".2f")]
    print(C.table(mem_rows, cols))
    s = summary
    print("\nTargets (one run; ratios of medians):")
    print(f"  hermes TTFT {n1} / {n0} frames       = {s['hermes_ttft_last_over_first']:.2f}  (target <= 1.2: "
          f"{'met' if s['hermes_ttft_last_over_first'] <= 1.2 else 'MISSED'})")
    if s["budget_reached_at_frames"] is not None:
        print(f"    from the first checkpoint over budget ({s['budget_reached_at_frames']} frames) to {n1}: "
              f"{s['hermes_ttft_last_over_budget_reached']:.2f}")
    print(f"  stateless / hermes TTFT at {n1}     = {s['stateless_over_hermes_last']:.1f}  (target >= 10: "
          f"{'met' if s['stateless_over_hermes_last'] >= 10 else 'MISSED'})")
    print(f"  full / hermes TTFT at {n1}          = {s['full_over_hermes_last']:.2f}")
    print(f"  hermes tokens held once over budget = {s['hermes_held_after_budget']} (prefix + M = {prefix + budget}; "
          f"{'constant' if len(s['hermes_held_after_budget']) == 1 else 'NOT constant'})")
    print(f"  full tokens held                    = {s['full_held']} "
          f"({'= prefix + every token seen' if s['full_grows_linearly'] else 'NOT linear'})")


if __name__ == "__main__":
    raise SystemExit(main())
