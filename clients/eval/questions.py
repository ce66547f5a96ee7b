"""The one question model every benchmark is read into.

Benchmarks disagree on everything (letters inside option strings or not, answers as a letter, an index
or the option's text, "HH:MM:SS" or seconds, forward tasks asked several times); readers absorb that, so
the runners, scoring and report only ever see a ``Question``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Split = Literal["perception", "memory", "order", "other"]
Kind = Literal["choice", "yes_no", "number"]
SPLITS: tuple[Split, ...] = ("perception", "memory", "order", "other")


class Question(BaseModel):
    """One question asked on a video at ``time_s`` seconds (the stream has seen the video up to then).

    ``answer`` is an option letter for ``kind="choice"``, "yes"/"no" for ``yes_no``, digits for
    ``number``. ``split`` says what the question needs: the current scene (perception), earlier content
    (memory), the order of earlier events (order), or anything else (other)."""
    model_config = ConfigDict(frozen=True)

    id: str
    video: str
    time_s: float = Field(ge=0)
    question: str
    options: tuple[str, ...] = ()
    answer: str
    kind: Kind = "choice"
    task: str
    split: Split = "other"

    @model_validator(mode="after")
    def _answer_fits(self) -> Question:
        if self.kind == "choice":
            letters = [chr(ord("A") + i) for i in range(len(self.options))]
            if len(self.options) < 2 or self.answer not in letters:
                raise ValueError(f"answer {self.answer!r} is not one of the options' letters {letters}")
        elif self.kind == "yes_no" and self.answer not in ("yes", "no"):
            raise ValueError(f"a yes/no answer must be 'yes' or 'no', got {self.answer!r}")
        elif self.kind == "number" and not self.answer.isdigit():
            raise ValueError(f"a number answer must be digits, got {self.answer!r}")
        return self


def content_id(*parts) -> str:
    """A short stable id from a question's content, for benchmarks whose questions carry none."""
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12]


def letter(index: int) -> str:
    return chr(ord("A") + index)
