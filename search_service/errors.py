"""JSON errors for every failure: `{"error": {"code": ..., "message": ...}}`, never a stack trace.

| raised | status |
|---|---|
| ApiError (bad input we detect) | its status (400, 401, 404, ...) |
| BadName (an image name that cannot be stored under IMAGE_ROOT) | 400 |
| any werkzeug HTTPException (404, 405, 413, bad multipart...) | its status |
| ExtractorRejected (the extractor refused the image) | the extractor's 4xx, its code and message |
| FingerprintMismatch, DimensionMismatch | 409, naming both models or dimensions and what to do |
| CatalogError (Milvus down or refusing), ExtractorUnavailable | 503 with Retry-After |
| anything else | 500 "internal error" (logged with its trace, never sent) |
"""

from __future__ import annotations

import logging
import re

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from catalog.errors import CatalogError, DimensionMismatch, FingerprintMismatch
from extractor_client import ExtractorRejected, ExtractorUnavailable
from search_service.files import BadName

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A client error with a status, a machine-readable code and a message that says what to fix."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra):
    """The one shape of every error body."""
    resp = jsonify({"error": {"code": code, "message": message, **extra}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(current_app.config["SEARCH"].retry_after_s)}


def register_error_handlers(app: Flask) -> None:
    """Install the handlers in the table above."""

    @app.errorhandler(ApiError)
    def _api(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(BadName)
    def _bad_name(exc: BadName):
        return error_response(400, "bad_name", str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 413:
            # Werkzeug raises 413 both for a body over the limit and for too many multipart parts.
            limit = current_app.config["SEARCH"].max_upload_bytes
            if _body_over(limit):
                message = f"the upload is larger than {limit} bytes; send a smaller image"
            else:
                message = "the request has too many multipart parts; send one 'image' part"
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "www-authenticate")}
        return error_response(exc.code or 500, _snake(exc.name), message, headers)

    @app.errorhandler(ExtractorRejected)
    def _rejected(exc: ExtractorRejected):
        status = exc.status if 400 <= exc.status < 500 else 422
        return error_response(status, exc.code or "bad_image", exc.message)

    @app.errorhandler(FingerprintMismatch)
    def _mismatch(exc: FingerprintMismatch):
        message = (
            f"model mismatch: collection {exc.collection!r} was built with fingerprint {exc.expected}, "
            f"but the extractor produces {exc.got}. Re-extract the catalogue with this extractor "
            "(python -m loader index ... into a new collection and set COLLECTION), or point EXTRACTOR_URL "
            "at the extractor that built it. No results are returned from mismatched vectors."
        )
        return error_response(409, "fingerprint_mismatch", message, collection_fingerprint=exc.expected,
                              extractor_fingerprint=exc.got)

    @app.errorhandler(DimensionMismatch)
    def _dim_mismatch(exc: DimensionMismatch):
        return error_response(409, "dimension_mismatch", str(exc), collection_dim=exc.have, extractor_dim=exc.got)

    @app.errorhandler(ExtractorUnavailable)
    def _extractor_down(exc: ExtractorUnavailable):
        log.warning("extractor unavailable: %s", exc)
        return error_response(503, "extractor_unavailable", f"the feature extractor is unavailable: {exc} Try again shortly.",
                              _retry_after())

    @app.errorhandler(CatalogError)
    def _milvus_down(exc: CatalogError):
        log.warning("catalogue unavailable: %s", exc)
        return error_response(
            503, "catalog_unavailable",
            f"the vector database is unavailable ({_first_line(exc)}). Try again shortly.", _retry_after(),
        )

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        if isinstance(exc, HTTPException):  # pragma: no cover - handled above
            return _http(exc)
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error; the service log has the details")


def _first_line(exc: Exception, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:limit]


def _body_over(limit: int) -> bool:
    """Whether the request body went over `limit` (as opposed to werkzeug's part-count limit)."""
    if request.content_length is not None:
        return request.content_length > limit
    try:  # chunked: no Content-Length; ask the limited input stream how far it read
        return (getattr(request.stream, "_pos", 0) or 0) >= limit
    except Exception:  # werkzeug refuses to hand out the stream of an over-long body
        return True
