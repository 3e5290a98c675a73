"""What a Milvus call can end in, as types: callers decide by class, never by parsing messages.

    CatalogError                  base: a catalogue operation did not succeed
    ├── MilvusUnavailable         cannot reach Milvus, connection lost, timed out, server not ready: retry later
    ├── NotLoaded                 the collection is not loaded into query nodes (yet): load, then retry
    ├── CallFailed                Milvus answered a call with an error (carries its code)
    ├── FingerprintMismatch       vectors of one model were about to meet a collection built by another
    └── DimensionMismatch         vectors of another dimension than the collection's

`classify(exc, call, uri)` turns whatever pymilvus or gRPC raised into one of these. Each message says
what to do.
"""

from __future__ import annotations

from typing import Any

# Milvus's merr codes (pkg/util/merr), stable across 2.3-2.5.
SERVICE_NOT_READY = 1  # also pymilvus's UNEXPECTED_ERROR: only "not ready" when the server marks it retriable
SERVICE_UNAVAILABLE = 2  # also what pymilvus raises when it cannot connect
COLLECTION_NOT_FOUND = 100
COLLECTION_NOT_LOADED = (101, 103)  # not loaded, not fully loaded


class CatalogError(Exception):
    """A catalogue operation did not succeed; `call` names the Milvus call, `detail` what it said."""

    def __init__(self, message: str, call: str = "", detail: str = ""):
        super().__init__(message)
        self.call = call
        self.detail = detail


class MilvusUnavailable(CatalogError):
    """Milvus cannot be reached, dropped the connection, timed out or is not ready: worth retrying."""


class NotLoaded(CatalogError):
    """The collection is not loaded (a restarted Milvus reloads in the background)."""


class CallFailed(CatalogError):
    """Milvus answered with an error; `code` is its error code. `retriable` is False where the server
    called it the caller's input (a bad expression, a wrong dimension): trying again cannot help."""

    def __init__(self, message: str, call: str = "", detail: str = "", code: Any = None, retriable: bool = True):
        super().__init__(message, call, detail)
        self.code = code
        self.retriable = retriable


class FingerprintMismatch(CatalogError):
    """Vectors from one model were about to meet a collection built by another."""

    def __init__(self, collection: str, expected: str, got: str):
        self.collection = collection
        self.expected = expected
        self.got = got
        super().__init__(
            f"collection {collection!r} holds vectors with fingerprint {expected}, but these have {got}. "
            "Re-extract the catalogue with this model into a new collection, or point at the extractor "
            "that built it (use --force only if you know the vectors are compatible)."
        )


class DimensionMismatch(CatalogError):
    """Vectors of another dimension than the collection stores."""

    def __init__(self, collection: str, have: int | None, got: int):
        self.collection = collection
        self.have = have
        self.got = got
        super().__init__(
            f"collection {collection!r} stores {have}-d vectors, these are {got}-d: "
            "use another collection (COLLECTION=... or --collection)"
        )


def classify(exc: BaseException, call: str, uri: str = "") -> CatalogError:
    """The CatalogError for an exception raised by a pymilvus call (or by gRPC under it)."""
    import grpc
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

    details = getattr(exc, "details", None)  # gRPC errors carry their text there, not in str()
    text = getattr(exc, "message", "") or (details() if callable(details) else "") or str(exc)
    detail = _first_line(text or type(exc).__name__)
    where = f" at {uri}" if uri else ""
    if isinstance(exc, CatalogError):
        return exc
    if isinstance(exc, (grpc.RpcError, ConnectError, MilvusUnavailableException, ConnectionError, TimeoutError)):
        return MilvusUnavailable(f"cannot reach Milvus{where} ({call}: {detail})", call, detail)
    if isinstance(exc, MilvusException):
        code = exc.code
        if isinstance(code, grpc.StatusCode) or code == SERVICE_UNAVAILABLE or (
                code == SERVICE_NOT_READY and exc.retriable):
            return MilvusUnavailable(f"cannot reach Milvus{where} ({call}: {detail})", call, detail)
        if code in COLLECTION_NOT_LOADED:
            return NotLoaded(f"Milvus {call} failed: the collection is not loaded ({detail})", call, detail)
        permanent = exc.is_input_error or code == COLLECTION_NOT_FOUND
        return CallFailed(f"Milvus {call} failed: {detail}", call, detail, code, retriable=not permanent)
    return CallFailed(f"Milvus {call} failed: {type(exc).__name__}: {detail}", call, detail)


def _first_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    for cut in (" stack trace:", ", stack trace"):  # Milvus appends Go stack traces to some reasons
        text = text.split(cut, 1)[0]
    return text[:limit]
