"""The JSON API: search and catalogue management (`/v1/...`)."""

from __future__ import annotations

import hmac
import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request, send_file

from catalog import schema as S
from catalog.duplicates import page_after
from catalog.filters import to_expression
from search_service.errors import ApiError
from search_service.files import file_url, sniff_mimetype
from search_service.inputs import parse_limit, parse_meta, parse_name, parse_search, parse_threshold, uploaded_image
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
    """Search by uploaded images, vectors or stored images' names; best results first.

    One query answers `{"results": [...]}`; several (`image` parts, `vectors`, `names`) answer
    `{"queries": [{"results": [...]} or {"error": {...}}, ...]}` in order, searched in one Milvus call.
    """
    started = time.perf_counter()
    svc = services()
    query = parse_search(request, svc.config.max_batch)
    took: dict[str, float] = {}
    vectors, errors, info = _query_vectors(svc, query, took)
    found: list[list[dict]] = [[] for _ in vectors]
    good = [i for i, v in enumerate(vectors) if v is not None]
    if info.exists and good:
        t = time.perf_counter()
        options = dict(top_k=query.top_k, index=info.index, params=svc.config.search_params,
                       consistency_level=svc.config.search_consistency,
                       filter=to_expression(query.filter, info.scalar_fields), offset=query.offset,
                       min_score=query.min_score)
        if query.batch:
            hits = svc.catalog.search(np.stack([vectors[i] for i in good]), **options)
        else:  # concurrent single searches share Milvus calls (search_service/coalescing.py)
            hits = [svc.searches.search(vectors[0], **options)]
        took["search"] = _ms(t)
        for i, h in zip(good, hits):
            found[i] = h
    if query.batch:
        body: dict[str, Any] = {"queries": [
            {"error": errors[i]} if errors[i] else {"results": [_hit(h) for h in found[i]]} for i in range(len(vectors))
        ]}
        if not info.exists:
            body.update(empty=True, message=EMPTY_MESSAGE)
    else:
        body = {"results": [_hit(h) for h in found[0]]}
        if not body["results"]:
            if not info.exists or svc.catalog.count() == 0:
                body.update(empty=True, message=EMPTY_MESSAGE)
            elif query.min_score is not None or query.filter or query.offset:
                body["message"] = _nothing_found(query)
    took["total"] = _ms(started)
    body["took_ms"] = took
    svc.metrics.observe_stages(took)
    for hits in found:
        svc.metrics.results.observe(len(hits))
    return jsonify(body)


def _nothing_found(query) -> str:
    """Why a non-empty catalogue gave no result: the request's own limits."""
    why = []
    if query.min_score is not None:
        why.append(f"scored at least min_score={query.min_score}")
    if query.filter:
        why.append("matched the filter")
    if query.offset:
        why.append(f"ranked after offset={query.offset}")
    return "no image " + " and ".join(why)


