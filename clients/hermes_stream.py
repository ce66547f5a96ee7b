"""``hermes-stream``: stream a video file into a hermes-serve session and ask questions along the way.

The file is decoded with PyAV and sampled at --fps by presentation time; frames go chunk by chunk as
``image_url`` parts with their timestamps, as a live camera would send them. A question ``--ask T:Q`` is
asked once every sampled frame at or before T seconds has been appended (right after the chunk that
holds the last such frame; after the last chunk if T is past the end), with the answer streamed to
measure its time to first token. Output is a table, or with --json one JSON object per line (the format
is documented in docs/clients.md and is stable).

Exit codes: 0 success, 1 the video cannot be read, 2 bad arguments, 3 the server refused or failed,
130 interrupted. The stream is closed on the server in every case.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import openai
from tqdm import tqdm

from clients.frames import VideoError, sample_video, video_info
from clients.session import DEFAULT_BASE_URL, HermesClient, error_message

POLICIES = ("hermes", "recent_hermes", "full", "fifo", "sink_window", "uniform")
EXIT_VIDEO, EXIT_USAGE, EXIT_SERVER, EXIT_INTERRUPTED = 1, 2, 3, 130


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def parse_ask(text: str) -> tuple[float, str]:
    """``T:QUESTION`` -> (seconds, question); T is a number >= 0, the question is not blank."""
    seconds, sep, question = text.partition(":")
    try:
        t = float(seconds)
    except ValueError:
        t = math.nan
    if not sep or not question.strip() or not (t >= 0 and math.isfinite(t)):
        raise argparse.ArgumentTypeError(f"expected T:QUESTION with T seconds >= 0, got {text!r}")
    return t, question.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hermes-stream", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("video", help="a video file PyAV can decode")
    p.add_argument("--fps", type=_positive(float), default=1.0, help="frames per second sampled from the file")
    p.add_argument("--chunk", type=_positive(int), default=16, help="frames appended per request")
    p.add_argument("--ask", action="append", default=[], type=parse_ask, metavar="T:QUESTION",
                   help="ask QUESTION once the stream reaches T seconds (repeatable)")
    p.add_argument("--budget", type=_positive(int), help="video tokens kept per layer for this stream "
                   "(default: the server's)")
    p.add_argument("--policy", choices=POLICIES, help="what the stream keeps (default: the server's, hermes)")
    p.add_argument("--max-tokens", type=_positive(int), default=128, help="longest answer, in tokens")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL)
    p.add_argument("--gateway", action="store_true",
                   help="the base URL is a model gateway in front of several servers (hermes-cluster)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"),
                   help="the server's --api-key, if it has one (default: $OPENAI_API_KEY)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return p


# -- scheduling (pure, so it is testable without a server) -----------------------------------------

def chunked(samples: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one may be shorter)."""
    chunk = []
    for item in samples:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def with_next(items: Iterable) -> Iterator[tuple]:
    """(item, next item or None): the next chunk's first timestamp decides which questions are due."""
    it = iter(items)
    try:
        current = next(it)
    except StopIteration:
        return
    for following in it:
        yield current, following
        current = following
    yield current, None


class AskSchedule:
    """Questions in time order; ``due(next_start)`` pops those whose time precedes the next frame.

    After a chunk, a question at T is due when the next sampled frame is later than T (every frame the
    question may see is in), or when there is no next frame. Questions with equal T keep their order."""

    def __init__(self, asks: Iterable[tuple[float, str]]):
        self.pending = sorted(asks, key=lambda a: a[0])

    def due(self, next_start: float | None) -> list[tuple[float, str]]:
        n = len(self.pending) if next_start is None else sum(1 for t, _ in self.pending if t < next_start)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def plan(frame_times: list[float], chunk: int, asks: list[tuple[float, str]]) -> list[list[tuple[float, str]]]:
    """Which questions are asked after each chunk of frames sampled at ``frame_times`` (what ``run`` does)."""
    schedule = AskSchedule(asks)
    return [schedule.due(nxt[0] if nxt else None) for _, nxt in with_next(chunked(frame_times, chunk))]


# -- output ------------------------------------------------------------------------------------

class Report:
    """Events as a table (human) or JSON lines (machines); the same events either way."""

    COLUMNS = f"{'chunk':>5} {'frames':>6} {'time s':>8} {'+tokens':>7} {'seen':>7} {'held':>6} " \
              f"{'compr.':>6} {'append ms':>9}"

    def __init__(self, out: TextIO, as_json: bool, bar=None):
        self.out, self.json, self.bar = out, as_json, bar

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def emit(self, event: dict) -> None:
        if self.json:
            print(json.dumps(event), file=self.out, flush=True)
            return
        kind = event["event"]
        if kind == "open":
            v = event["video"]
            self._line(f"stream {event['session_id']} ({event['config'].get('policy')}, budget "
                       f"{event['config'].get('budget_tokens')} tokens): {v['path']} at {event['sample_fps']:g} fps, "
                       f"{event['chunk']} frames per chunk")
            self._line(self.COLUMNS)
        elif kind == "chunk":
            self._line(f"{event['index']:>5} {event['frames']:>6} {event['time_seconds']:>8.2f} {event['tokens']:>7} "
                       f"{event['tokens_seen']:>7} {event['tokens_held']:>6} {event['compressions']:>6} "
                       f"{event['append_ms']:>9.1f}")
        elif kind == "answer":
            self._line(f"  Q @ {event['t']:g} s (stream at {event['time_seconds']:.2f} s): {event['question']}")
            self._line(f"  A: {_printable(event['answer'].strip())}")
            self._line(f"     TTFT {event['ttft_s'] * 1000:.1f} ms, total {event['total_s'] * 1000:.1f} ms, "
                       f"{event['tokens_held']} tokens held")
        elif kind == "done":
            s = event["stats"]
            self._line(f"done: {s.get('frames')} frames in {s.get('chunks')} chunks over "
                       f"{s.get('time_seconds', 0):.2f} s; tokens seen {s.get('tokens_seen')}, held "
                       f"{s.get('tokens_held')} (budget {s.get('budget_tokens')}), {s.get('compressions')} "
                       f"compressions, {s.get('kv_bytes')} KV bytes; {event['wall_s']:.1f} s wall")


