"""``hermes-eval`` on a 2-clip synthetic benchmark against a real hermes-serve: two policies and the
stateless recent-frames baseline, the same questions. Checks scheduling (each question sees exactly the
frames up to its time, by the stream's own frame count), grading and resume; never accuracy."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import httpx

from clients.eval.cli import main
from clients.eval.readers import load_questions
from clients.eval.scoring import grade
from clients.eval.synth import write_benchmark
from clients.frames import sample_video

SYSTEMS = ("hermes@48", "fifo@48", "recent-4")


def test_eval_schedules_grades_and_resumes(qwen_server, tmp_path):
    bench = write_benchmark(tmp_path / "bench", 2, seed=5, duration_s=12, questions=2)
    questions = {q.id: q for q in load_questions(bench)}
    results, report = tmp_path / "results.jsonl", tmp_path / "report.md"
    argv = [str(bench), "--results", str(results), "--report", str(report), "--policies", "hermes,fifo",
            "--budget", "48", "--fps", "1", "--chunk", "4", "--max-tokens", "4", "--stateless-recent", "4",
            "--base-url", f"{qwen_server.base_url}/v1", "--no-progress"]
    with redirect_stdout(io.StringIO()) as out:
        assert main(argv) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted((r["system"], r["question_id"]) for r in rows) == sorted(
        (s, i) for s in SYSTEMS for i in questions)

    frame_times = {q.video: [t for t, _ in sample_video(q.video, 1.0)] for q in questions.values()}
    for r in rows:
        q = questions[r["question_id"]]
        assert r["error"] is None and r["ttft_s"] > 0 and r["tokens_held"] > 0
        past = sum(t <= q.time_s for t in frame_times[q.video])  # 1 fps: frames at 0, 1, ..., time_s
        if r["system"] == "recent-4":
            assert r["frames_seen"] == min(4, past)
        else:  # the server's count of the stream's frames when the question was asked
            assert r["frames_seen"] == r["frames_sent"] == past
        assert (r["said"], r["correct"]) == grade(q, r["text"])
    table = report.read_text()
    assert table == out.getvalue()
    assert [line.split(" | ")[0] for line in table.splitlines()[2:5]] == [f"| {s}" for s in SYSTEMS]
    assert httpx.get(f"{qwen_server.base_url}/v1/sessions").json()["data"] == []  # every stream closed

    # A rerun asks nothing; after losing one system's rows of one video it asks exactly those again.
    with redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    assert results.read_text().splitlines() == [json.dumps(r) for r in rows]
    video = rows[0]["video"]
    lost = [r for r in rows if r["system"] == "fifo@48" and r["video"] == video]
    kept = [r for r in rows if r not in lost]
    results.write_text("".join(json.dumps(r) + "\n" for r in kept))
    with redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    again = [json.loads(line) for line in results.read_text().splitlines()]
    assert again[: len(kept)] == kept
    assert sorted(r["question_id"] for r in again[len(kept):]) == sorted(r["question_id"] for r in lost)
    assert all(r["frames_seen"] == r2["frames_seen"] for r, r2 in zip(sorted(lost, key=str),
                                                                       sorted(again[len(kept):], key=str)))
