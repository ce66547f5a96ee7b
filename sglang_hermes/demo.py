"""The README's main job: a real hermes-serve on a small trained model, a video streamed into it,
answers that can be checked, and stats.

The model is the tiny shapes model shipped in ``models/tiny-shapes-qwen2.5-vl`` (a 12-layer Qwen2.5-VL
trained on this repository's synthetic benchmark, ``training/``), so nothing is downloaded or trained.
The video is a clip of that benchmark drawn from a seed the model never saw: coloured shapes that appear,
change colour and leave. ``hermes-stream`` samples it at --fps, appends it chunk by chunk with the
standard ``openai`` client and asks the clip's questions (current scene, memory, order of events) as the
stream passes their time. It prints the per-chunk table (time, tokens seen, tokens held, append ms), each
answer and its time to first token, the answer key, then the server's own stream metrics, and always
shuts the server down.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx

from clients import hermes_stream
from clients.eval.questions import Question
from clients.eval.scoring import prompt
from clients.eval.synth import make_clip, render
from sglang_hermes.media import encode_mp4
from sglang_hermes.testing.server import HermesServer

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "tiny-shapes-qwen2.5-vl"
DEMO_SEED = 7  # a held-out seed: the model was trained on seeds >= 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=32, help="length of the synthetic clip (even, >= 12)")
    parser.add_argument("--clip", type=int, default=0, help="which clip of the demo seed")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second streamed (the model's rate)")
    parser.add_argument("--chunk", type=int, default=2, help="frames per append")
    parser.add_argument("--budget", type=int, default=32, help="video tokens kept per layer (a 32 s clip is 64)")
    parser.add_argument("--policy", default="hermes", choices=hermes_stream.POLICIES)
    parser.add_argument("--model", default=str(MODEL_DIR), help="model directory (default: the shipped one)")
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)

    cache = Path(args.cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    print(f"model   {args.model} (tiny Qwen2.5-VL trained on the synthetic shapes benchmark)")
    clip = make_clip(DEMO_SEED, args.clip, duration_s=args.seconds, questions=5)
    video = cache / "demo.mp4"
    video.write_bytes(encode_mp4(render(clip, 2.0, 112), fps=2.0))
    print(f"video   {video} ({args.seconds} s, 112x112, 2 fps, H.264): what happens in it")
    for e in clip.events:
        what = {"appear": "appears", "change_colour": "turns", "leave": "leaves"}[e.what]
        print(f"  {e.time_s:>3} s  the {e.kind} {what}" + (f" {e.colour}" if e.what != "leave" else ""))

    asks = []
    for i, q in enumerate(clip.questions):
        question = Question(id=str(i), video=str(video), time_s=q.time_s, question=q.question,
                            options=tuple(q.options), answer=q.answer, task=q.task, split=q.split)
        asks += ["--ask", f"{q.time_s}:{prompt(question)}"]

    with HermesServer(args.model, extra_args=["--dtype", "float32", "--enable-metrics"],
                      log_path=cache / "hermes-serve.log") as server:
        print(f"server  {server.base_url} up in {server.startup_seconds:.1f} s (log: {server.log_path})\n")
        cli = [str(video), "--fps", str(args.fps), "--chunk", str(args.chunk), "--budget", str(args.budget),
               "--policy", args.policy, "--max-tokens", "12", "--base-url", f"{server.base_url}/v1", *asks]
        t0 = time.perf_counter()
        code = hermes_stream.main(cli)
        print(f"\nanswer key ({time.perf_counter() - t0:.1f} s of streaming):")
        for q in clip.questions:
            print(f"  @ {q.time_s:>3} s  [{q.split}] {q.question} -> {q.answer_text}. Answer: {q.answer}")
        print("\nserver metrics (/metrics)")
        for line in httpx.get(f"{server.base_url}/metrics", timeout=30).text.splitlines():
            if line.startswith(("hermes_streams_open", "hermes_compressions_total", "hermes_appended_tokens_total",
                                "hermes_ask_ttft_seconds_count", "hermes_ask_ttft_seconds_sum",
                                "hermes_compression_seconds_sum", "hermes_compression_seconds_count")):
                print(f"  {line}")
    print("server stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
