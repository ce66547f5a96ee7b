"""Benchmark annotation files -> ``Question`` lists: StreamingBench, OVO-Bench, the HERMES authors' JSONs.

Formats (field names as the benchmarks ship them):
- StreamingBench ``questions_*.json``: ``[{video_path, questions: [{task_type, question, time_stamp
  "HH:MM:SS", options ["A. ...", ...], answer "A", required_ability?}]}]``. Our synthetic benchmark is
  written in this format too, with an extra ``split`` per question.
- OVO-Bench ``ovo_bench_new.json``: ``[{id, task, video, realtime, question, options, gt (index)}]`` for
  the backward and real-time tasks; the forward-active tasks (REC, SSR, CRR) carry ``test_info: [{realtime,
  ...}]`` and are asked again at each ``realtime`` (REC: a count; SSR and CRR: yes/no), as OVO-Bench does.
- The HERMES authors' converted JSONs (haowei-freesky/HERMES, ``data/``): ``[{video_id, video_path, task?,
  conversations: [{question, answer (the option's text), choices, end_time (seconds), task?}]}]``.

Video paths are resolved against ``video_root`` (default: the annotation file's folder); the authors'
absolute paths from their machine are matched by their trailing components under ``video_root``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from clients.eval.questions import Question, Split, content_id, letter

# Where each benchmark task falls: the current scene, earlier content, or the order of earlier events.
_PERCEPTION = {
    # StreamingBench real-time (and the HERMES authors' names for the same tasks)
    "Object Perception", "Object Recognition", "Attribute Perception", "Attribute Recognition",
    "Action Perception", "Action Recognition", "Text-Rich Understanding", "Spatial Understanding", "Counting",
    # OVO-Bench real-time visual perception
    "STU", "OJR", "ATR", "ACR", "OCR", "FPD",
}
_MEMORY = {"Event Understanding", "Clips Summarize", "Causal Reasoning", "EPM", "HLD"}
_ORDER = {"ASI"}
OVO_FORWARD = ("REC", "SSR", "CRR")
_LETTERED = re.compile(r"^\s*([A-Z])\s*[.):]\s*")


def split_of(task: str) -> Split:
    if task in _PERCEPTION:
        return "perception"
    if task in _MEMORY:
        return "memory"
    if task in _ORDER:
        return "order"
    return "other"


def hms_seconds(stamp: str) -> float:
    """"HH:MM:SS" (also "MM:SS", "SS", fractional seconds) -> seconds."""
    parts = stamp.strip().split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"not a HH:MM:SS time stamp: {stamp!r}")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def strip_letter(option: str, index: int) -> str:
    """"A. text" / "A.text" / "A) text" -> "text" when the letter is the option's own; else unchanged."""
    m = _LETTERED.match(option)
    return option[m.end():].strip() if m and m.group(1) == letter(index) else option.strip()


class VideoPaths:
    """Resolves an annotation's video path under ``root``; the file need not exist yet (a missing one
    fails when it is streamed, so a benchmark can be read and listed without its videos)."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, path: str) -> str:
        p = Path(path)
        if p.is_absolute() and p.exists():
            return str(p)
        parts = [x for x in p.parts if x not in ("/", ".")]
        candidates = [self.root.joinpath(*parts[i:]) for i in range(len(parts))]
        return str(next((c for c in candidates if c.exists()), candidates[0]))


def read_streamingbench(data: list, videos: VideoPaths) -> list[Question]:
    out = []
    for entry in data:
        video = videos(entry["video_path"])
        for q in entry["questions"]:
            if not q.get("options"):
                continue  # open-ended questions (a few omni/contextual ones) have no letter to score
            options = tuple(strip_letter(o, i) for i, o in enumerate(q["options"]))
            task = q["task_type"]
            out.append(Question(
                id=q.get("id") or content_id(q["time_stamp"], q["question"], *options),
                video=video, time_s=hms_seconds(q["time_stamp"]), question=q["question"], options=options,
                answer=str(q["answer"]).strip()[:1].upper(), task=task, split=q.get("split") or split_of(task)))
    return out


def read_ovobench(data: list, videos: VideoPaths) -> list[Question]:
    out = []
    for item in data:
        task, video = item["task"], videos(item["video"])
        if task not in OVO_FORWARD:
            out.append(Question(id=str(item["id"]), video=video, time_s=float(item["realtime"]),
                                question=item["question"], options=tuple(item["options"]),
                                answer=letter(int(item["gt"])), task=task, split=split_of(task)))
            continue
        for i, probe in enumerate(item["test_info"]):  # forward-active: the same task re-asked later
            question, kind, answer = _forward_probe(task, item, probe)
            out.append(Question(id=f"{item['id']}/{i}", video=video, time_s=float(probe["realtime"]),
                                question=question, kind=kind, answer=answer, task=task, split="other"))
    return out


def _forward_probe(task: str, item: dict, probe: dict) -> tuple[str, str, str]:
    """OVO-Bench's forward tasks as (question, kind, answer): a running count, or yes/no."""
    if task == "REC":
        return (f"People in the video may repeat an action. How many times in total have they "
                f"{item['activity']} so far?", "number", str(int(probe["count"])))
    answer = "yes" if int(probe["type"]) == 1 else "no"
    if task == "SSR":
        return (f"This video is a tutorial made of steps. Is the person performing this step right now: "
                f"{probe['step']}", "yes_no", answer)
    return (f"Do the frames seen so far, especially the latest ones, give enough information to answer this "
            f"question: {item['question']}", "yes_no", answer)


def read_hermes(data: list, videos: VideoPaths) -> list[Question]:
    out = []
    for entry in data:
        video = videos(entry["video_path"])
        for i, c in enumerate(entry["conversations"]):
            choices = tuple(str(x).strip() for x in c["choices"])
            answer = str(c["answer"]).strip()
            if answer not in choices:
                raise ValueError(f"video {entry.get('video_id')}: answer {answer!r} is not one of its choices")
            task = c.get("task") or entry.get("task") or "unknown"
            out.append(Question(id=f"{entry.get('video_id', video)}/{i}", video=video, time_s=float(c["end_time"]),
                                question=c["question"], options=choices, answer=letter(choices.index(answer)),
                                task=task, split=split_of(task)))
    return out


READERS: dict[str, Callable[[list, VideoPaths], list[Question]]] = {
    "streamingbench": read_streamingbench, "ovobench": read_ovobench, "hermes": read_hermes}


def detect_format(data) -> str:
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ValueError("an annotation file is a non-empty JSON list of objects")
    first = data[0]
    if "questions" in first:
        return "streamingbench"
    if "conversations" in first:
        return "hermes"
    if "task" in first and ("realtime" in first or "test_info" in first):
        return "ovobench"
    raise ValueError(f"unknown annotation format (first entry's keys: {sorted(first)})")


def load_questions(path: str | Path, fmt: str = "auto", video_root: str | Path | None = None) -> list[Question]:
    """Every scorable question of an annotation file, in file order."""
    path = Path(path)
    data = json.loads(path.read_text())
    fmt = detect_format(data) if fmt == "auto" else fmt
    return READERS[fmt](data, VideoPaths(Path(video_root) if video_root else path.parent))
