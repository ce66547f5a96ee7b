"""The benchmark readers on small files in each format: times, letters, splits, forward re-asks, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.eval.readers import detect_format, hms_seconds, load_questions

FIXTURES = Path(__file__).parent / "fixtures"


def test_streamingbench_times_letters_and_splits():
    qs = load_questions(FIXTURES / "questions_real.json", video_root="/data/sb")
    # The open-ended question (no options) is left out: there is no letter to score.
    assert [(q.time_s, q.answer, q.split) for q in qs] == [
        (65.0, "C", "perception"), (3723.0, "A", "memory"), (9.0, "B", "other")]
    assert qs[0].options == ("A bat.", "A ball.", "A racket.", "A towel.")  # "A. " prefixes stripped
    assert qs[1].options[0] == "He served."                                 # "A." without a space too
    assert qs[2].options == ("Run.", "Jump.", "Sit.", "Wave.")               # options without letters kept
    assert {q.video for q in qs} == {"/data/sb/videos/sample_1_real.mp4"}
    assert len({q.id for q in qs}) == 3


def test_streamingbench_video_paths_default_to_the_file_folder():
    qs = load_questions(FIXTURES / "questions_real.json")
    assert qs[0].video == str(FIXTURES / "videos" / "sample_1_real.mp4")


@pytest.mark.parametrize("stamp, seconds", [("00:00:00", 0), ("00:03:10", 190), ("1:00:01", 3601), ("07:15", 435),
                                            ("12", 12), ("00:00:06.5", 6.5)])
def test_hms_seconds(stamp, seconds):
    assert hms_seconds(stamp) == seconds


def test_ovobench_realtime_backward_and_forward_reasks():
    qs = load_questions(FIXTURES / "ovo_bench_new.json", video_root="/ovo")
    by_id = {q.id: q for q in qs}
    assert (by_id["11"].answer, by_id["11"].time_s, by_id["11"].split) == ("C", 42.5, "perception")
    assert (by_id["12"].answer, by_id["12"].split, by_id["12"].video) == ("B", "memory", "/ovo/Ego4D/clips/v2.mp4")
    assert by_id["13"].split == "order"
    # Forward-active tasks: one question per test_info entry, at its realtime, with its own answer.
    rec = [q for q in qs if q.task == "REC"]
    assert [(q.id, q.time_s, q.kind, q.answer) for q in rec] == [
        ("21/0", 5.0, "number", "1"), ("21/1", 9.5, "number", "2"), ("21/2", 14.0, "number", "4")]
    assert all("jump over the rope" in q.question for q in rec)
    ssr = [q for q in qs if q.task == "SSR"]
    assert [(q.time_s, q.kind, q.answer) for q in ssr] == [(20, "yes_no", "no"), (31, "yes_no", "yes")]
    crr = [q for q in qs if q.task == "CRR"]
    assert [q.answer for q in crr] == ["no", "yes"] and "What colour is the car?" in crr[0].question
    assert {q.split for q in rec + ssr + crr} == {"other"}


def test_hermes_converted_json_answers_by_text_and_finds_videos_under_root(tmp_path):
    clip = tmp_path / "Ego4D" / "clips" / "ec4a.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"")
    qs = load_questions(FIXTURES / "hermes_streamingbench_realtime.json", video_root=tmp_path)
    assert [(q.time_s, q.answer, q.task, q.split) for q in qs] == [
        (6.0, "B", "Object Recognition", "perception"), (157.0, "B", "Clips Summarize", "memory"),
        (244.0, "C", "EPM", "memory")]
    # The authors' absolute path is matched by its trailing components under the root.
    assert qs[2].video == str(clip)
    assert qs[0].video == str(tmp_path / "inspire/hdd/data/streamingbench/videos/sample_416_real.mp4")


def test_formats_are_detected_and_bad_files_refused(tmp_path):
    for name, fmt in [("questions_real.json", "streamingbench"), ("ovo_bench_new.json", "ovobench"),
                      ("hermes_streamingbench_realtime.json", "hermes")]:
        assert detect_format(json.loads((FIXTURES / name).read_text())) == fmt
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video_path": "v.mp4", "conversations": [
        {"question": "q", "answer": "not an option", "choices": ["a", "b"], "end_time": 1}]}]))
    with pytest.raises(ValueError, match="not one of its choices"):
        load_questions(bad)
    bad.write_text(json.dumps([{"video_path": "v.mp4", "questions": [
        {"task_type": "x", "question": "q", "time_stamp": "00:00:01", "answer": "E", "options": ["a", "b"]}]}]))
    with pytest.raises(ValueError, match="not one of the options' letters"):
        load_questions(bad)
    bad.write_text("{}")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_questions(bad)
