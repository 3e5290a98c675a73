"""Operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from catalog.errors import CatalogError
from extractor_client import ExtractorRejected, ExtractorUnavailable
from search_service.api import services
from search_service.openapi import OPENAPI

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 while the process serves requests; says nothing about dependencies."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """200 when Milvus answers, the collection is loaded, the extractor is ready and both models agree.

    A collection that does not exist yet counts as ready (the catalogue is empty; searches say so and the
    first POST /v1/images creates it for the extractor's model).
    """
    svc = services()
    checks: dict[str, dict[str, Any]] = {}
    problems: list[str] = []

    collection = None
    try:
        collection = svc.guard.collection(refresh=True)
        checks["milvus"] = {"ok": True}
        if collection.exists:
            loaded = svc.catalog.is_loaded()
            checks["collection"] = {"ok": loaded, "name": svc.catalog.collection, "loaded": loaded,
                                    "fingerprint": collection.fingerprint, "dim": collection.dim}
            if not loaded:
                problems.append(f"collection {svc.catalog.collection!r} is not loaded; load it (the loader does)")
        else:
            checks["collection"] = {"ok": True, "name": svc.catalog.collection, "exists": False,
                                    "message": "the catalogue is empty"}
    except CatalogError as exc:
        checks["milvus"] = {"ok": False, "error": str(exc)[:300]}
        problems.append(f"Milvus unavailable at {svc.config.milvus_uri}")

    extractor = None
    try:
        extractor = svc.guard.extractor_info(refresh=True)
        ready = bool(svc.probe.ready())
        checks["extractor"] = {"ok": ready, "fingerprint": extractor.fingerprint, "dim": extractor.dim}
        if not ready:
            problems.append("the extractor is not ready yet")
    except (ExtractorUnavailable, ExtractorRejected, KeyError, ValueError) as exc:
        checks["extractor"] = {"ok": False, "error": str(exc)[:300]}
        problems.append(f"extractor unavailable at {svc.config.extractor_url}")

    if collection is not None and extractor is not None and collection.exists:
        same = collection.fingerprint in (None, extractor.fingerprint) and collection.dim in (None, extractor.dim)
        checks["fingerprint"] = {"ok": same, "collection": collection.fingerprint, "extractor": extractor.fingerprint}
        if not same:
            problems.append(
                f"model mismatch: collection fingerprint {collection.fingerprint} != extractor fingerprint "
                f"{extractor.fingerprint}; re-extract the catalogue or point EXTRACTOR_URL at the right extractor"
            )

    body: dict[str, Any] = {"ready": not problems, "checks": checks}
    if problems:
        body["message"] = "; ".join(problems)
        resp = jsonify(body)
        resp.status_code = 503
        resp.headers["Retry-After"] = str(svc.config.retry_after_s)
        return resp
    return jsonify(body)


@bp.get("/metrics")
def metrics():
    """Prometheus text: request counts, request latency and per-stage search latency."""
    return services().metrics.render()


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(OPENAPI)
