"""The last question and answer as the conditioned guidance prompts quote them (HERMES §3.2).

The authors' code conditions the next guidance prompts on "Question: {q} Answer: {a}", where q is the
question without its options and an answer that is a bare option letter ("B", "(B)", "B.") is replaced
by that option's text, so the prompt names what was seen instead of a letter. Their benchmarks pass
the options as a separate list; this API has only the question text, so options are read from it:
lines of the form "A) text", "(A) text", "A. text" or "A: text" (capital letters, at least two such
lines). Without such lines the question and answer are quoted as they are. Like the authors' code, an
"X) " prefix on the answer itself is dropped ("B) a red car" -> "a red car").
"""

from __future__ import annotations

import re

_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[).:]\s+(\S.*?)\s*$")
_BARE_LETTER = re.compile(r"^\s*\(?([A-Z])\)?\.?\s*$")  # the authors' pattern
_LETTER_PREFIX = re.compile(r"^\s*\(?[A-Z]\)\s+")


def split_options(question: str) -> tuple[str, dict[str, str]]:
    """(question stem, {letter: option text}); no options unless at least two option lines."""
    stem, options = [], {}
    for line in question.splitlines():
        m = _OPTION_LINE.match(line)
        if m and m.group(1) not in options:
            options[m.group(1)] = m.group(2)
        else:
            stem.append(line)
    if len(options) < 2:
        return question, {}
    return "\n".join(stem).strip(), options


def last_round(question: str, answer: str) -> tuple[str, str]:
    """(question, answer) to quote: options removed from the question, a letter answer spelled out."""
    stem, options = split_options(question)
    letter = _BARE_LETTER.match(answer)
    if letter and letter.group(1) in options:
        answer = options[letter.group(1)]
    return stem, _LETTER_PREFIX.sub("", answer, count=1).strip()
