"""Every media reference in a request body, whatever the route, and the ones naming this server's files.

SGLang's routes take media under many shapes: OpenAI content parts (``image_url``, ``video_url``,
``audio_url``, ``input_audio``), ``/generate``'s ``image_data`` / ``video_data`` / ``audio_data`` (a
string, a list, a list of lists, or objects with a ``url``), Ollama's ``images``, Anthropic's
``source``, embeddings' ``image`` / ``video`` / ``audio``. Its loaders open ``file://`` URLs, absolute
paths and, for video and audio, any string naming an existing file. Rather than follow each route's
schema, the edge walks the parsed body once and looks at every string found under one of these keys.
"""

from __future__ import annotations

from collections.abc import Iterator

MEDIA_KEYS = frozenset({"image_url", "video_url", "audio_url", "input_audio", "image_data", "video_data",
                        "audio_data", "images", "image", "video", "audio", "source"})
# Inside a media value, the entries that hold the reference itself (not e.g. "detail" or "format").
REFERENCE_KEYS = ("url", "data")


def references(body: object) -> Iterator[tuple[str, str]]:
    """(where, reference) for every media string in ``body``.

    ``body`` is a parsed JSON value whose depth the caller has bounded; ``where`` is a JSON path such
    as ``messages[0].content[1].image_url.url``.
    """
    stack: list[tuple[object, str]] = [(body, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                if key in MEDIA_KEYS:
                    yield from _references(item, path)
                else:
                    stack.append((item, path))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))


def _references(value: object, where: str) -> Iterator[tuple[str, str]]:
    stack = [(value, where)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, dict):
            stack.extend((value[k], f"{where}.{k}") for k in REFERENCE_KEYS if k in value)
            stack.extend((v, f"{where}.{k}") for k, v in value.items() if k in MEDIA_KEYS)