def _printable(text: str) -> str:
    """Control characters escaped, so an odd answer cannot garble the terminal (JSON keeps the raw text)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


# -- the run -----------------------------------------------------------------------------------

def run(args: argparse.Namespace, client: HermesClient, out: TextIO | None = None,
        progress: bool | None = None) -> None:
    """Stream ``args.video`` into a new stream on ``client``; raises VideoError / openai errors.
    ``progress=None`` shows the bar only when stderr is a terminal (and never with --json)."""
    out = out or sys.stdout
    t_start = time.perf_counter()
    info = video_info(args.video)  # a missing or non-video file fails before a stream is opened
    chunks = with_next(chunked(sample_video(args.video, args.fps), args.chunk))
    first = next(chunks, None)
    if first is None:
        raise VideoError(f"{args.video} has no frames")
    schedule = AskSchedule(args.ask)
    total = None
    if info.duration:
        total = max(1, round(info.duration * min(args.fps, info.fps or args.fps)))
    show_bar = (not args.json) and (sys.stderr.isatty() if progress is None else progress)

    with tqdm(total=total, unit="frame", file=sys.stderr, disable=not show_bar, leave=False) as bar, \
            client.open_stream(budget_tokens=args.budget, policy=args.policy, fps=args.fps,
                               chunk_frames=args.chunk) as stream:
        report = Report(out, args.json, bar if show_bar else None)
        report.emit({"event": "open", "session_id": stream.id, "config": stream.config,
                     "video": {"path": str(args.video), "duration": info.duration, "fps": info.fps,
                               "width": info.width, "height": info.height},
                     "sample_fps": args.fps, "chunk": args.chunk})
        frames = 0
        for index, (chunk, following) in enumerate(_chain(first, chunks)):
            times = [t for t, _ in chunk]
            r = stream.append([f for _, f in chunk], timestamps=times)
            frames += len(chunk)
            bar.update(len(chunk))
            s = r.stats
            report.emit({"event": "chunk", "index": index, "frames": len(chunk), "t_start": times[0],
                         "t_end": times[-1], "time_seconds": s.get("time_seconds", times[-1]), "tokens": r.tokens,
                         "tokens_seen": s.get("tokens_seen"), "tokens_held": s.get("tokens_held"),
                         "budget_tokens": s.get("budget_tokens"), "compressions": s.get("compressions"),
                         "append_ms": round(r.ms, 3)})
            for t, question in schedule.due(following[0][0] if following else None):
                a = stream.ask(question, max_tokens=args.max_tokens, temperature=0.0, stream=True)
                report.emit({"event": "answer", "t": t, "question": question, "answer": a.text,
                             "after_chunk": index, "time_seconds": a.stats.get("time_seconds", times[-1]),
                             "ttft_s": round(a.ttft_s, 6), "total_s": round(a.total_s, 6),
                             "finish_reason": a.finish_reason, "tokens_held": a.stats.get("tokens_held")})
        stats = stream.stats()
        report.emit({"event": "done", "session_id": stream.id, "chunks": index + 1, "frames": frames,
                     "wall_s": round(time.perf_counter() - t_start, 3), "stats": stats})


def _chain(first, rest):
    yield first
    yield from rest


def main(argv: list[str] | None = None, *, client: HermesClient | None = None) -> int:
    args = build_parser().parse_args(argv)
    own = client is None
    client = client or HermesClient(args.base_url, api_key=args.api_key, gateway=args.gateway)
    try:
        run(args, client)
        return 0
    except VideoError as e:
        return _fail(args, f"hermes-stream: {e}", EXIT_VIDEO)
    except openai.APIError as e:
        status = getattr(e, "status_code", None)
        return _fail(args, f"hermes-stream: the server at {args.base_url} answered: {error_message(e)}"
                     if status else f"hermes-stream: {error_message(e)}", EXIT_SERVER, status)
    except KeyboardInterrupt:
        return _fail(args, "hermes-stream: interrupted; the stream was closed", EXIT_INTERRUPTED)
    finally:
        if own:
            client.close()


def _fail(args, message: str, code: int, status: int | None = None) -> int:
    if args.json:
        print(json.dumps({"event": "error", "message": message, "status": status, "exit_code": code}), flush=True)
    print(message, file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
