"""Measure the trained model on held-out clips: every policy at a few budgets, the full-memory stream as
the ceiling and the stateless recent-frames baseline, against ONE hermes-serve, over the public API.

    python -m training.evaluate --out results/quality-synth      # docs/quality.md has the numbers

The held-out benchmark is drawn from seeds the training never used (training clips are seeds >= 1000)
and is longer than any training clip (36 s against at most 32 s). The harness runs its policies at one
budget, so each (budget, group of policies) is its own ``hermes-eval`` run; the runs go side by side
against the same server (it serves many streams at once), and their rows are merged into one report with
the chance level of the questions.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from clients.eval.readers import load_questions
from clients.eval.report import markdown
from clients.eval.results import ResultStore
from clients.eval.synth import write_benchmark
from sglang_hermes.testing.server import HermesServer
from training.model import MODEL_DIR

POLICIES = "hermes,recent_hermes;fifo,sink_window,uniform"  # ';' separates runs that go side by side
FULL_BUDGET = 4096  # holds any held-out clip whole: the no-eviction ceiling


def chance(questions) -> float:
    return 100.0 * sum(1.0 / len(q.options) for q in questions) / len(questions)


def chance_by(questions, field: str) -> str:
    """Chance per split or task ("memory 25.0%, order 38.9%, ..."): what each column of the table compares to."""
    groups = sorted({getattr(q, field) for q in questions})
    return ", ".join(f"{g} {chance([q for q in questions if getattr(q, field) == g]):.1f}%" for g in groups)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/quality-synth")
    p.add_argument("--model", default=str(MODEL_DIR))
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--seconds", type=int, default=36)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--budgets", default="24,48", help="video tokens per layer (a 36 s clip is 72)")
    p.add_argument("--policies", default=POLICIES)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--recent", type=int, default=4, help="frames of the stateless baseline")
    args = p.parse_args(argv)

    out = Path(args.out).resolve()
    bench = write_benchmark(out / "bench", args.clips, seed=args.seed, duration_s=args.seconds, questions=5)
    questions = load_questions(bench)
    common = [str(bench), "--fps", "1", "--chunk", str(args.chunk), "--max-tokens", "12", "--no-progress"]
    budgets = [int(b) for b in args.budgets.split(",")]
    groups = args.policies.split(";")
    # sink_window's default 64 sinks exceed these budgets: a quarter of the budget, as recent_hermes' window
    runs = {f"b{b}-{i}": ["--policies", g, "--budget", str(b), "--sink-tokens", str(max(1, b // 4))]
            for b in budgets for i, g in enumerate(groups)}
    runs["full"] = ["--policies", "full", "--budget", str(FULL_BUDGET), "--stateless-recent", str(args.recent)]
    t0 = time.perf_counter()
    with HermesServer(args.model, extra_args=["--dtype", "float32"], log_path=out / "hermes-serve.log") as server:
        print(f"server up in {server.startup_seconds:.0f} s; {len(questions)} questions x {len(runs)} runs", flush=True)
        procs = {name: subprocess.Popen([sys.executable, "-m", "clients.eval.cli", *common, *extra,
                                         "--results", str(out / f"{name}.jsonl"), "--report", str(out / f"{name}.md"),
                                         "--base-url", f"{server.base_url}/v1"],
                                        stdout=subprocess.DEVNULL, stderr=open(out / f"{name}.log", "w"))
                 for name, extra in runs.items()}
        codes = {name: proc.wait() for name, proc in procs.items()}
    wall = time.perf_counter() - t0
    # the last row of each question (a rerun retries failed rows): what hermes-eval's own report counts
    rows = [row for name in runs for row in ResultStore(out / f"{name}.jsonl").rows.values()]
    systems = [f"full@{FULL_BUDGET}", f"recent-{args.recent}",
               *(f"{pol}@{b}" for b in budgets for g in groups for pol in g.split(","))]
    table = markdown(rows, systems)
    head = (f"Held-out synthetic benchmark: {args.clips} clips of {args.seconds} s (seed {args.seed}), "
            f"{len(questions)} questions, 1 fps, chunks of {args.chunk}; chance {chance(questions):.1f}% "
            f"({chance_by(questions, 'split')}; {chance_by(questions, 'task')}); "
            f"{wall / 60:.1f} min wall; exit codes {codes}\n\n")
    (out / "report.md").write_text(head + table)
    print(head + table)
    return 0 if not any(codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
