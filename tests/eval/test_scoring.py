"""Grading answers: the option letter in the many shapes models write it, yes/no, and counts."""

from __future__ import annotations

import pytest

from clients.eval.questions import Question
from clients.eval.scoring import extract_choice, extract_letter, grade, prompt

OPTIONS = ("A compass.", "A map.", "An altitude meter.", "A weather radar.")


@pytest.mark.parametrize("text, expected", [
    ("B", "B"), ("B.", "B"), (" (C) ", "C"), ("D. A weather radar.", "D"), ("**A**", "A"), ("[B]", "B"),
    ("The answer is C.", "C"), ("Answer: D", "D"), ("the best option is (b)", "B"), ("Option A", "A"),
    ("I think it is B because of the screen.", "B"), ("C\n", "C"),
    ("E", None), ("", None), ("I don't know", None), ("A map is shown.", None),
])
def test_extract_letter(text, expected):
    assert extract_letter(text, 4) == expected


def test_choice_falls_back_to_the_options_text():
    assert extract_choice("It shows a map.", OPTIONS) == "B"
    assert extract_choice("an altitude meter", OPTIONS) == "C"
    assert extract_choice("a banana", OPTIONS) is None
    counts = ("0", "1", "2", "3")
    assert extract_choice("There are 2 shapes.", counts) == "C"
    assert extract_choice(" main1 time", counts) is None  # a digit inside a word quotes nothing


def test_grade_each_kind():
    choice = Question(id="1", video="v", time_s=1, question="q?", options=OPTIONS, answer="B", task="t")
    assert grade(choice, "B") == ("B", True) and grade(choice, "A") == ("A", False)
    assert grade(choice, "?") == (None, False)
    yes_no = Question(id="2", video="v", time_s=1, question="q?", kind="yes_no", answer="yes", task="SSR")
    assert grade(yes_no, "Yes.") == ("yes", True) and grade(yes_no, "No") == ("no", False)
    count = Question(id="3", video="v", time_s=1, question="q?", kind="number", answer="4", task="REC")
    assert grade(count, "4 times") == ("4", True) and grade(count, "four") == ("4", True)
    assert grade(count, "3") == ("3", False)
    assert "A. A compass.\nB. A map." in prompt(choice) and "Yes or No" in prompt(yes_no)
