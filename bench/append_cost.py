"""What an append costs inside the engine with and without HERMES compression, measured side by side.

One hermes-serve on the tiny Qwen2.5-VL; four streams get the same chunks, appends interleaved
round-robin (rotating who goes first) so machine noise hits all of them alike:
  full            stock streaming-session behaviour: the chunk is prefilled, nothing else;
  hermes-nocomp   guidance "block": the guidance block rides in the append's forward and is scored,
                  budget never hit;
  hermes-block    the same, over budget from the third chunk on: plan + compaction on the pool;
  hermes-passes   guidance "passes", over budget from the third chunk on: the chunk alone, then one
                  prefill-only score turn per guidance prompt, then plan + compaction.
Prints the median append latency of each (an append of hermes-passes includes its score turns, as the
session API runs them) and the ratios to `full` and to `hermes-block`.

    python bench/append_cost.py [--chunks 12] [--budget 40] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sglang_hermes.config import HermesConfig
from sglang_hermes.testing.native_stream import NativeStream
from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=12)
    ap.add_argument("--frames", type=int, default=2, help="frames per chunk")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--smoke", action="store_true", help="4 chunks, for CI")
    args = ap.parse_args()
    n = 4 if args.smoke else args.chunks
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_qwen2_5_vl(Path(tmp) / "qwen")
        with HermesServer(model, extra_args=["--enable-streaming-session", "--dtype", "float32"],
                          log_path=Path(tmp) / "server.log") as server:
            configs = {"full": HermesConfig(policy="full"),
                       "hermes-nocomp": HermesConfig(budget_tokens=1_000_000, guidance="block"),
                       "hermes-block": HermesConfig(budget_tokens=args.budget, guidance="block"),
                       "hermes-passes": HermesConfig(budget_tokens=args.budget, guidance="passes")}
            streams = {name: NativeStream(server.base_url, model, cfg).open() for name, cfg in configs.items()}
            frames = synthetic_frames(n * args.frames, size=336, seed=1)
            times = {name: [] for name in streams}
            for i in range(n):
                chunk = frames[i * args.frames:(i + 1) * args.frames]
                names = list(streams)
                for name in names[i % len(names):] + names[:i % len(names)]:  # rotate: no stream always last
                    stream = streams[name]
                    t0 = time.perf_counter()
                    stream.append(chunk)
                    times[name].append(time.perf_counter() - t0)
            for stream in streams.values():
                stream.close()
    skip = min(2, n - 1)  # the first appends are under budget for every stream: compare the steady state
    base = statistics.median(times["full"][skip:])
    block = statistics.median(times["hermes-block"][skip:])
    print(f"{'stream':<15} {'median append (ms)':>20} {'vs full':>8} {'vs block':>9}")
    for name, t in times.items():
        med = statistics.median(t[skip:])
        print(f"{name:<15} {med * 1e3:>20.1f} {med / base:>8.2f} {med / block:>9.2f}")


if __name__ == "__main__":
    main()
