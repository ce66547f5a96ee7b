"""The conditioned guidance prompts quote the last question and answer as the authors' code does."""

from __future__ import annotations

from sglang_hermes.config import GLOBAL_PROMPT, LOCAL_PROMPT, GuidancePrompts
from sglang_hermes.last_round import last_round

MC = "What colour is the car?\nA) red\nB) blue\nC) green"


def test_conditioned_prompts_quote_question_and_answer_with_labels():
    rendered = GuidancePrompts().render(("Which shape moves?", "the square"))
    history = "Question: Which shape moves? Answer: the square"
    assert rendered["local"] == f"Find recent details related to: {history}. {LOCAL_PROMPT}"
    assert rendered["global"] == f"Context summary: {history}. {GLOBAL_PROMPT}"
    assert rendered["mixed"] == f"{rendered['local']}; {rendered['global']}"


def test_unconditioned_prompts_are_the_generic_ones():
    assert GuidancePrompts().render(None) == {"local": LOCAL_PROMPT, "global": GLOBAL_PROMPT,
                                              "mixed": f"{LOCAL_PROMPT}; {GLOBAL_PROMPT}"}


def test_a_bare_option_letter_is_spelled_out_and_options_leave_the_question():
    for answer in ("B", " (B) ", "B.", "B)"):
        assert last_round(MC, answer) == ("What colour is the car?", "blue")
    assert last_round("Which?\n(A) a cat\n(B) a dog", "A") == ("Which?", "a cat")
    rendered = GuidancePrompts().render((MC, "B"))
    assert rendered["local"].startswith("Find recent details related to: Question: What colour is the car? "
                                        "Answer: blue. ")


def test_answers_keep_their_text_unless_a_letter_names_an_option():
    assert last_round(MC, "B) blue") == ("What colour is the car?", "blue")  # "X) " prefix dropped
    assert last_round(MC, "D") == ("What colour is the car?", "D")  # no option D
    assert last_round("What colour is the car?", "B") == ("What colour is the car?", "B")  # no options
    assert last_round("Say A) once.", "A") == ("Say A) once.", "A")  # one option-like line is not a list
