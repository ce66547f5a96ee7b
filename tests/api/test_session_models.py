"""The ``session`` object of a chat completion: turns, and the /v1/sessions operations a gateway carries."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sglang_hermes.api.models import SessionCreate, SessionRef


def test_open_carries_the_body_of_post_sessions():
    ref = SessionRef.model_validate({"id": "cam-1", "mode": "open", "options": {"budget_tokens": 64, "fps": 2}})
    assert ref.create() == SessionCreate(id="cam-1", budget_tokens=64, fps=2.0)
    assert SessionRef.model_validate({"id": "cam-1", "mode": "open"}).create() == SessionCreate(id="cam-1")


@pytest.mark.parametrize("session", [
    {"id": "cam-1", "mode": "ask", "options": {"budget_tokens": 64}},      # options belong to open only
    {"id": "cam-1", "mode": "open", "options": {"budget": 64}},             # a typo is not ignored
    {"id": "cam-1", "mode": "open", "options": {"id": "other"}},            # the id is the session's
    {"id": "cam-1", "mode": "rename"},
])
def test_bad_session_objects_are_refused(session):
    with pytest.raises(ValidationError):
        SessionRef.model_validate(session)


def test_open_checks_the_id_as_post_sessions_does():
    with pytest.raises(ValidationError, match="id"):
        SessionRef.model_validate({"id": "../etc", "mode": "open"}).create()
