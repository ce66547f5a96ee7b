"""The README's main job: a real hermes-serve on a tiny model, a video streamed into it, answers and stats.

Builds the tiny Qwen2.5-VL once into ``.cache/``, writes a synthetic H.264 mp4, starts ``hermes-serve``
and runs ``hermes-stream`` on the file: frames sampled at --fps, appended chunk by chunk with the
standard ``openai`` client, questions asked as the stream passes their time. It prints the per-chunk
table (time, tokens seen, tokens held, append ms) and each answer's time to first token, then the
server's own stream metrics, and always shuts the server down.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx

from clients import hermes_stream
from sglang_hermes.media import encode_mp4
from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames

QUESTIONS = ["4:What is moving?", "10:What happened so far?", "16:Where is the square now?"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0, help="length of the synthetic video")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second streamed")
    parser.add_argument("--chunk", type=int, default=4, help="frames per append")
    parser.add_argument("--budget", type=int, default=64, help="video tokens kept per layer")
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)

    cache = Path(args.cache_dir).resolve()
    model_dir = cache / "tiny-qwen2.5-vl"
    t0 = time.perf_counter()
    if not (model_dir / "config.json").exists():
        build_tiny_qwen2_5_vl(model_dir)
    print(f"model   {model_dir} (tiny random-weight Qwen2.5-VL, ready in {time.perf_counter() - t0:.1f} s)")
    video = cache / "demo.mp4"
    source_fps = 8.0
    video.write_bytes(encode_mp4(synthetic_frames(int(args.seconds * source_fps), size=112), fps=source_fps))
    print(f"video   {video} ({args.seconds:g} s, 112x112, {source_fps:g} fps, H.264)")

    with HermesServer(model_dir, extra_args=["--dtype", "float32", "--enable-metrics"],
                      log_path=cache / "hermes-serve.log") as server:
        print(f"server  {server.base_url} up in {server.startup_seconds:.1f} s (log: {server.log_path})\n")
        cli = [str(video), "--fps", str(args.fps), "--chunk", str(args.chunk), "--budget", str(args.budget),
               "--max-tokens", "24", "--base-url", f"{server.base_url}/v1"]
        for q in QUESTIONS:
            cli += ["--ask", q]
        code = hermes_stream.main(cli)
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
