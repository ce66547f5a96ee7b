"""The final markdown tables: per system, accuracy per split and per task, TTFT, tokens held, ingest time.

Accuracy is over every question the run covers, an unanswered (errored) question counting as wrong, with
the number of questions in brackets; errors are counted in their own column so a refused append is not
mistaken for a bad answer. TTFT and tokens held are medians over the answered questions (tokens held is the
stream's KV slots for a session; for the stateless baseline, the prompt tokens of its request).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from clients.eval.questions import SPLITS


def _acc(rows: list[dict]) -> str:
    if not rows:
        return "–"
    return f"{100.0 * sum(bool(r['correct']) for r in rows) / len(rows):.1f} ({len(rows)})"


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def ingest_seconds(rows: list[dict]) -> float:
    """Append time summed over episodes (each episode's rows carry its running total)."""
    per_episode: dict = defaultdict(float)
    for r in rows:
        episode = (r["video"], r["start_s"])
        per_episode[episode] = max(per_episode[episode], r.get("ingest_s") or 0.0)
    return sum(per_episode.values())


def markdown(rows: list[dict], systems: list[str]) -> str:
    by_system = {s: [r for r in rows if r["system"] == s] for s in systems}
    splits = [s for s in SPLITS if any(r["split"] == s for r in rows)]
    head = ["system", "accuracy", *splits, "TTFT p50 ms", "tokens held p50", "ingest s", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, rs in by_system.items():
        ok = [r for r in rs if r.get("error") is None]
        ttft = _median(r.get("ttft_s") for r in ok)
        cells = [system, _acc(rs), *(_acc([r for r in rs if r["split"] == s]) for s in splits),
                 _fmt(None if ttft is None else ttft * 1000, ".1f"),
                 _fmt(_median(r.get("tokens_held") for r in ok), ".0f"), f"{ingest_seconds(rs):.1f}",
                 str(len(rs) - len(ok))]
        lines.append("| " + " | ".join(cells) + " |")
    tasks = sorted({(r["split"], r["task"]) for r in rows}, key=lambda st: (SPLITS.index(st[0]), st[1]))
    lines += ["", "| task | split | " + " | ".join(systems) + " |", "|" + "---|" * (len(systems) + 2)]
    for split, task in tasks:
        cells = [_acc([r for r in by_system[s] if r["task"] == task]) for s in systems]
        lines.append(f"| {task} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
