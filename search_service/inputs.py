"""Parsing and validating request input; every refusal is an ApiError that says what to fix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flask import Request

from catalog.filters import FilterError, parse_filter, to_expression
from search_service.errors import ApiError
from search_service.files import BadName, check_name

TOP_K_DEFAULT = 10
TOP_K_MAX = 100
MILVUS_TOPK_MAX = 16384  # Milvus refuses top_k + offset above this
OFFSET_MAX = MILVUS_TOPK_MAX - TOP_K_MAX
BATCH_MAX_DEFAULT = 32  # queries per request (SEARCH_MAX_BATCH); the extractor takes them as one batch
VECTOR_MAX_DIM = 32768
META_MAX_BYTES = 16 * 1024


@dataclass
class Query:
    """One query: exactly one of an uploaded image, a vector, or the name of a stored image."""

    image: bytes | None = None
    filename: str = "query"
    vector: np.ndarray | None = None  # float32, unit length (parse_vector)
    name: str | None = None


@dataclass
class SearchQuery:
    """A search request: one or several queries sharing top_k, offset, min_score and filter.

    `batch` says how to answer: `{"queries": [...]}` (several `image` parts, `vectors` or `names`) or the
    single-query body `{"results": [...]}`.
    """

    queries: list[Query] = field(default_factory=list)
    batch: bool = False
    top_k: int = TOP_K_DEFAULT
    offset: int = 0
    min_score: float | None = None
    filter: dict[str, Any] | None = None
    fingerprint: str | None = None  # the model the vectors came from, when the client says

    # The single-query accessors the one-query code path reads.
    @property
    def image(self) -> bytes | None:
        return self.queries[0].image

    @property
    def filename(self) -> str:
        return self.queries[0].filename

    @property
    def vector(self) -> np.ndarray | None:
        return self.queries[0].vector

    @property
    def name(self) -> str | None:
        return self.queries[0].name


def _integer(raw: Any, code: str, message: str) -> int:
    """`raw` (form text, query string or JSON number) as an int; a bool or a fraction is a 400 `code`."""
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        return int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, code, message) from None


def parse_top_k(raw: Any) -> int:
    """`top_k` from a form, query string or JSON value: an integer from 1 to 100."""
    if raw is None or raw == "":
        return TOP_K_DEFAULT
    value = _integer(raw, "bad_top_k", f"top_k must be an integer from 1 to {TOP_K_MAX}; got {raw!r}")
    if not 1 <= value <= TOP_K_MAX:
        raise ApiError(400, "bad_top_k", f"top_k must be from 1 to {TOP_K_MAX}; got {value}")
    return value


def parse_min_score(raw: Any) -> float | None:
    """Optional `min_score`: a cosine similarity from -1 to 1."""
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_min_score", f"min_score must be a number from -1 to 1; got {raw!r}") from None
    if not (-1.0 <= value <= 1.0):
        raise ApiError(400, "bad_min_score", f"min_score must be from -1 to 1 (cosine similarity); got {raw!r}")
    return value


def parse_threshold(raw: Any) -> float:
    """`threshold` of near-duplicate groups: a cosine similarity from 0.5 to 1 (default 0.95)."""
    if raw is None or raw == "":
        return 0.95
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_threshold", f"threshold must be a number from 0.5 to 1; got {raw!r}") from None
    if not 0.5 <= value <= 1.0:
        raise ApiError(400, "bad_threshold", f"threshold must be from 0.5 to 1 (cosine similarity); got {raw!r}")
    return round(value, 6)


def parse_limit(raw: Any, default: int = 20, most: int = 100) -> int:
    """`limit`: how many items per page, from 1 to `most`."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_limit", f"limit must be an integer from 1 to {most}; got {raw!r}") from None
    if not 1 <= value <= most:
        raise ApiError(400, "bad_limit", f"limit must be from 1 to {most}; got {value}")
    return value


def parse_vector(raw: Any) -> np.ndarray:
    """A query vector (float32, unit length) from a non-empty list of finite numbers, not all zero."""
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "bad_vector", "vector must be a non-empty JSON array of numbers")
    if len(raw) > VECTOR_MAX_DIM:
        raise ApiError(400, "bad_vector", f"vector has {len(raw)} values; at most {VECTOR_MAX_DIM} are accepted")
    # One pass in C over the element types (bools are ints to Python, but not numbers here), then numpy.
    if not set(map(type, raw)) <= {int, float}:
        raise ApiError(400, "bad_vector", "vector must hold only finite numbers (no strings, null, NaN or inf)")
    try:
        vec = np.asarray(raw, dtype=np.float64)
    except OverflowError:  # an int too large for a float
        vec = np.array([np.inf])
    if not np.isfinite(vec).all():
        raise ApiError(400, "bad_vector", "vector must hold only finite numbers (no strings, null, NaN or inf)")
    # Cosine similarity ignores scale, but float32 does not: normalise in float64 before anything casts,
    # so 1e300 or 1e-40 times a vector ranks exactly like the vector itself. Dividing by the largest
    # magnitude first keeps the norm itself from overflowing or underflowing.
    peak = float(np.max(np.abs(vec)))
    if peak == 0.0:
        raise ApiError(400, "bad_vector", "vector is all zeros; cosine similarity is undefined for it")
    vec = vec / peak
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def uploaded_image(req: Request, required: bool = True) -> tuple[str, bytes] | None:
    """The multipart part `image` as (filename, bytes)."""
    part = req.files.get("image")
    if part is None:
        if not required:
            return None
        other = ", ".join(sorted(req.files)) or "none"
        raise ApiError(400, "missing_image",
                       f"send the picture as a multipart/form-data part named 'image' (parts received: {other})")
    data = part.read()
    if not data:
        raise ApiError(400, "empty_image", "the uploaded image is empty (0 bytes)")
    return (part.filename or "upload"), data


