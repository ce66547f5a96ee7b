"""``hermes-stream`` on a real mp4 against a real hermes-serve, as a user runs it (subprocess, --json)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from sglang_hermes.media import encode_mp4
from sglang_hermes.testing.video import synthetic_frames

from .streams import hermes_state, wait_available


def test_hermes_stream_streams_a_file_and_answers_on_time(qwen_server, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(encode_mp4(synthetic_frames(40, size=112, seed=31), fps=8.0))  # 5 s
    free_before = wait_available(qwen_server, hermes_state(qwen_server)["kv_available_slots"])
    exe = shutil.which("hermes-stream", path=str(Path(sys.executable).parent))
    out = subprocess.run([exe, str(video), "--fps", "2", "--chunk", "4", "--budget", "48", "--max-tokens", "4",
                          "--ask", "1:What moves?", "--ask", "4.5:And now?", "--json",
                          "--base-url", f"{qwen_server.base_url}/v1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "open" and kinds[-1] == "done"
    chunks = [e for e in events if e["event"] == "chunk"]
    answers = [e for e in events if e["event"] == "answer"]
    assert [c["frames"] for c in chunks] == [4, 4, 2]  # 5 s at 2 fps = 10 frames
    assert [c["tokens_seen"] for c in chunks] == sorted({c["tokens_seen"] for c in chunks})
    prefix = chunks[0]["tokens_held"] - chunks[0]["tokens_seen"]
    assert all(c["tokens_held"] <= prefix + 48 for c in chunks) and chunks[-1]["compressions"] > 0
    # Each question comes right after the chunk that reached its time, with a TTFT.
    assert [(a["question"], a["after_chunk"]) for a in answers] == [("What moves?", 0), ("And now?", 2)]
    assert all(a["ttft_s"] > 0 and a["answer"] for a in answers)
    assert kinds.index("answer") == kinds.index("chunk") + 1
    done = events[-1]
    assert done["frames"] == 10 and done["stats"]["tokens_seen"] == chunks[-1]["tokens_seen"]
    # The CLI closed its stream: nothing is left on the server.
    assert httpx.get(f"{qwen_server.base_url}/v1/sessions").json()["data"] == []
    assert wait_available(qwen_server, free_before) == free_before
