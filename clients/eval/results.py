"""Results as JSON lines, one row per (system, video, question): appended as they come, so a run can stop
at any moment and a rerun asks only what is missing.

A row: ``system, video, question_id, start_s, time_s, task, split, kind, answer`` (the question), ``text,
said, correct`` (the answer and its grade), ``ttft_s, total_s, tokens_held, frames_seen, frames_sent,
ingest_s`` (measured; ``ingest_s`` is the append time of the episode so far) and ``error`` (None, or why
the question could not be asked: such rows are asked again on a rerun). The last row of a key wins.
"""

from __future__ import annotations

import json
from pathlib import Path

Key = tuple[str, str, str]


def key(row: dict) -> Key:
    return row["system"], row["video"], row["question_id"]


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[Key, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run: that question is asked again
                self.rows[key(row)] = row

    def done(self, k: Key) -> bool:
        row = self.rows.get(k)
        return row is not None and row.get("error") is None

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows[key(row)] = row
