"""hermes-eval: answer quality of live streams on a streaming video benchmark, over the public API.

Reads a benchmark's annotations (StreamingBench, OVO-Bench, the HERMES authors' JSONs, or our synthetic
one), streams each video into a hermes-serve session per policy at --fps in chunks of at most --chunk
frames, asks every question when the stream reaches its time, grades the option letter, and prints a
markdown table per system. With --stateless-recent N the same questions also go to an OpenAI-compatible
server as single requests carrying only the last N frames (the SimpleStream baseline). Results are
appended to --results as JSON lines; a rerun with the same file asks only what is missing.

Exit codes: 0 done (questions that failed are counted in the table's errors column), 1 the annotation
file cannot be read, 2 bad arguments, 3 a server cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import openai
from tqdm import tqdm

from clients.eval.questions import Question
from clients.eval.readers import READERS, load_questions
from clients.eval.report import markdown
from clients.eval.results import ResultStore
from clients.eval.schedule import episodes
from clients.eval.runners import SessionRunner, StatelessRunner
from clients.hermes_stream import POLICIES, _positive
from clients.session import DEFAULT_BASE_URL, HermesClient, error_message

EXIT_ANNOTATIONS, EXIT_SERVER, EXIT_INTERRUPTED = 1, 3, 130


def _policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hermes-eval", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("annotations", help="a benchmark annotation JSON file")
    p.add_argument("--format", choices=("auto", *READERS), default="auto", help="annotation format (default: detected)")
    p.add_argument("--video-root", help="folder the annotations' video paths are under (default: the file's folder)")
    p.add_argument("--results", default="hermes-eval-results.jsonl", help="JSON lines file, appended to and resumed")
    p.add_argument("--report", help="also write the markdown table to this file")
    p.add_argument("--policies", type=_policies, default=["hermes"],
                   help="comma-separated stream policies, each run at the same --budget (default: hermes; "
                        "empty for the stateless baseline alone)")
    p.add_argument("--budget", type=_positive(int), help="video tokens kept per layer (default: the server's)")
    p.add_argument("--sink-tokens", type=_positive(int), help="first tokens a sink_window stream keeps (default: "
                   "the server's, 64; it must be below --budget)")
    p.add_argument("--recent-tokens", type=_positive(int), help="newest tokens a recent_hermes stream keeps in "
                   "every layer (default: the server's, --budget // 4)")
    p.add_argument("--fps", type=_positive(float), default=1.0, help="frames per second sampled from each video")
    p.add_argument("--chunk", type=_positive(int), default=16, help="most frames per append")
    p.add_argument("--frame-side", type=_positive(int), help="shrink frames so their longer side is at most "
                   "this many pixels (default: as decoded)")
    p.add_argument("--max-tokens", type=_positive(int), default=16, help="longest answer, in tokens")
    p.add_argument("--context-seconds", type=_positive(float),
                   help="a fresh stream per question, starting this long before it (StreamingBench's 60 s "
                        "setting); default: one stream per video from its start")
    p.add_argument("--tasks", help="comma-separated task names to keep (default: all)")
    p.add_argument("--limit-videos", type=_positive(int), help="only the first N videos (a quick look)")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="the hermes-serve to stream into")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"))
    p.add_argument("--stateless-recent", type=_positive(int), metavar="N",
                   help="also ask each question in one request with only the last N frames (SimpleStream)")
    p.add_argument("--stateless-base-url", help="OpenAI-compatible server for that baseline (default: --base-url)")
    p.add_argument("--stateless-model", help="its model name (default: the first it lists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def selected_questions(args: argparse.Namespace) -> list[Question]:
    questions = load_questions(args.annotations, args.format, args.video_root)
    if args.tasks:
        keep = {t.strip() for t in args.tasks.split(",")}
        questions = [q for q in questions if q.task in keep]
    if not questions:
        raise ValueError("no question to ask (none with options" + (", or none of --tasks)" if args.tasks else ")"))
    return questions


def run(args: argparse.Namespace, questions: list[Question], runners: list, out=None) -> str:
    """Every episode against every runner, skipping what ``args.results`` holds; returns the table."""
    out = out or sys.stdout
    eps = episodes(questions, args.context_seconds)
    if args.limit_videos:
        videos = list(dict.fromkeys(e.video for e in eps))[: args.limit_videos]
        eps = [e for e in eps if e.video in videos]
    store = ResultStore(args.results)
    total = sum(len(e.questions) for e in eps) * len(runners)
    todo_of = {(r.name, id(e)): {q.id for q in e.questions if not store.done((r.name, q.video, q.id))}
               for r in runners for e in eps}
    with tqdm(total=total, initial=total - sum(map(len, todo_of.values())), unit="question", file=sys.stderr,
              disable=args.no_progress) as bar:
        def record(row: dict) -> None:
            store.append(row)
            bar.update(1)
        for ep in eps:
            for runner in runners:
                todo = todo_of[(runner.name, id(ep))]
                if todo:
                    bar.set_description(f"{runner.name} {Path(ep.video).name}")
                    runner.run(ep, todo, record)
    covered = {(q.video, q.id) for e in eps for q in e.questions}
    rows = [r for r in store.rows.values() if (r["video"], r["question_id"]) in covered]
    table = markdown(rows, [r.name for r in runners])
    print(table, file=out, end="", flush=True)
    if args.report:
        Path(args.report).write_text(table)
    return table


def _window(policy: str, args: argparse.Namespace) -> dict:
    """The window option of ``policy``'s streams, if the command line sets it (only that policy takes it)."""
    if policy == "sink_window":
        return {"sink_tokens": args.sink_tokens}
    if policy == "recent_hermes":
        return {"recent_tokens": args.recent_tokens}
    return {}


def make_runners(args: argparse.Namespace) -> tuple[list, list]:
    """(runners, clients to close)."""
    runners, clients = [], []
    if args.policies:
        client = HermesClient(args.base_url, api_key=args.api_key)
        clients.append(client)
        runners += [SessionRunner(client, p, budget=args.budget, fps=args.fps, chunk=args.chunk,
                                  max_tokens=args.max_tokens, side=args.frame_side,
                                  window=_window(p, args)) for p in args.policies]
    if args.stateless_recent:
        oc = openai.OpenAI(base_url=args.stateless_base_url or args.base_url, api_key=args.api_key, timeout=600)
        clients.append(oc)
        runners.append(StatelessRunner(oc, args.stateless_recent, model=args.stateless_model, fps=args.fps,
                                       max_tokens=args.max_tokens, side=args.frame_side))
    return runners, clients


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.policies and not args.stateless_recent:
        parser.error("nothing to run: give --policies and/or --stateless-recent")
    try:
        questions = selected_questions(args)
    except (OSError, ValueError, KeyError, TypeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        print(f"hermes-eval: cannot read {args.annotations}: {what}", file=sys.stderr)
        return EXIT_ANNOTATIONS
    runners, clients = make_runners(args)
    try:
        run(args, questions, runners)
        return 0
    except openai.APIConnectionError as e:
        print(f"hermes-eval: {error_message(e)}", file=sys.stderr)
        return EXIT_SERVER
    except KeyboardInterrupt:
        print(f"hermes-eval: interrupted; {args.results} keeps what was answered", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for c in clients:
            c.close()


if __name__ == "__main__":
    sys.exit(main())