def _query_vectors(svc: Services, query, took: dict[str, float]):
    """(one vector or None per query, one error or None per query, the collection's info).

    A single query raises its error (4xx); in a batch each query carries its own, like the extractor's.
    """
    n = len(query.queries)
    vectors: list[np.ndarray | None] = [None] * n
    errors: list[dict | None] = [None] * n
    first = query.queries[0]
    if first.image is not None:
        t = time.perf_counter()
        if not query.batch:
            vector, fingerprint = svc.extractor.extract_one(first.filename, first.image)
            vectors[0] = vector
            dim = len(vector)
            svc.guard.note_extractor(fingerprint, dim)
        else:
            batch = svc.extractor.extract([(q.filename, q.image) for q in query.queries])
            fingerprint, dim = batch.fingerprint, batch.dim
            svc.guard.note_extractor(fingerprint, dim)
            for i, item in enumerate(batch.items):
                if item.ok:
                    vectors[i] = item.vector
                else:
                    errors[i] = {"code": item.error_code or "bad_image", "message": item.error_message or "",
                                 "status": item.error_status}
        took["extract"] = _ms(t)
        return vectors, errors, svc.guard.check(fingerprint, dim)
    if first.vector is not None:
        stored = svc.guard.collection()
        for i, q in enumerate(query.queries):
            if stored.exists and stored.dim and len(q.vector) != stored.dim:
                message = (f"vector has {len(q.vector)} values; the collection {svc.catalog.collection!r} "
                           f"stores {stored.dim}-d vectors")
                if not query.batch:
                    raise ApiError(400, "bad_vector", message)
                errors[i] = {"code": "bad_vector", "message": message, "status": 400}
            else:
                vectors[i] = np.asarray(q.vector, dtype=np.float32)
        dims = {len(v) for v in vectors if v is not None}
        if len(dims) > 1:
            raise ApiError(400, "bad_vector", f"the vectors have different lengths {sorted(dims)}; send one model's")
        fingerprint = query.fingerprint or svc.guard.extractor_info().fingerprint
        return vectors, errors, svc.guard.check(fingerprint, dims.pop() if dims else None)
    info = svc.guard.collection()
    names = [q.name for q in query.queries]
    rows = {r["name"]: r for r in svc.catalog.get(names, with_vectors=True)} if info.exists else {}
    for i, name in enumerate(names):
        if name in rows:
            vectors[i] = np.asarray(rows[name]["vector"], dtype=np.float32)
        elif not query.batch:
            raise ApiError(404, "not_found", f"no image named {name!r} in the catalogue")
        else:
            errors[i] = {"code": "not_found", "message": f"no image named {name!r} in the catalogue", "status": 404}
    return vectors, errors, info


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
    svc.duplicates.changed()
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
    svc.duplicates.changed()
    file_removed = svc.files.remove(name)
    return jsonify({"name": name, "deleted": True, "file_removed": file_removed})


@bp.get("/duplicates")
def duplicates():
    """Groups of catalogue images at least `threshold` similar, a page at a time (`limit`, `after`).

    The first request for a threshold starts finding them and answers 202 with progress and Retry-After;
    once found, pages are served from memory until the catalogue changes.
    """
    svc = services()
    threshold = parse_threshold(request.args.get("threshold"))
    limit = parse_limit(request.args.get("limit"))
    after = request.args.get("after") or None
    info = svc.guard.collection()
    count = svc.catalog.count() if info.exists else 0
    body: dict[str, Any] = {"threshold": threshold}
    if count == 0:
        body.update(status="done", groups=[], next=None, total_groups=0, images=0, empty=True, message=EMPTY_MESSAGE)
        return jsonify(body)
    job = svc.duplicates.job(threshold, count)
    if job.error is not None:
        raise ApiError(503, "duplicates_failed", f"finding near-duplicates failed ({job.error}); try again",
                       {"Retry-After": str(svc.config.retry_after_s)})
    if job.groups is None:
        body.update(status="computing", scanned=job.scanned, images=count,
                    message=f"finding near-duplicate groups: {job.scanned} of {count} images searched; "
                            "ask again shortly")
        resp = jsonify(body)
        resp.status_code = 202
        resp.headers["Retry-After"] = str(svc.config.retry_after_s)
        return resp
    page, cursor = page_after(job.groups, after, limit)
    body.update(status="done", images=job.count, total_groups=len(job.groups), next=cursor,
                groups=[{**g.to_dict(), "urls": [file_url(n) for n in g.names]} for g in page])
    return jsonify(body)


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
        "scalar_fields": info.scalar_fields,
        # How vectors are stored (catalog.schema.PROP_MODE): "float", or "binary" codes re-ranked by floats.
        "mode": svc.catalog.properties().get(S.PROP_MODE, "float") if info.exists else None,
    }
    if info.index is not None:
        body["index"] = {"type": info.index.index_type, "build_params": info.index.build_params,
                         "search_params": {**info.index.search_params, **svc.config.search_params}}
    if not info.exists:
        body["message"] = EMPTY_MESSAGE
    return jsonify(body)
