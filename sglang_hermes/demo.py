"""The README's main job: a real hermes-serve on a tiny model, a synthetic video, answers and timings.

Builds the tiny Qwen2.5-VL once into ``.cache/``, starts ``hermes-serve``, sends an encoded mp4 with
the standard ``openai`` client, streams the answer to measure time to first token, prints the
server-side hermes state, and always shuts the server down.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

import httpx
import openai

from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import encode_mp4, synthetic_frames

QUESTIONS = ["What happens in the video?", "Which object moves fastest?"]


def ask(client: openai.OpenAI, content: list[dict], max_tokens: int) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    ttft = None
    parts = []
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens, temperature=0, stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - t0
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts), ttft or float("nan"), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)

    model_dir = Path(args.cache_dir) / "tiny-qwen2.5-vl"
    t0 = time.perf_counter()
    if not (model_dir / "config.json").exists():
        build_tiny_qwen2_5_vl(model_dir)
    print(f"model     {model_dir} (tiny random-weight Qwen2.5-VL, ready in {time.perf_counter() - t0:.1f} s)")

    mp4 = encode_mp4(synthetic_frames(args.frames, size=112), fps=args.fps)
    video_part = {"type": "video_url",
                  "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(mp4).decode()}}
    print(f"video     {args.frames} frames, 112x112, {args.fps:g} fps, {len(mp4)} bytes of H.264 mp4")

    with HermesServer(model_dir.resolve(), extra_args=["--enable-streaming-session", "--dtype", "float32"],
                      log_path=Path(args.cache_dir).resolve() / "hermes-serve.log") as server:
        print(f"server    {server.base_url} up in {server.startup_seconds:.1f} s (log: {server.log_path})")
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
        for question in QUESTIONS:
            answer, ttft, total = ask(client, [video_part, {"type": "text", "text": question}], args.max_tokens)
            print(f"question  {question}")
            print(f"answer    {answer!r}  (ttft {ttft * 1000:.0f} ms, total {total * 1000:.0f} ms)")
        state = httpx.get(f"{server.base_url}/server_info").json()["internal_states"][0]
        print("hermes    " + json.dumps(state.get("hermes")))
        hermes = state.get("hermes") or {}
        print(f"kv pool   {hermes.get('kv_available_slots')} of {hermes.get('kv_total_slots')} token slots available")
    print("server stopped")


if __name__ == "__main__":
    main()
