"""User text never becomes special tokens.

A question, a system prompt or a remembered answer is pasted into a stream's prompt as text, and
SGLang's tokenizer turns any special token spelled in it (``<|vision_start|><|video_pad|>``,
``<|im_end|>`` ...) into the real token: a question could then forge media placeholders or close the
user turn, and since the last question conditions every later guidance block, poison the stream for
good. Every such spelling is broken by a zero-width space after its first character, so it tokenizes
as the ordinary text it looks like (appends must be sent as text for SGLang's media processor, so
escaping the text, not tokenizing it ourselves, is what works on every kind of turn).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

BREAK = "\u200b"  # zero-width space: invisible, and part of no special token


@functools.lru_cache(maxsize=4)
def _pattern(specials: frozenset[str]) -> re.Pattern | None:
    names = sorted((t for t in specials if len(t) > 1), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, names))) if names else None


def plain(text: str, specials: Iterable[str]) -> str:
    """``text`` with every special-token spelling broken; unchanged if it has none."""
    pattern = _pattern(frozenset(specials))
    if pattern is None:
        return text
    # Breaking one spelling can complete another across its edge (``<<|a|>|a|>``): repeat until none is left.
    while pattern.search(text):
        text = pattern.sub(lambda m: m.group(0)[0] + BREAK + m.group(0)[1:], text)
    return text
