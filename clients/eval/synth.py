"""A synthetic streaming benchmark drawn here: coloured shapes that appear, change colour and leave, with
multiple-choice questions asked at set times, written in StreamingBench's format (+ mp4 files).

Why: answer quality needs questions whose answers are known exactly and whose evidence sits at a known
place in the stream, some in the current scene (perception), some only earlier (memory: a colour since
changed, a shape that left, how many appeared) and some about the order of events. Each shape has its own
horizontal lane, so shapes never hide each other and a frame can be read back to check an answer.

A clip is a ``Clip`` (events, motion, questions with their answers) made from a seed before any pixel is
drawn; ``render`` draws it at any rate and size. Everything is seeded and deterministic, so the same clips
can later be drawn again as training data (``Clip`` carries the events and the answers' texts).

    python -m clients.eval.synth OUT_DIR --clips 20 --seed 0     # or: hermes-eval-synth OUT_DIR ...
    hermes-eval OUT_DIR/questions_synth.json --policies hermes,fifo --budget 256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from clients.eval.questions import Split, letter
from sglang_hermes.testing.video import encode_mp4

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 230),
    "yellow": (235, 215, 40), "white": (240, 240, 240), "purple": (150, 60, 200)}
KINDS = ("circle", "square", "triangle", "diamond")  # one lane each, top to bottom
BACKGROUND = (28, 28, 36)
ANNOTATIONS = "questions_synth.json"


class Shape(BaseModel):
    kind: str
    colour: str
    appear_s: int
    change_s: int | None = None
    new_colour: str | None = None
    leave_s: int | None = None
    speed: float  # lane widths per second
    phase: float

    def colour_at(self, t: float) -> str | None:
        """Its colour at t, or None while it is not on screen."""
        if t < self.appear_s or (self.leave_s is not None and t >= self.leave_s):
            return None
        return self.new_colour if self.change_s is not None and t >= self.change_s else self.colour


class Event(BaseModel):
    time_s: int
    what: Literal["appear", "change_colour", "leave"]
    kind: str
    colour: str


class SynthQuestion(BaseModel):
    time_s: int
    task: str
    split: Split
    question: str
    options: list[str]
    answer: str  # the option's letter
    answer_text: str


class Clip(BaseModel):
    name: str
    seed: int
    duration_s: int
    shapes: list[Shape]
    questions: list[SynthQuestion]

    @property
    def events(self) -> list[Event]:
        out = []
        for s in self.shapes:
            out.append(Event(time_s=s.appear_s, what="appear", kind=s.kind, colour=s.colour))
            if s.change_s is not None:
                out.append(Event(time_s=s.change_s, what="change_colour", kind=s.kind, colour=s.new_colour))
            if s.leave_s is not None:
                out.append(Event(time_s=s.leave_s, what="leave", kind=s.kind, colour=s.colour_at(s.leave_s - 1)))
        return sorted(out, key=lambda e: (e.time_s, KINDS.index(e.kind)))

    def scene(self, t: float) -> dict[str, str]:
        """kind -> colour of every shape on screen at t."""
        return {s.kind: c for s in self.shapes if (c := s.colour_at(t)) is not None}


# -- events ------------------------------------------------------------------------------------------

def make_clip(seed: int, index: int, *, duration_s: int = 24, questions: int = 5) -> Clip:
    """One clip: 2-4 shapes, events on even seconds, questions on odd seconds with no event in the second
    before (so at least 3 s after the last one: any rate of 1 fps or more shows the scene the answer
    describes)."""
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(2, len(KINDS) + 1))
    kinds = [KINDS[i] for i in rng.permutation(len(KINDS))[:n]]
    slots = list(range(2, duration_s // 2 + 1, 2))
    appears = [0, *sorted(int(x) for x in rng.choice(slots, size=n - 1, replace=False))]
    names = list(PALETTE)
    shapes = []
    for kind, appear in zip(kinds, appears):
        colour = names[int(rng.integers(len(names)))]
        change = new = leave = None
        if rng.random() < 0.6 and appear + 4 <= duration_s - 6:
            change = int(rng.choice(range(appear + 4, duration_s - 5, 2)))
            new = names[int(rng.choice([i for i, c in enumerate(names) if c != colour]))]
        after = max(appear, change or 0) + 4
        if appear > 0 and rng.random() < 0.4 and after <= duration_s - 4:
            leave = int(rng.choice(range(after, duration_s - 3, 2)))
        shapes.append(Shape(kind=kind, colour=colour, appear_s=appear, change_s=change, new_colour=new,
                            leave_s=leave, speed=float(rng.uniform(0.15, 0.4)), phase=float(rng.uniform(0, 2))))
    clip = Clip(name=f"synth_{seed}_{index:04d}", seed=seed, duration_s=duration_s, shapes=shapes, questions=[])
    clip.questions = _questions(clip, rng, questions)
    return clip


def _questions(clip: Clip, rng: np.random.Generator, count: int) -> list[SynthQuestion]:
    event_times = {e.time_s for e in clip.events}
    times = [t for t in range(3, clip.duration_s, 2) if not event_times & {t - 1, t}]
    out: list[SynthQuestion] = []
    for t in sorted(int(x) for x in rng.permutation(times)[: count]):
        candidates = [q for make in _TEMPLATES if (q := make(clip, t, rng)) is not None]
        used = [sum(o.task == q.task for o in out) for q in candidates]  # the least asked tasks first
        fresh = [q for q, n in zip(candidates, used) if n == min(used, default=0)]
        if fresh:
            out.append(fresh[int(rng.integers(len(fresh)))])
    return out


def _choice(t: int, task: str, split: Split, question: str, right: str, wrong: list[str],
            rng: np.random.Generator, ordered: bool = False) -> SynthQuestion:
    options = [right, *wrong]
    options = sorted(options, key=_order_key) if ordered else [options[i] for i in rng.permutation(len(options))]
    i = options.index(right)
    return SynthQuestion(time_s=t, task=task, split=split, question=question, options=options, answer=letter(i),
                         answer_text=right)


def _order_key(option: str):
    return (0, int(option)) if option.isdigit() else (1, option)


def _distractors(rng, pool: list[str], exclude: set[str], k: int, must: list[str] = ()) -> list[str]:
    rest = [x for x in pool if x not in exclude and x not in must]
    return [*must, *(rest[i] for i in rng.permutation(len(rest))[: k - len(must)])]


def _colour_now(clip, t, rng):
    scene = clip.scene(t)
    if not scene:
        return None
    kind = sorted(scene)[int(rng.integers(len(scene)))]
    shape = next(s for s in clip.shapes if s.kind == kind)
    before = [shape.colour] if shape.change_s is not None and shape.change_s <= t else []
    wrong = _distractors(rng, list(PALETTE), {scene[kind]}, 3, before)
    return _choice(t, "Colour Now", "perception", f"What colour is the {kind} right now?", scene[kind], wrong, rng)


def _count_now(clip, t, rng):
    n = len(clip.scene(t))
    wrong = _distractors(rng, [str(i) for i in range(len(KINDS) + 1)], {str(n)}, 3)
    return _choice(t, "Count Now", "perception", "How many shapes are on the screen right now?", str(n), wrong, rng,
                   ordered=True)


def _first_colour(clip, t, rng):
    changed = [s for s in clip.shapes if s.change_s is not None and s.change_s <= t - 2]
    if not changed:
        return None
    s = changed[int(rng.integers(len(changed)))]
    wrong = _distractors(rng, list(PALETTE), {s.colour}, 3, [s.new_colour])
    return _choice(t, "Colour Before", "memory", f"What colour was the {s.kind} when it first appeared?",
                   s.colour, wrong, rng)


def _which_left(clip, t, rng):
    left = [s for s in clip.shapes if s.leave_s is not None and s.leave_s <= t - 2]
    if len(left) != 1:
        return None
    wrong = [k for k in KINDS if k != left[0].kind]
    return _choice(t, "Which Left", "memory", "Which shape has left the screen?", left[0].kind, wrong, rng)


def _count_so_far(clip, t, rng):
    if not any(s.leave_s is not None and s.leave_s <= t - 2 for s in clip.shapes):
        return None  # with nobody gone it is the same question as Count Now
    n = sum(s.appear_s <= t for s in clip.shapes)
    wrong = _distractors(rng, [str(i) for i in range(1, len(KINDS) + 1)], {str(n)}, 3)
    return _choice(t, "Count So Far", "memory", "How many different shapes have appeared so far, including any "
                   "that have left?", str(n), wrong, rng, ordered=True)


def _appearance_order(clip, t, rng):
    seen = sorted((s for s in clip.shapes if s.appear_s <= t - 2), key=lambda s: s.appear_s)
    if len(seen) < 2:
        return None
    return _choice(t, "Appearance Order", "order", "Which of these shapes appeared first?", seen[0].kind,
                   [s.kind for s in seen[1:]], rng)


_TEMPLATES = (_colour_now, _count_now, _first_colour, _which_left, _count_so_far, _appearance_order)


# -- pixels --------------------------------------------------------------------------------------------

def lane_box(kind: str, t: float, size: int, shape: Shape) -> tuple[int, int, int]:
    """(top, left, side) of a shape's box at t: it slides back and forth along its own lane."""
    lane = size // len(KINDS)
    side = lane * 4 // 5
    travel = size - side
    x = (shape.phase + shape.speed * t * len(KINDS)) % 2.0  # lane widths, folded into a back-and-forth
    left = int(round(travel * (x if x <= 1 else 2 - x)))
    return KINDS.index(kind) * lane + (lane - side) // 2, left, side


