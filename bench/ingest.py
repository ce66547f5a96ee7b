"""What ingesting a chunk costs: per-chunk append time of hermes, full and fifo streams, and HERMES' own share.

One hermes-serve; three streams get the same 16-frame chunks (1 fps), appends interleaved round-robin
with a rotating first stream so machine noise hits all three alike:
  hermes   HERMES at --budget tokens: the guidance block rides in the append's forward and is scored,
           and once the memory is over budget every append also plans and compacts;
  full     no compression (budget = the whole video): SGLang's streaming session, the chunk prefilled;
  fifo     the newest --budget tokens: evicts, no guidance, no scoring.
Per append: the latency the openai client sees, and from the scheduler (``/server_info``, the stream's
``last_append_ms``) the milliseconds HERMES spent scoring the guidance inside the forward, planning
and compacting. "forward + rest" = latency - (score + plan + compact): the model forward (including
the guidance tokens' own prefill), vision encoding, media decoding, tokenization, HTTP.

Prints a per-chunk table, the medians before and after the budget is reached, the ratios to `full`,
and the share of a hermes append spent on HERMES' own work; writes JSON and a PNG plot.

    python bench/ingest.py             # the documented run: 3 passes x 24 chunks (384 frames), bench model, ~1.5 min
    python bench/ingest.py --smoke     # tiny model, 6 chunks, for the test suite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

POLICIES = ("hermes", "full", "fifo")
PARTS = ("score", "plan", "compact")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(ap)
    ap.add_argument("--chunks", type=int, default=None, help="16-frame chunks per stream (default 24; smoke 6)")
    ap.add_argument("--budget", type=int, default=None, help="tokens kept by hermes and fifo (default 512; smoke 256)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="passes over the video, fresh streams each; per-chunk medians (default 3; smoke 1)")
    ap.add_argument("--max-total-tokens", type=int, default=32768, help="KV pool of the server it starts")
    ap.add_argument("--plot", default=None, help="PNG path (default next to the JSON)")
    args = ap.parse_args(argv)
    n_chunks = args.chunks or (6 if args.smoke else 24)
    repeats = args.repeats or (1 if args.smoke else 3)
    budget = args.budget or (256 if args.smoke else 512)

    t_start = time.perf_counter()
    video = C.frames(n_chunks * C.CHUNK_FRAMES, args)
    appends = C.chunked_parts(video)
    passes = []
    with C.serve(args, max_total_tokens=args.max_total_tokens) as target:
        api = C.Api(target)
        per_chunk = api.warm_up(appends[0])
        model = C.model_info(args, api)
        full_budget = n_chunks * per_chunk + 64  # a full stream's budget is a hard cap: the whole video
        for rep in range(repeats):
            print(f"pass {rep + 1}/{repeats}", flush=True)
            passes.append(one_pass(api, appends, budget, full_budget))
        prefix = passes[0][1]
        missing_split = any(p[2] for p in passes)
        startup = target.startup_seconds
    elapsed = time.perf_counter() - t_start
    rows = combine([p[0] for p in passes])

    phases = {"under budget": [r for r in rows if r["hermes_compressions"] == 0],
              "compressing": [r for r in rows if r["hermes_compressions"] > 0]}
    phase_rows = []
    for name, rs in phases.items():
        if not rs:
            continue
        pr = {"phase": name, "chunks": f"{rs[0]['chunk']}-{rs[-1]['chunk']}", "n": len(rs)}
        for key in ("hermes_ms", "full_ms", "fifo_ms", "hermes_forward_ms", "hermes_score_ms", "hermes_plan_ms",
                    "hermes_compact_ms", "hermes_over_full", "fifo_over_full", "hermes_over_fifo", "hermes_share"):
            pr[key] = C.median(r[key] for r in rs)
        pr["hermes_share_total"] = sum(r["hermes_hermes_ms"] for r in rs) / sum(r["hermes_ms"] for r in rs)
        phase_rows.append(pr)
    last = rows[-max(1, len(rows) // 4):]  # the last quarter: full's memory is largest there
    summary = {
        "hermes_over_full_median": C.median(r["hermes_over_full"] for r in rows),
        "hermes_over_full_compressing": C.median(r["hermes_over_full"] for r in phases["compressing"]),
        "hermes_over_full_under_budget": C.median(r["hermes_over_full"] for r in phases["under budget"]),
        "hermes_over_full_last_quarter": C.median(r["hermes_over_full"] for r in last),
        "hermes_over_full_first_chunk": rows[0]["hermes_over_full"],
        "hermes_over_fifo_compressing": C.median(r["hermes_over_fifo"] for r in phases["compressing"]),
        "hermes_share_of_ingest": sum(r["hermes_hermes_ms"] for r in rows) / sum(r["hermes_ms"] for r in rows),
        "hermes_held_within_budget": all(r["hermes_held"] <= prefix + budget for r in rows),
        "full_grows": all(b["full_held"] > a["full_held"] for a, b in zip(rows, rows[1:])),
        "last_append_ms_reported": not missing_split,
    }
    print_report(rows, phase_rows, summary, budget, prefix)
    out_json = C.write_json(args.json_path, "ingest", {
        "script": "ingest.py", "argv": sys.argv[1:] if argv is None else argv, "smoke": args.smoke,
        "model": model,
        "machine": C.machine(), "budget_tokens": budget, "full_budget_tokens": full_budget, "prefix_len": prefix,
        "chunk_frames": C.CHUNK_FRAMES, "fps": C.FPS, "frame_side": C.frame_side(args),
        "repeats": repeats, "server_startup_s": startup, "elapsed_s": elapsed, "rows": rows,
        "passes": [p[0] for p in passes], "phases": phase_rows, "summary": summary},
        args.smoke)
    png = Path(args.plot) if args.plot else out_json.with_suffix(".png")
    xs = [r["frames"] for r in rows]
    drew = C.plot(png, [
        C.Panel("Append latency per 16-frame chunk", "frames streamed", "append latency (ms)",
                {p: list(zip(xs, [r[f"{p}_ms"] for r in rows])) for p in POLICIES}),
        C.Panel("Inside a hermes append", "frames streamed", "ms",
                {"forward + rest": list(zip(xs, [r["hermes_forward_ms"] for r in rows])),
                 **{part: list(zip(xs, [r[f"hermes_{part}_ms"] for r in rows])) for part in PARTS}}),
    ])
    print(f"\nwrote {out_json} and {png} ({drew}); {elapsed:.0f} s in all, {C.startup_note(startup)};\n"
          f"{C.load_note()}")
    return 0


def one_pass(api: C.Api, appends, budget: int, full_budget: int) -> tuple[list[dict], int, bool]:
    """Fresh hermes, full and fifo streams fed the whole video; returns (rows, prefix length, whether
    the server lacks the score/plan/compact split)."""
    sids = {p: api.open(p, full_budget if p == "full" else budget) for p in POLICIES}
    rows = []
    try:
        for i, parts in enumerate(appends):
            row = {"chunk": i + 1, "frames": (i + 1) * C.CHUNK_FRAMES}
            order = POLICIES[i % len(POLICIES):] + POLICIES[:i % len(POLICIES)]
            for p in order:
                latency, stats = api.append(sids[p], parts)
                own = api.scheduler_streams()[sids[p]].get("last_append_ms") or {}
                row[f"{p}_ms"] = latency * 1e3
                for part in PARTS:
                    row[f"{p}_{part}_ms"] = float(own.get(part, 0.0))
                row[f"{p}_held"] = stats["tokens_held"]
                row[f"{p}_compressions"] = stats["compressions"]
                row["tokens_seen"] = stats["tokens_seen"]
            rows.append(row)
            print(f"  chunk {i + 1:>3}: " + "  ".join(f"{p} {row[f'{p}_ms']:.0f} ms" for p in POLICIES), flush=True)
        streams = api.scheduler_streams()
        prefix = streams[sids["hermes"]]["prefix_len"]
        missing_split = not any("last_append_ms" in streams[sid] for sid in sids.values())
    finally:
        for sid in sids.values():
            api.close(sid)
    return rows, prefix, missing_split


def combine(passes: list[list[dict]]) -> list[dict]:
    """Per chunk: the median over passes of every timing; token counts are the same in every pass."""
    rows = []
    for same_chunk in zip(*passes):
        row = dict(same_chunk[-1])
        for key in row:
            if key.endswith("_ms"):
                row[key] = C.median(r[key] for r in same_chunk)
        for p in POLICIES:
            row[f"{p}_hermes_ms"] = sum(row[f"{p}_{part}_ms"] for part in PARTS)
            row[f"{p}_forward_ms"] = row[f"{p}_ms"] - row[f"{p}_hermes_ms"]
        row["hermes_over_full"] = row["hermes_ms"] / row["full_ms"]
        row["fifo_over_full"] = row["fifo_ms"] / row["full_ms"]
        row["hermes_over_fifo"] = row["hermes_ms"] / row["fifo_ms"]
        row["hermes_share"] = row["hermes_hermes_ms"] / row["hermes_ms"]
        rows.append(row)
    return rows


def print_report(rows, phase_rows, summary, budget, prefix) -> None:
    print(f"\nAppend latency per chunk (ms, client-side, median over passes); hermes and fifo budget {budget} tokens, "
          f"prefix {prefix}")
    cols = [("chunk", "chunk", "d"), ("tokens_seen", "tokens seen", "d")]
    cols += [(f"{p}_ms", p, ".0f") for p in POLICIES]
    cols += [("hermes_forward_ms", "hermes fwd+rest", ".0f"), ("hermes_score_ms", "score", ".1f"),
             ("hermes_plan_ms", "plan", ".1f"), ("hermes_compact_ms", "compact", ".1f"),
             ("hermes_over_full", "hermes/full", ".2f"), ("fifo_over_full", "fifo/full", ".2f"),
             ("hermes_held", "held hermes", "d"), ("full_held", "held full", "d"), ("fifo_held", "held fifo", "d")]
    print(C.table(rows, cols))
    print("\nMedians by phase (ms; ratios are medians of per-chunk ratios)")
    cols = [("phase", "phase", "s"), ("chunks", "chunks", "s"), ("hermes_ms", "hermes", ".0f"),
            ("full_ms", "full", ".0f"), ("fifo_ms", "fifo", ".0f"), ("hermes_forward_ms", "hermes fwd+rest", ".0f"),
            ("hermes_score_ms", "score", ".1f"), ("hermes_plan_ms", "plan", ".1f"),
            ("hermes_compact_ms", "compact", ".1f"), ("hermes_over_full", "hermes/full", ".2f"),
            ("fifo_over_full", "fifo/full", ".2f"), ("hermes_over_fifo", "hermes/fifo", ".2f"),
            ("hermes_share_total", "HERMES share", ".1%")]
    print(C.table(phase_rows, cols))
    s = summary
    if not s["last_append_ms_reported"]:
        print("\nNOTE: the server reports no last_append_ms: score/plan/compact are 0 and 'forward' is the "
              "whole append")
    ok = s["hermes_over_full_median"] <= 1.3
    print("\nTargets (one run; medians of per-chunk ratios):")
    print(f"  hermes / full append, all chunks     = {s['hermes_over_full_median']:.2f}  (target <= 1.3: "
          f"{'met' if ok else 'MISSED'})")
    for key, label in (("hermes_over_full_under_budget", "under budget (no compaction)"),
                       ("hermes_over_full_compressing", "compressing"),
                       ("hermes_over_full_last_quarter", "last quarter of the stream")):
        if s[key] is not None:
            print(f"    {label:<34} = {s[key]:.2f}")
    if s["hermes_over_fifo_compressing"] is not None:
        print(f"  hermes / fifo append, compressing    = {s['hermes_over_fifo_compressing']:.2f}  (same memory size: "
              f"the price of guidance + scoring + planning + compaction)")
    print(f"  HERMES' own work (score+plan+compact) = {s['hermes_share_of_ingest']:.1%} of hermes ingest time")
    print(f"  hermes held <= prefix + budget        = {'yes' if s['hermes_held_within_budget'] else 'NO'}; "
          f"full grows every chunk = {'yes' if s['full_grows'] else 'NO'}")


if __name__ == "__main__":
    raise SystemExit(main())
