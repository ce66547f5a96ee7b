"""Errors in OpenAI's shape, so the ``openai`` client raises its usual exceptions (NotFoundError, ...)."""

from __future__ import annotations

from http import HTTPStatus

from fastapi.responses import JSONResponse
from pydantic import ValidationError

_TYPES = {400: "invalid_request_error", 404: "not_found_error", 409: "conflict_error",
          413: "request_too_large", 429: "rate_limit_error", 503: "service_unavailable"}


def error_type(status: int) -> str:
    """The ``type`` of an OpenAI error of this HTTP status."""
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @classmethod
    def invalid(cls, error: ValidationError, context: str = "", param: str | None = None) -> "ApiError":
        """A 400 naming pydantic's first complaint: ``{context}{field}: {message}``."""
        first = error.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        return cls(400, f"{context}{where + ': ' if where else ''}{first['msg']}",
                   param=param or (str(first["loc"][0]) if first.get("loc") else None))

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, param=self.param, code=self.code, headers=self.headers)


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type(status), "param": param,
                      "code": code or HTTPStatus(status).phrase.lower().replace(" ", "_")}}
    return JSONResponse(body, status_code=status, headers=headers)
