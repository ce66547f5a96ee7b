"""What is asked (the prompt for a question) and how the answer is graded.

Models answer a lettered choice in many shapes: "B", "(B)", "B. a map", "The answer is B.", "**B**",
or only the option's text. ``extract_letter`` takes the first of: a letter standing alone at the start,
an explicit "answer/option is X", a lone capital letter among the options anywhere, then an option's text
quoted in full; otherwise no letter (scored wrong). Articles such as "A" in "A map" are not taken for
the letter when they start a sentence that goes on.
"""

from __future__ import annotations

import re

from clients.eval.questions import Question, letter

_LEAD = re.compile(r"^\W*([A-Z])(?:\W*$|[.):\]]|\s*$)")
_EXPLICIT = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?\**([A-Z])\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}


def prompt(q: Question) -> str:
    if q.kind == "choice":
        options = "\n".join(f"{letter(i)}. {o}" for i, o in enumerate(q.options))
        return (f"Question: {q.question}\nOptions:\n{options}\n"
                "Answer with the option's letter from the given choices directly.")
    if q.kind == "yes_no":
        return f"{q.question}\nAnswer only with Yes or No."
    return f"{q.question}\nAnswer with a single number."


def extract_letter(text: str, n_options: int) -> str | None:
    letters = {letter(i) for i in range(n_options)}
    text = text.strip().replace("*", "")
    m = _LEAD.match(text)
    if m and m.group(1) in letters:
        return m.group(1)
    m = _EXPLICIT.search(text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    lone = [c for c in re.findall(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])", text) if c in letters and c != "I"]
    if lone and not (lone[0] == "A" and re.match(r"^\W*A\s+[a-z]", text)):
        return lone[0]
    return None


def extract_choice(text: str, options: tuple[str, ...]) -> str | None:
    """The letter, else the option whose full text the answer contains as whole words (the longest, if
    several do): "main1" does not quote the option "1"."""
    found = extract_letter(text, len(options))
    if found is not None:
        return found
    quoted = [(len(o), i) for i, o in enumerate(options)
              if o.strip(" .") and re.search(rf"(?<!\w){re.escape(o.strip(' .'))}(?!\w)", text, re.IGNORECASE)]
    return letter(max(quoted)[1]) if quoted else None


def extract_yes_no(text: str) -> str | None:
    m = _YES_NO.search(text)
    return m.group(1).lower() if m else None


def extract_number(text: str) -> str | None:
    m = _NUMBER.search(text)
    if m:
        return str(int(m.group()))
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in _WORDS]
    return str(_WORDS[words[0]]) if words else None


def grade(q: Question, text: str) -> tuple[str | None, bool]:
    """(what the answer says, in the question's answer form, or None; whether it is right)."""
    if q.kind == "choice":
        said = extract_choice(text, q.options)
    elif q.kind == "yes_no":
        said = extract_yes_no(text)
    else:
        said = extract_number(text)
    return said, said == q.answer