def parse_offset(raw: Any, top_k: int) -> int:
    """`offset` for paging: skip that many best hits; top_k + offset within Milvus's limit."""
    if raw is None or raw == "":
        return 0
    value = _integer(raw, "bad_offset", f"offset must be an integer from 0 to {OFFSET_MAX}; got {raw!r}")
    if not 0 <= value <= OFFSET_MAX:
        raise ApiError(400, "bad_offset", f"offset must be from 0 to {OFFSET_MAX} (top_k + offset at most "
                                          f"{MILVUS_TOPK_MAX}); got {value}")
    return value


def parse_search_filter(raw: Any) -> dict[str, Any] | None:
    """`filter`: a JSON object of conditions on meta fields (catalog/filters.py), as text or an object."""
    try:
        filt = parse_filter(raw)
        if filt is not None:
            to_expression(filt)  # checked now: a bad filter is a 400 before anything else runs
        return filt
    except FilterError as exc:
        raise ApiError(400, "bad_filter", str(exc)) from None


def _options(get, top_k_raw: Any, query: SearchQuery) -> SearchQuery:
    query.top_k = parse_top_k(top_k_raw)
    query.offset = parse_offset(get("offset"), query.top_k)
    query.min_score = parse_min_score(get("min_score"))
    query.filter = parse_search_filter(get("filter"))
    return query


def _check_batch(n: int, what: str, batch_max: int) -> None:
    if n > batch_max:
        raise ApiError(413, "too_many_queries", f"{n} {what} in one search; at most {batch_max} "
                                                "(SEARCH_MAX_BATCH): split the request")


def parse_search(req: Request, batch_max: int = BATCH_MAX_DEFAULT) -> SearchQuery:
    """A search request: multipart (`image` parts, `top_k`, `offset`, `min_score`, `filter`) or JSON
    (`vector`/`vectors` or `name`/`names`, and the same options)."""
    if req.mimetype == "multipart/form-data":
        parts = req.files.getlist("image")
        if not parts:
            uploaded_image(req)  # raises the missing-image error with what was received
        _check_batch(len(parts), "images", batch_max)
        queries = []
        for i, part in enumerate(parts):
            data = part.read()
            if not data:
                where = f"image part {i + 1}" if len(parts) > 1 else "the uploaded image"
                raise ApiError(400, "empty_image", f"{where} is empty (0 bytes)")
            queries.append(Query(image=data, filename=part.filename or f"upload-{i + 1}"))

        def get(key):
            return req.form.get(key, req.args.get(key))

        return _options(get, get("top_k"), SearchQuery(queries=queries, batch=len(parts) > 1))
    if req.is_json:
        try:
            body = req.get_json(silent=True)
        except RecursionError:  # silent=True only swallows ValueError; absurdly nested JSON raises this
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", 'the body must be a JSON object such as {"vector": [...], "top_k": 10}')

        def get(key):
            return body.get(key, req.args.get(key))

        query = _options(get, get("top_k"), SearchQuery())
        given = [k for k in ("vector", "vectors", "name", "names") if k in body]
        if len(given) != 1:
            raise ApiError(400, "bad_query", 'give exactly one of "vector" (a list of numbers), "vectors" (a list '
                                             'of them), "name" (a stored image) or "names" (a list of them)')
        key = given[0]
        if key in ("vectors", "names"):
            items = body[key]
            if not isinstance(items, list) or not items:
                raise ApiError(400, "bad_query", f'"{key}" must be a non-empty list')
            _check_batch(len(items), key, batch_max)
            query.batch = True
        else:
            items = [body[key]]
        if key.startswith("vector"):
            query.queries = [Query(vector=parse_vector(v)) for v in items]
            fp = body.get("fingerprint")
            if fp is not None and not isinstance(fp, str):
                raise ApiError(400, "bad_fingerprint", "fingerprint must be a string")
            query.fingerprint = fp or None
        else:
            query.queries = [Query(name=parse_name(n)) for n in items]
        return query
    raise ApiError(
        415, "unsupported_media_type",
        "send multipart/form-data with one or more 'image' parts, or application/json with a 'vector' or 'name' "
        "(or 'vectors' / 'names')",
    )


def parse_name(raw: Any) -> str:
    """An image name (relative path) for storing."""
    if not isinstance(raw, str):
        raise ApiError(400, "bad_name", "name must be a string such as 'cats/1.jpg'")
    try:
        return check_name(raw)
    except BadName as exc:
        raise ApiError(400, "bad_name", str(exc)) from None


def parse_meta(raw: str | None) -> dict:
    """Optional metadata: a JSON object of at most 16 KiB."""
    if raw is None or raw.strip() == "":
        return {}
    if len(raw.encode()) > META_MAX_BYTES:
        raise ApiError(400, "bad_meta", f"meta is larger than {META_MAX_BYTES} bytes")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "bad_meta", "meta is nested too deeply; send a flat JSON object") from None
    except ValueError as exc:
        raise ApiError(400, "bad_meta", f"meta must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_meta", 'meta must be a JSON object such as {"source": "camera"}')
    return value
