"""JSON errors for every failure: `{"error": {"code": ..., "message": ...}}`, never a stack trace.

The envelope, `ApiError` and the handlers both services share live in `service_common.errors`; this module
adds the search service's own mappings and wording.

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

from flask import Flask, current_app

from catalog.errors import CatalogError, DimensionMismatch, FingerprintMismatch
from extractor_client import ExtractorRejected, ExtractorUnavailable
from search_service.files import BadName
from service_common.errors import ApiError, Wording, error_response, register_json_errors

__all__ = ["ApiError", "error_response", "register_error_handlers"]

log = logging.getLogger(__name__)

WORDING = Wording(
    body_too_large=(None, "the upload is larger than {limit} bytes; send a smaller image"),
    too_many_parts=(None, "the request has too many multipart parts; send one 'image' part"),
    internal=("internal", "internal error; the service log has the details"),
)


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(current_app.config["SEARCH"].retry_after_s)}


def register_error_handlers(app: Flask) -> None:
    """Install the shared handlers and the search service's mappings in the table above."""
    register_json_errors(app, WORDING)

    @app.errorhandler(BadName)
    def _bad_name(exc: BadName):
        return error_response(400, "bad_name", str(exc))

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


def _first_line(exc: Exception, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:limit]
