"""The JSON API: search and catalogue management (`/v1/...`)."""

from __future__ import annotations

import hmac
import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request, send_file

from search_service.errors import ApiError
from search_service.files import file_url, sniff_mimetype
from search_service.inputs import parse_meta, parse_name, parse_search, uploaded_image
from search_service.services import Services

bp = Blueprint("api", __name__, url_prefix="/v1")

EMPTY_MESSAGE = (
    "The catalogue is empty: add pictures with POST /v1/images, or load a folder with "
    "'python -m loader index DIR'."
)


def services() -> Services:
    """The app's long-lived resources (catalogue, extractor, guard, files, metrics)."""
    return current_app.extensions["search_service"]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def require_token() -> None:
    """Refuse a write without the right bearer token when API_TOKEN is set (401)."""
    token = services().config.api_token
    if not token:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "this write needs the header 'Authorization: Bearer <API_TOKEN>'",
                       {"WWW-Authenticate": 'Bearer realm="search"'})


def _hit(h: dict) -> dict[str, Any]:
    return {"name": h["name"], "score": round(float(h["score"]), 6), "url": file_url(h["name"]),
            "meta": h.get("meta") or {}}


@bp.post("/search")
def search():
    """Search by an uploaded image, a vector or a stored image's name; best results first."""
    started = time.perf_counter()
    svc = services()
    query = parse_search(request)
    took: dict[str, float] = {}
    if query.image is not None:
        t = time.perf_counter()
        vector, fingerprint = svc.extractor.extract_one(query.filename, query.image)
        took["extract"] = _ms(t)
        info = svc.guard.check(fingerprint, len(vector))
    elif query.vector is not None:
        stored = svc.guard.collection()
        if stored.exists and stored.dim and len(query.vector) != stored.dim:
            raise ApiError(400, "bad_vector", f"vector has {len(query.vector)} values; the collection "
                                              f"{svc.catalog.collection!r} stores {stored.dim}-d vectors")
        fingerprint = query.fingerprint or svc.guard.extractor_info().fingerprint
        info = svc.guard.check(fingerprint, len(query.vector))
        vector = np.asarray(query.vector, dtype=np.float32)
    else:
        info = svc.guard.collection()
        rows = svc.catalog.get([query.name], with_vectors=True) if info.exists else []
        if not rows:
            raise ApiError(404, "not_found", f"no image named {query.name!r} in the catalogue")
        vector = np.asarray(rows[0]["vector"], dtype=np.float32)
    body: dict[str, Any] = {"results": []}
    if info.exists:
        t = time.perf_counter()
        hits = svc.catalog.search(vector, top_k=query.top_k, index=info.index, params=svc.config.search_params,
                                  consistency_level=svc.config.search_consistency)[0]
        took["search"] = _ms(t)
        if query.min_score is not None:
            hits = [h for h in hits if h["score"] >= query.min_score]
        body["results"] = [_hit(h) for h in hits]
    if not body["results"]:
        if not info.exists or svc.catalog.count() == 0:
            body.update(empty=True, message=EMPTY_MESSAGE)
        elif query.min_score is not None:
            body["message"] = f"no image scored at least min_score={query.min_score}"
    took["total"] = _ms(started)
    body["took_ms"] = took
    svc.metrics.observe_stages(took)
    svc.metrics.results.observe(len(body["results"]))
    return jsonify(body)


@bp.post("/images")
def add_image():
    """Store an image under IMAGE_ROOT, extract its vector and upsert it (201 new, 200 replaced)."""
    require_token()
    svc = services()
    filename, data = uploaded_image(request)
    name = parse_name(request.form.get("name") or filename)
    meta = parse_meta(request.form.get("meta"))
    vector, fingerprint = svc.extractor.extract_one(name, data)
    info = svc.ensure_collection(fingerprint, len(vector))
    replaced = info.exists and bool(svc.catalog.existing([name]))
    staged = svc.files.stage(name, data)
    try:
        svc.catalog.upsert([name], vector[None, :], [meta])
    except Exception:
        svc.files.discard(staged)
        raise
    svc.files.commit(staged, name)
    body = {"name": name, "url": file_url(name), "meta": meta, "replaced": replaced, "fingerprint": fingerprint}
    return jsonify(body), (200 if replaced else 201)


def _stored(name: str) -> dict:
    """The stored row for `name`, or 404."""
    svc = services()
    rows = svc.catalog.get([name]) if svc.guard.collection().exists else []
    if not rows:
        raise ApiError(404, "not_found", f"no image named {name!r} in the catalogue")
    return rows[0]


@bp.get("/images/<path:name>")
def get_image(name: str):
    """The stored metadata of one image."""
    row = _stored(name)
    has_file = services().files.find(name) is not None
    return jsonify({"name": row["name"], "meta": row.get("meta") or {}, "url": file_url(name), "file": has_file})


@bp.get("/images/<path:name>/file")
def get_image_file(name: str):
    """The image file itself, only from under IMAGE_ROOT (404 for anything else)."""
    path = services().files.find(name)
    if path is None:
        raise ApiError(404, "not_found", f"no file for image {name!r}")
    with open(path, "rb") as f:
        mime = sniff_mimetype(f.read(16))
    resp = send_file(path, mimetype=mime or "application/octet-stream", as_attachment=mime is None,
                     download_name=path.name, max_age=300, conditional=True)
    # Uploaded bytes are served from our origin: never let a browser treat them as a page.
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return resp


@bp.delete("/images/<path:name>")
def delete_image(name: str):
    """Remove an image from the catalogue and its file from IMAGE_ROOT."""
    require_token()
    svc = services()
    _stored(name)
    svc.catalog.delete([name])
    file_removed = svc.files.remove(name)
    return jsonify({"name": name, "deleted": True, "file_removed": file_removed})


@bp.get("/stats")
def stats():
    """Catalogue size and identity."""
    svc = services()
    info = svc.guard.collection(refresh=True)
    body: dict[str, Any] = {
        "collection": svc.catalog.collection,
        "exists": info.exists,
        "count": svc.catalog.count() if info.exists else 0,
        "fingerprint": info.fingerprint,
        # The backbone that built the collection: fingerprints are "<model>-<hash>".
        "model": info.fingerprint.rsplit("-", 1)[0] if info.fingerprint else None,
        "dim": info.dim,
    }
    if info.index is not None:
        body["index"] = {"type": info.index.index_type, "build_params": info.index.build_params,
                         "search_params": {**info.index.search_params, **svc.config.search_params}}
    if not info.exists:
        body["message"] = EMPTY_MESSAGE
    return jsonify(body)
