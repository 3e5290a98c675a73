"""The extractor's Flask app: `create_app(config, extractor=None)`.

Routes: GET /healthz, GET /readyz, GET /v1/info, POST /v1/extract, GET /metrics, GET /openapi.json. Every
error is JSON `{"error": {"code", "message"}}` (the envelope and handlers of `service_common.errors`); bad
input gets a 4xx naming what to fix, never a 500 or a stack trace. A bad image inside a good request is not
an HTTP error: it is that image's result (`ImageError`), next to the other images' vectors.
When no extractor is handed in, the model loads on a background thread and /readyz answers 503 until it
is loaded and warmed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

import numpy as np
from flask import Blueprint, Flask, Response, current_app, request

from extractor_service.batching import BatcherClosed, BatcherOverloaded
from extractor_service.config import ExtractorConfig
from extractor_service.extractor import Extractor, load_extractor
from extractor_service.metrics import ExtractorMetrics
from extractor_service.openapi import OPENAPI
from extractor_service.preprocessing import ImageError
from service_common.json import OrjsonProvider
from service_common.errors import ApiError, Wording, register_json_errors

log = logging.getLogger(__name__)
bp = Blueprint("extractor", __name__)
BINARY_TYPE = "application/octet-stream"


WORDING = Wording(
    body_too_large=("request_too_large",
                    "the request body is over the limit of {limit} bytes: send fewer or smaller images"),
    too_many_parts=("too_many_parts", "the request has too many multipart parts: split it"),
    internal=("internal_error", "unexpected server error; see the extractor's log"),
)


class ServiceState:
    """The app's extractor (None until loaded), the load error if any, and the metrics."""

    def __init__(self, config: ExtractorConfig, metrics: ExtractorMetrics):
        self.config = config
        self.metrics = metrics
        self.extractor: Extractor | None = None
        self.load_error: str | None = None

    def set_extractor(self, extractor: Extractor) -> None:
        self.extractor = extractor
        self.metrics.ready.set(1)

    def require_extractor(self) -> Extractor:
        """The loaded extractor, or a 503 saying why there is none yet."""
        if self.extractor is None:
            why = f"the model failed to load: {self.load_error}" if self.load_error else "the model is loading"
            raise ApiError(503, "not_ready", why)
        return self.extractor


def _state() -> ServiceState:
    return current_app.extensions["extractor"]


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    extractor = _state().require_extractor()
    return {"status": "ready", "fingerprint": extractor.fingerprint}


@bp.get("/v1/info")
def info():
    return _state().require_extractor().info()


@bp.get("/openapi.json")
def openapi():
    return OPENAPI


@bp.get("/metrics")
def metrics():
    return Response(_state().metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.post("/v1/extract")
def extract():
    """Multipart `image` parts -> one result per part, in order; see CONTRACT.md."""
    state = _state()
    start = time.perf_counter()
    extractor = state.require_extractor()
    blobs = _read_image_parts(state.config)
    try:
        results = extractor.extract(blobs)
    except BatcherOverloaded as exc:
        raise ApiError(503, "overloaded", str(exc)) from None
    except (TimeoutError, BatcherClosed):
        raise ApiError(503, "timeout", "the model did not answer in time; retry later") from None
    state.metrics.stage_seconds.labels("total").observe(time.perf_counter() - start)
    if BINARY_TYPE in request.headers.get("Accept", ""):
        return _binary_response(extractor, results)
    out = [
        {"error": r.to_dict()} if isinstance(r, ImageError) else {"vector": r.tolist()} for r in results
    ]
    return {"fingerprint": extractor.fingerprint, "dim": extractor.dim, "results": out}


def _read_image_parts(config: ExtractorConfig) -> list[bytes]:
    """The bytes of every `image` part, each read up to the file limit (+1 byte to detect overflow)."""
    if not request.mimetype.startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart",
                       "send multipart/form-data with one or more parts named 'image'")
    parts = request.files.getlist("image")
    if not parts and "image" in request.form:
        raise ApiError(400, "missing_image",
                       "the 'image' part is a text field: send it as a file part (curl -F image=@photo.jpg)")
    if not parts:
        raise ApiError(400, "missing_image", "no part named 'image': send one or more multipart parts named 'image'")
    if len(parts) > config.max_parts:
        raise ApiError(413, "too_many_parts",
                       f"{len(parts)} image parts; at most {config.max_parts} per request: split the request")
    return [p.stream.read(config.max_file_bytes + 1) for p in parts]


def _binary_response(extractor: Extractor, results: list) -> Response:
    """N x dim little-endian float32; failed rows are NaN and listed in the X-Errors header."""
    matrix = np.full((len(results), extractor.dim), np.nan, dtype="<f4")
    errors = []
    for i, r in enumerate(results):
        if isinstance(r, ImageError):
            errors.append({"index": i, "code": r.code, "status": r.status})
        else:
            matrix[i] = r
    resp = Response(matrix.tobytes(), mimetype=BINARY_TYPE)
    resp.headers["X-Fingerprint"] = extractor.fingerprint
    resp.headers["X-Dim"] = str(extractor.dim)
    resp.headers["X-Count"] = str(len(results))
    resp.headers["X-Errors"] = json.dumps(errors, separators=(",", ":"))
    return resp


def _count_requests(app: Flask) -> None:
    @app.after_request
    def count(resp: Response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        app.extensions["extractor"].metrics.requests.labels(endpoint, str(resp.status_code)).inc()
        return resp


def create_app(config: ExtractorConfig | None = None, extractor: Extractor | None = None, *,
               loader: Callable[..., Extractor] | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> Flask:
    """The extractor web app around `extractor`, or around one loaded in the background by `loader`.

    `loader(config, metrics=...)` defaults to `load_extractor`; `on_load_error` is called when it fails
    (the gunicorn launcher exits the worker so the server stops with the error).
    """
    config = config or ExtractorConfig.from_env()
    app = Flask(__name__)
    # Bound the whole body and the number of parts werkzeug will parse; per-part limits are checked later.
    app.config.update(MAX_CONTENT_LENGTH=config.max_request_bytes, MAX_FORM_PARTS=config.max_parts * 2 + 16)
    app.json = OrjsonProvider(app)  # fast JSON; keys keep their order ("results" first, as documented)
    metrics = extractor.metrics if extractor is not None else ExtractorMetrics()
    state = ServiceState(config, metrics)
    app.extensions["extractor"] = state
    app.register_blueprint(bp)
    register_json_errors(app, WORDING)
    _count_requests(app)
    if extractor is not None:
        state.set_extractor(extractor)
    else:
        threading.Thread(target=_load_in_background, args=(state, loader or load_extractor, on_load_error),
                         name="model-loader", daemon=True).start()
    return app


def _load_in_background(state: ServiceState, loader, on_load_error) -> None:
    try:
        state.set_extractor(loader(state.config, metrics=state.metrics))
    except BaseException as exc:  # noqa: BLE001 - reported through /readyz and on_load_error
        log.exception("the model failed to load")
        state.load_error = str(exc)
        if on_load_error is not None:
            on_load_error(exc)

