"""Resume: results are JSON lines; a rerun asks only questions without a good row (missing or errored)."""

from __future__ import annotations

import io
import json

import openai

from clients.eval.cli import build_parser, run, selected_questions
from clients.eval.runners import StatelessRunner, question_row
from clients.eval.schedule import episodes


class Recorder:
    """A runner that answers every question it is given right (or fails those in ``fail``)."""

    def __init__(self, name: str, fail: frozenset = frozenset()):
        self.name, self.fail, self.calls = name, fail, []

    def run(self, ep, todo, on_row):
        self.calls.append(sorted(todo))
        for q in ep.questions:
            if q.id in todo:
                error = "refused" if q.id in self.fail else None
                on_row(question_row(self.name, ep, q, text=q.answer, said=q.answer, correct=error is None,
                                    error=error, ttft_s=0.01, tokens_held=10, ingest_s=1.0))


def bench(tmp_path):
    qs = [{"task_type": task, "question": f"q{i}", "time_stamp": f"00:00:0{i}", "answer": "A", "options": ["x", "y"]}
          for i, task in enumerate(["Object Perception", "Clips Summarize", "Counting"])]
    path = tmp_path / "questions_x.json"
    path.write_text(json.dumps([{"video_path": "a.mp4", "questions": qs[:2]},
                                {"video_path": "b.mp4", "questions": qs[2:]}]))
    return path


def go(tmp_path, runners):
    args = build_parser().parse_args([str(bench(tmp_path)), "--results", str(tmp_path / "r.jsonl"), "--no-progress"])
    return run(args, selected_questions(args), runners, out=io.StringIO())


def test_a_rerun_asks_only_what_is_missing_or_failed(tmp_path):
    first = [Recorder("hermes@64"), Recorder("recent-4")]
    table = go(tmp_path, first)
    assert [len(r.calls) for r in first] == [2, 2]  # two videos each
    assert "| hermes@64 | 100.0 (3) |" in table
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 6

    again = [Recorder("hermes@64"), Recorder("recent-4")]
    assert go(tmp_path, again) == table
    assert [r.calls for r in again] == [[], []]  # nothing asked twice

    # An interrupted run: the last row lost, the one before cut in half.
    kept = [json.loads(x) for x in lines[:4]]
    (tmp_path / "r.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    third = [Recorder("hermes@64"), Recorder("recent-4", fail=frozenset({kept[0]["question_id"]}))]
    go(tmp_path, third)
    missing = {(json.loads(x)["system"], json.loads(x)["question_id"]) for x in lines[4:]}
    asked = {(r.name, i) for r in third for call in r.calls for i in call}
    assert asked == missing


def test_errored_rows_are_retried_and_counted(tmp_path):
    args = build_parser().parse_args([str(bench(tmp_path))])
    failing = selected_questions(args)[0].id
    table = go(tmp_path, [Recorder("fifo@64", fail=frozenset({failing}))])
    assert "| fifo@64 | 66.7 (3) |" in table and table.splitlines()[2].endswith("| 1 |")  # one error
    retry = Recorder("fifo@64")
    assert "| fifo@64 | 100.0 (3) |" in go(tmp_path, [retry])
    assert retry.calls == [[failing]]  # only the failed question is asked again


def test_a_missing_video_is_an_error_row_per_question_not_a_crash(tmp_path):
    args = build_parser().parse_args([str(bench(tmp_path))])
    rows = []
    runner = StatelessRunner(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x"), 4, model="m", fps=1.0,
                             max_tokens=4)
    ep = episodes(selected_questions(args))[0]
    runner.run(ep, {q.id for q in ep.questions}, rows.append)  # no request is made: the video fails first
    assert [(r["question_id"], r["correct"]) for r in rows] == [(q.id, False) for q in ep.questions]
    assert all("a.mp4" in r["error"] for r in rows)
