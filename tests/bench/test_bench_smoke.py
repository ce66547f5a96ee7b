"""The serving benchmarks run end to end (--smoke: the tiny model, a few chunks), so they cannot rot.

Each script runs against the session's shared hermes-serve on the same tiny model (``--base-url``; a
script starts its own server only when run by hand), so the suite pays no server start for them.
Timings are never asserted (the machines are noisy):
only that every script exits 0, reports every row it promises, and that its token accounting is sane
(hermes holds at most prefix + budget, a `full` stream grows by every chunk).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.server


def run_smoke(script: str, tmp_path: Path, server) -> tuple[str, dict]:
    out_json, png = tmp_path / f"{script}.json", tmp_path / f"{script}.png"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--smoke", "--json", str(out_json),
                           "--plot", str(png), "--base-url", server.base_url, "--server-pid", str(server.proc.pid)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{script} --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return proc.stdout, json.loads(out_json.read_text())


def test_ttft_vs_frames_smoke(tmp_path, qwen_server):
    stdout, data = run_smoke("ttft_vs_frames", tmp_path, qwen_server)
    rows, budget = data["rows"], data["budget_tokens"]
    assert [r["frames"] for r in rows] == [16, 32, 48]
    prefix = rows[0]["prefix_len"]
    assert prefix > 0
    for r in rows:
        for approach in ("hermes", "full", "fifo", "sink_window", "stateless"):
            assert 0 < r[f"ttft_ms_{approach}"] < 60_000
        for policy in ("hermes", "fifo", "sink_window"):
            assert r[f"held_{policy}"] <= prefix + budget
        assert r["held_full"] == prefix + r["tokens_seen"]  # full keeps every token
        assert r["kv_bytes_full"] >= r["kv_bytes_hermes"] > 0
        assert r["rss_bytes"] > 100 << 20
    assert [r["tokens_seen"] for r in rows] == sorted({r["tokens_seen"] for r in rows})
    assert rows[-1]["tokens_seen"] > budget and rows[-1]["compressions_hermes"] > 0
    assert rows[-1]["held_full"] > rows[-1]["held_hermes"]
    # the stateless request carries every frame: it attends to about as many tokens as the full stream holds
    assert rows[-1]["prompt_tokens_stateless"] >= rows[-1]["tokens_seen"]
    assert data["summary"]["hermes_held_within_budget"] and data["summary"]["full_grows_linearly"]
    for label in ("TTFT of a question", "stateless / hermes TTFT", "hermes tokens held once over budget"):
        assert label in stdout


def test_ingest_smoke(tmp_path, qwen_server):
    stdout, data = run_smoke("ingest", tmp_path, qwen_server)
    rows, budget, prefix = data["rows"], data["budget_tokens"], data["prefix_len"]
    assert [r["chunk"] for r in rows] == list(range(1, 7))
    for r in rows:
        for policy in ("hermes", "full", "fifo"):
            assert r[f"{policy}_ms"] > 0
        assert r["hermes_held"] <= prefix + budget and r["fifo_held"] <= prefix + budget
        parts = r["hermes_score_ms"] + r["hermes_plan_ms"] + r["hermes_compact_ms"]
        assert 0 <= parts <= r["hermes_ms"] and r["hermes_forward_ms"] >= 0
        assert r["full_score_ms"] == r["full_plan_ms"] == r["full_compact_ms"] == 0  # full does none of it
    assert all(b["full_held"] > a["full_held"] for a, b in zip(rows, rows[1:]))
    # HERMES' own work is reported: guidance is scored on every append, compaction once over budget
    assert data["summary"]["last_append_ms_reported"]
    assert all(r["hermes_score_ms"] > 0 for r in rows)
    assert any(r["hermes_compact_ms"] > 0 for r in rows if r["hermes_compressions"] > 0)
    assert {p["phase"] for p in data["phases"]} == {"under budget", "compressing"}
    assert 0 < data["summary"]["hermes_share_of_ingest"] < 1
    assert "HERMES' own work" in stdout and "hermes / full append" in stdout


def test_concurrency_smoke(tmp_path, qwen_server):
    stdout, data = run_smoke("concurrency", tmp_path, qwen_server)
    rows = data["rows"]
    assert [r["streams"] for r in rows] == [1, 2]
    for r in rows:
        assert r["errors"] == 0 and r["within_budget"]
        assert r["frames"] == r["streams"] * data["chunks_per_stream"] * data["chunk_frames"]
        assert r["frames_per_s"] > 0 and r["asks"] == r["streams"] * data["chunks_per_stream"]
        assert 0 < r["ttft_p50_ms"] <= r["ttft_p95_ms"]
        assert r["held_max"] <= r["prefix_len"] + data["budget_tokens"]
        assert r["rss_peak_bytes"] > 100 << 20
    assert data["summary"]["all_within_budget"]
    assert "within prefix + budget after every append: yes" in stdout
