"""The synthetic benchmark: deterministic, answers that follow from the events, frames that show them."""

from __future__ import annotations

import json

from clients.eval.readers import load_questions
from clients.eval.synth import make_clip, main, read_lane_colours, render, write_benchmark
from clients.frames import sample_video


def replay(events, t: float) -> dict[str, str]:
    """kind -> colour on screen at t, from the event list alone."""
    scene = {}
    for e in events:
        if e.time_s > t:
            break
        if e.what == "leave":
            scene.pop(e.kind)
        else:
            scene[e.kind] = e.colour
    return scene


def expected_answer(clip, q) -> str:
    events, t = clip.events, q.time_s
    if q.task == "Colour Now":
        return replay(events, t)[q.question.split("the ")[1].split(" right")[0]]
    if q.task == "Count Now":
        return str(len(replay(events, t)))
    if q.task == "Colour Before":
        kind = q.question.split("the ")[1].split(" when")[0]
        return next(e.colour for e in events if e.kind == kind and e.what == "appear")
    if q.task == "Which Left":
        (left,) = [e.kind for e in events if e.what == "leave" and e.time_s <= t]
        return left
    if q.task == "Count So Far":
        return str(sum(e.what == "appear" and e.time_s <= t for e in events))
    assert q.task == "Appearance Order"
    return next(e.kind for e in events if e.what == "appear" and e.kind in q.options)


def test_answers_follow_from_the_events_and_the_frames_show_them():
    tasks = set()
    for index in range(20):
        clip = make_clip(7, index)
        frames = render(clip, fps=2.0, size=112)
        assert clip.questions
        for q in clip.questions:
            tasks.add(q.task)
            assert q.options[ord(q.answer) - ord("A")] == q.answer_text == expected_answer(clip, q)
            assert len(set(q.options)) == len(q.options) >= 2
            # Each question's scene is stable for a second before it and is what the frame shows.
            assert replay(clip.events, q.time_s) == replay(clip.events, q.time_s - 1)
            assert read_lane_colours(frames[2 * q.time_s]) == replay(clip.events, q.time_s)
    assert tasks == {"Colour Now", "Count Now", "Colour Before", "Which Left", "Count So Far", "Appearance Order"}


def test_written_benchmark_is_deterministic_and_read_back(tmp_path):
    a = write_benchmark(tmp_path / "a", 2, seed=3, duration_s=12, questions=3)
    b = write_benchmark(tmp_path / "b", 2, seed=3, duration_s=12, questions=3)
    c = write_benchmark(tmp_path / "c", 2, seed=4, duration_s=12, questions=3)
    assert a.read_text() == b.read_text() != c.read_text()
    entries = json.loads(a.read_text())
    for entry in entries:
        assert (a.parent / entry["video_path"]).read_bytes() == (b.parent / entry["video_path"]).read_bytes()
    qs = load_questions(a)  # the harness reads it as StreamingBench
    assert len(qs) == sum(len(e["questions"]) for e in entries)
    clip = make_clip(3, 0, duration_s=12, questions=3)
    assert [(q.time_s, q.answer, q.split, q.task) for q in qs[: len(clip.questions)]] == [
        (x.time_s, x.answer, x.split, x.task) for x in clip.questions]
    # The encoded mp4, decoded at 1 fps, still shows each answer's scene at the question's time.
    frames = dict(sample_video(qs[0].video, 1.0))
    for x in clip.questions:
        assert read_lane_colours(frames[float(x.time_s)]) == clip.scene(x.time_s)


def test_cli_writes_n_clips(tmp_path, capsys):
    assert main([str(tmp_path), "--clips", "3", "--duration", "12", "--questions", "2", "--size", "56"]) == 0
    entries = json.loads((tmp_path / "questions_synth.json").read_text())
    assert len(entries) == 3 and all((tmp_path / e["video_path"]).stat().st_size > 0 for e in entries)
    assert capsys.readouterr().out.strip() == str(tmp_path / "questions_synth.json")
