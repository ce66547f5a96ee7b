"""``hermes-stream``: stream a video file into a hermes-serve session and ask questions along the way.

The argument surface is final; the streaming itself lands with the session API. Until then the
command validates its arguments, prints what it would do, and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hermes-stream", description=__doc__.splitlines()[0])
    p.add_argument("video", help="a video file PyAV can decode")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second sampled from the file")
    p.add_argument("--chunk", type=int, default=16, help="frames appended per request")
    p.add_argument("--ask", action="append", default=[], metavar="T:QUESTION",
                   help="ask QUESTION once the stream reaches T seconds (repeatable)")
    p.add_argument("--budget", type=int, help="video tokens kept per layer for this stream")
    p.add_argument("--base-url", default="http://127.0.0.1:30000/v1")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for item in args.ask:
        seconds, sep, question = item.partition(":")
        if not sep or not question:
            build_parser().error(f"--ask expects T:QUESTION, got {item!r}")
        float(seconds)
    print(f"hermes-stream: would stream {args.video} at {args.fps:g} fps in chunks of {args.chunk} "
          f"to {args.base_url}; the session API it needs is not available yet.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
