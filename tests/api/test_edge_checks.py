"""The edge's decisions on parsed bodies, without a server: which media strings name local files, where
routes hide them, and that ``--hermes-allow-local-media`` is what lets them through."""

from __future__ import annotations

import pytest

from sglang_hermes.api import edge, media_refs
from sglang_hermes.api.errors import ApiError
from sglang_hermes.api.settings import DEFAULTS_ENV, settings
from sglang_hermes.media import is_local_reference


@pytest.mark.parametrize("ref,local", [
    ("file:///etc/passwd", True), ("FILE:///etc/passwd", True), ("/etc/passwd", True), ("./frame.png", True),
    ("~/frame.png", True), ("C:\\frames\\a.png", True), ("frame.png", True), (" /etc/passwd", True),
    ("data:image/png;base64,iVBORw0KGgo=", False), ("https://example.com/a.png", False), ("aGVsbG8=", False),
])
def test_local_references(ref, local):
    assert is_local_reference(ref) is local


def test_media_is_found_under_every_shape_routes_accept():
    body = {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "u1", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "u2", "format": "wav"}},
                {"type": "text", "text": "file:///not/media"}]}],
            "image_data": [["u3", {"url": "u4"}]], "video_data": "u5",
            "source": {"type": "url", "url": "u6"}}
    found = dict((ref, where) for where, ref in media_refs.references(body))
    assert found == {"u1": "messages[0].content[0].image_url.url", "u2": "messages[0].content[1].input_audio.data",
                     "u3": "image_data[0][0]", "u4": "image_data[0][1].url", "u5": "video_data", "u6": "source.url"}


@pytest.fixture
def allow_local(monkeypatch):
    monkeypatch.setenv(DEFAULTS_ENV, '{"allow_local_media": true}')
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_local_media_is_refused_unless_the_operator_allows_it(monkeypatch):
    monkeypatch.delenv(DEFAULTS_ENV, raising=False)
    settings.cache_clear()
    with pytest.raises(ApiError) as e:
        edge.check_body({"video_data": ["file:///srv/clip.mp4"]})
    assert e.value.status == 400 and e.value.param == "video_data[0]"
    settings.cache_clear()


def test_the_flag_lets_local_media_through(allow_local, monkeypatch):
    monkeypatch.setattr(edge, "_vocab_size", lambda: None)  # no engine here
    edge.check_body({"video_data": ["file:///srv/clip.mp4"], "image_data": "/srv/a.png"})


def test_depth_is_bounded_on_the_parse():
    assert edge._parse(b"[" * 64 + b"]" * 64, declared_json=True) is not None
    for depth in (65, 100_000):
        with pytest.raises(ApiError, match="nests deeper"):
            edge._parse(b"[" * depth + b"]" * depth, declared_json=True)
