"""Scheduling: a question sees exactly the frames at or before its time; chunks end at questions."""

from __future__ import annotations

from clients.eval.questions import Question
from clients.eval.schedule import episodes, steps


def q(id: str, t: float, video: str = "v.mp4") -> Question:
    return Question(id=id, video=video, time_s=t, question="?", options=("x", "y"), answer="A", task="t")


def run(times, chunk, questions):
    """(frame times of each step, ids due after it, frames in by then) for frames at ``times``."""
    out, seen = [], 0
    for step in steps(((t, None) for t in times), chunk, questions):
        seen += len(step.frames)
        out.append(([t for t, _ in step.frames], [x.id for x in step.due], seen))
    return out


def test_chunks_end_where_questions_fall_due():
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert run(times, 4, [q("a", 1.5), q("b", 2.0), q("c", 6.0)]) == [
        ([0.0, 1.0], ["a"], 2),          # cut after 1.0: frame 2.0 is after 1.5
        ([2.0], ["b"], 3),               # a question at a frame's time sees that frame
        ([3.0, 4.0, 5.0, 6.0], [], 7),   # a full chunk
        ([], ["c"], 7)]                  # due once the next frame (7.0) is later; nothing after is read


def test_questions_past_the_end_and_ties():
    assert run([0.0, 0.5, 1.0], 8, [q("late", 30.0), q("t1", 0.5), q("t2", 0.5)]) == [
        ([0.0, 0.5], ["t1", "t2"], 2), ([1.0], ["late"], 3)]
    assert run([0.0, 1.0], 8, []) == []


def test_every_question_sees_exactly_its_past():
    times = [k * 0.5 for k in range(40)]
    questions = [q(str(i), t) for i, t in enumerate([0.0, 0.2, 3.0, 3.1, 7.75, 12.0, 19.5, 25.0])]
    for frames, due, seen in run(times, 3, questions):
        for x in due:
            assert seen == sum(t <= questions[int(x)].time_s for t in times)
        assert len(frames) <= 3


def test_episodes_per_video_or_per_question_window():
    qs = [q("a", 70, "v1"), q("b", 10, "v2"), q("c", 20, "v1")]
    assert [(e.video, e.start_s, [x.id for x in e.questions]) for e in episodes(qs)] == [
        ("v1", 0.0, ["c", "a"]), ("v2", 0.0, ["b"])]
    assert [(e.video, e.start_s, [x.id for x in e.questions]) for e in episodes(qs, 60)] == [
        ("v1", 10.0, ["a"]), ("v2", 0.0, ["b"]), ("v1", 0.0, ["c"])]