def _mask(kind: str, side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    c = side / 2
    if kind == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= c * c
    if kind == "square":
        return np.ones((side, side), bool)
    if kind == "triangle":
        return np.abs(xx - c) <= yy / 2
    return np.abs(xx - c) + np.abs(yy - c) <= c  # diamond


def render(clip: Clip, fps: float = 2.0, size: int = 112) -> np.ndarray:
    """Frames [n, size, size, 3] uint8 at k / fps seconds for the clip's duration."""
    n = int(round(clip.duration_s * fps))
    frames = np.empty((n, size, size, 3), np.uint8)
    frames[:] = BACKGROUND
    for i in range(n):
        t = i / fps
        for shape in clip.shapes:
            colour = shape.colour_at(t)
            if colour is None:
                continue
            top, left, side = lane_box(shape.kind, t, size, shape)
            frames[i, top:top + side, left:left + side][_mask(shape.kind, side)] = PALETTE[colour]
    return frames


def read_lane_colours(frame: np.ndarray) -> dict[str, str]:
    """kind -> colour read back from a (decoded) frame: each lane's dominant palette colour, if any."""
    lane = frame.shape[0] // len(KINDS)
    names, rgb = list(PALETTE), np.array(list(PALETTE.values()), float)
    out = {}
    for i, kind in enumerate(KINDS):
        px = frame[i * lane:(i + 1) * lane].reshape(-1, 3).astype(float)
        dist = np.linalg.norm(px[:, None, :] - rgb[None], axis=2)
        near = dist.min(axis=1) < 60
        if near.sum() >= lane:  # at least a lane-width of shape pixels
            out[kind] = names[int(np.bincount(dist[near].argmin(axis=1), minlength=len(names)).argmax())]
    return out


# -- files ---------------------------------------------------------------------------------------------

def hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def streamingbench_entry(clip: Clip, video_path: str) -> dict:
    """One video of StreamingBench's ``questions_*.json``, plus our ``split`` and the clip's events."""
    return {"video_path": video_path, "video_categories": "synthetic shapes",
            "questions": [{"task_type": q.task, "question": q.question, "time_stamp": hms(q.time_s),
                           "options": [f"{letter(i)}. {o}" for i, o in enumerate(q.options)], "answer": q.answer,
                           "split": q.split, "answer_text": q.answer_text} for q in clip.questions],
            "events": [e.model_dump() for e in clip.events], "clip": clip.model_dump()}


def write_benchmark(out_dir: str | Path, clips: int, *, seed: int = 0, duration_s: int = 24, questions: int = 5,
                    fps: float = 2.0, size: int = 112) -> Path:
    """``clips`` clips as ``videos/<name>.mp4`` and ``questions_synth.json`` under ``out_dir``; returns the json."""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(clips):
        clip = make_clip(seed, index, duration_s=duration_s, questions=questions)
        rel = f"videos/{clip.name}.mp4"
        (out / rel).write_bytes(encode_mp4(render(clip, fps, size), fps=fps))
        entries.append(streamingbench_entry(clip, rel))
    path = out / ANNOTATIONS
    path.write_text(json.dumps(entries, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hermes-eval-synth", description="Write a synthetic streaming benchmark "
                                "(StreamingBench format + mp4 files).")
    p.add_argument("out_dir")
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=int, default=24, help="seconds per clip (>= 12)")
    p.add_argument("--questions", type=int, default=5, help="questions per clip (at most)")
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of the mp4 files")
    p.add_argument("--size", type=int, default=112, help="frame side in pixels (a multiple of 8)")
    args = p.parse_args(argv)
    if args.clips < 1 or args.duration < 12 or args.questions < 1 or args.size < 32 or args.size % 8 or args.fps < 1:
        p.error("need --clips >= 1, --duration >= 12, --questions >= 1, --fps >= 1, --size >= 32 and a multiple of 8")
    path = write_benchmark(args.out_dir, args.clips, seed=args.seed, duration_s=args.duration,
                           questions=args.questions, fps=args.fps, size=args.size)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
