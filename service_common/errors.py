"""The one error envelope of both services: `{"error": {"code": ..., "message": ..., ...}}`, never a trace.

`ApiError` is raised by views for a whole-request failure; `error_response` builds the body of every error,
whether raised or mapped from another exception type; `register_json_errors` installs what every app needs:

| raised | status | body |
|---|---|---|
| ApiError | its status (and headers) | its code, message and extra fields |
| werkzeug HTTPException (404, 405, bad multipart, ...) | its status | its name in snake_case, its description |
| 413 from werkzeug | 413 | "body too large" or "too many parts", told apart (see `body_over`) |
| any other Exception | 500 | a fixed message; the trace goes to the log only |

Each service adds its own mappings (search: catalogue and extractor failures; extractor: nothing more) and
its own wording through `Wording`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

# Headers of a werkzeug HTTPException a client needs to act on; the rest (its HTML Content-Type) is ours.
_PASSED_HEADERS = ("allow", "www-authenticate", "retry-after")


class ApiError(Exception):
    """A whole-request failure: HTTP status, machine-readable code, a message that says what to fix, and
    optionally response headers and extra fields for the error object."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def to_response(self) -> Response:
        """This error as a JSON response."""
        return error_response(self.status, self.code, self.message, self.headers, **self.extra)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    """The one shape of every error body: `{"error": {"code", "message", **extra}}` with `status`."""
    resp = jsonify({"error": {"code": code, "message": message, **extra}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def snake(name: str) -> str:
    """An HTTP reason phrase as an error code: "Method Not Allowed" -> "method_not_allowed"."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class Wording:
    """What one service says for the failures every service shares: (code, message) pairs.

    `body_too_large`'s message may hold `{limit}` (MAX_CONTENT_LENGTH in bytes). A code of None keeps
    werkzeug's ("request_entity_too_large").
    """

    body_too_large: tuple[str | None, str]
    too_many_parts: tuple[str | None, str]
    internal: tuple[str, str]


def register_json_errors(app: Flask, wording: Wording) -> None:
    """Install the shared handlers of the table above on `app`."""

    @app.errorhandler(ApiError)
    def _api(exc: ApiError):
        return exc.to_response()

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code, message = snake(exc.name or "error"), exc.description or exc.name
        if exc.code == 413:
            # Werkzeug raises 413 both for a body over the limit and for too many multipart parts.
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            given_code, template = wording.body_too_large if body_over(limit) else wording.too_many_parts
            code, message = given_code or code, template.format(limit=limit)
        headers = {k: v for k, v in exc.get_headers() if k.lower() in _PASSED_HEADERS}
        return error_response(exc.code or 500, code, message, headers)

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        if isinstance(exc, HTTPException):  # pragma: no cover - Flask picks the handler above first
            return _http(exc)
        app.logger.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, *wording.internal)


def body_over(limit: int | None) -> bool:
    """Whether the request body went over `limit` (as opposed to werkzeug's part-count limit)."""
    if limit is None:
        return False
    if request.content_length is not None:
        return request.content_length > limit
    try:  # chunked: no Content-Length; ask the limited input stream how far it read
        return (getattr(request.stream, "_pos", 0) or 0) >= limit
    except Exception:  # werkzeug refuses to hand out the stream of an over-long body
        return True
