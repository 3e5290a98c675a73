"""Parsing and validating request input; every refusal is an ApiError that says what to fix."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from flask import Request

from search_service.errors import ApiError
from search_service.files import BadName, check_name

TOP_K_DEFAULT = 10
TOP_K_MAX = 100
VECTOR_MAX_DIM = 32768
META_MAX_BYTES = 16 * 1024


@dataclass
class SearchQuery:
    """One search: exactly one of an uploaded image, a vector, or the name of a stored image."""

    top_k: int = TOP_K_DEFAULT
    min_score: float | None = None
    image: bytes | None = None
    filename: str = "query"
    vector: list[float] | None = None
    fingerprint: str | None = None  # the model the vector came from, when the client says
    name: str | None = None


def parse_top_k(raw: Any) -> int:
    """`top_k` from a form, query string or JSON value: an integer from 1 to 100."""
    if raw is None or raw == "":
        return TOP_K_DEFAULT
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_top_k", f"top_k must be an integer from 1 to {TOP_K_MAX}; got {raw!r}") from None
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


def parse_vector(raw: Any) -> list[float]:
    """A query vector: a non-empty list of finite numbers, not all zero."""
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "bad_vector", "vector must be a non-empty JSON array of numbers")
    if len(raw) > VECTOR_MAX_DIM:
        raise ApiError(400, "bad_vector", f"vector has {len(raw)} values; at most {VECTOR_MAX_DIM} are accepted")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in raw):
        raise ApiError(400, "bad_vector", "vector must hold only finite numbers (no strings, null, NaN or inf)")
    # Cosine similarity ignores scale, but float32 does not: normalise in float64 before anything casts,
    # so 1e300 or 1e-40 times a vector ranks exactly like the vector itself. Dividing by the largest
    # magnitude first keeps the norm itself from overflowing or underflowing.
    vec = np.asarray(raw, dtype=np.float64)
    peak = float(np.max(np.abs(vec)))
    if peak == 0.0:
        raise ApiError(400, "bad_vector", "vector is all zeros; cosine similarity is undefined for it")
    vec = vec / peak
    return (vec / np.linalg.norm(vec)).tolist()


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


def parse_search(req: Request) -> SearchQuery:
    """A search request: multipart (`image`, `top_k`, `min_score`) or JSON (`vector` or `name`)."""
    if req.mimetype == "multipart/form-data":
        filename, data = uploaded_image(req)
        return SearchQuery(
            top_k=parse_top_k(req.form.get("top_k", req.args.get("top_k"))),
            min_score=parse_min_score(req.form.get("min_score", req.args.get("min_score"))),
            image=data, filename=filename,
        )
    if req.is_json:
        try:
            body = req.get_json(silent=True)
        except RecursionError:  # silent=True only swallows ValueError; absurdly nested JSON raises this
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", 'the body must be a JSON object such as {"vector": [...], "top_k": 10}')
        query = SearchQuery(
            top_k=parse_top_k(body.get("top_k", req.args.get("top_k"))),
            min_score=parse_min_score(body.get("min_score", req.args.get("min_score"))),
        )
        if ("vector" in body) == ("name" in body):
            raise ApiError(400, "bad_query", 'give exactly one of "vector" (a list of numbers) or "name" (a stored image)')
        if "vector" in body:
            query.vector = parse_vector(body["vector"])
            fp = body.get("fingerprint")
            if fp is not None and not isinstance(fp, str):
                raise ApiError(400, "bad_fingerprint", "fingerprint must be a string")
            query.fingerprint = fp or None
        else:
            query.name = parse_name(body["name"])
        return query
    raise ApiError(
        415, "unsupported_media_type",
        "send multipart/form-data with an 'image' part, or application/json with a 'vector' or 'name'",
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
