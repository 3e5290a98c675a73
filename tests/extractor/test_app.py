"""The Flask app in-process around a real small extractor (hed weights, 64x64): API shapes and errors."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from extractor_service.app import create_app
from extractor_service.openapi import OPENAPI
from extractor_service.preprocessing import load_image
from service_common.openapi import route_drift, undocumented_fields


def _files(*items):
    return {"image": [(io.BytesIO(data), name) for name, data in items]}


def _post(client, *items, **kw):
    return client.post("/v1/extract", data=_files(*items), content_type="multipart/form-data", **kw)


def test_health_ready_info(client, small_extractor):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["fingerprint"] == small_extractor.fingerprint
    info = client.get("/v1/info").get_json()
    assert {k: info[k] for k in ("model", "weights", "dim", "input_size", "pooling", "normalized")} == {
        "model": "vgg16", "weights": "hed-vgg16", "dim": 512, "input_size": 64, "pooling": "max", "normalized": True}
    assert info["fingerprint"].startswith("vgg16-")


def test_extract_many_in_order_with_per_item_errors(client, varied, small_extractor):
    names = ["baseline.jpg", "alpha.png", "cmyk.jpg"]
    resp = _post(client, *[(n, varied[n]) for n in names[:2]], ("bad.txt", b"not an image"), (names[2], varied[names[2]]),
                 ("empty.jpg", b""))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["fingerprint"] == small_extractor.fingerprint and body["dim"] == 512
    results = body["results"]
    assert len(results) == 5
    assert results[2]["error"] == {"code": "not_an_image", "status": 415, "message": results[2]["error"]["message"]}
    assert results[4]["error"]["code"] == "empty_file" and results[4]["error"]["status"] == 400
    for i, name in zip((0, 1, 3), names):
        v = np.asarray(results[i]["vector"], dtype=np.float32)
        assert v.shape == (512,)
        assert abs(np.linalg.norm(v) - 1) < 1e-5
        expected = small_extractor.model(load_image(varied[name], 64)[None])[0]
        assert np.abs(v - expected).max() <= 1e-5, name
    assert not np.allclose(results[0]["vector"], results[1]["vector"])


def test_binary_response(client, varied):
    resp = _post(client, ("a.jpg", varied["baseline.jpg"]), ("b.txt", b"junk"),
                 headers={"Accept": "application/octet-stream"})
    assert resp.status_code == 200 and resp.mimetype == "application/octet-stream"
    matrix = np.frombuffer(resp.data, dtype="<f4").reshape(int(resp.headers["X-Count"]), int(resp.headers["X-Dim"]))
    assert matrix.shape == (2, 512) and np.isnan(matrix[1]).all()
    assert abs(np.linalg.norm(matrix[0]) - 1) < 1e-5
    assert resp.headers["X-Errors"] == '[{"index":1,"code":"not_an_image","status":415}]'
    json_vector = _post(client, ("a.jpg", varied["baseline.jpg"])).get_json()["results"][0]["vector"]
    np.testing.assert_array_equal(matrix[0], np.asarray(json_vector, dtype=np.float32))


@pytest.mark.parametrize("kwargs, status, code", [
    ({"data": {"other": (io.BytesIO(b"x"), "x.jpg")}, "content_type": "multipart/form-data"}, 400, "missing_image"),
    ({"data": {"image": "not a file"}, "content_type": "multipart/form-data"}, 400, "missing_image"),
    ({"json": {"image": "x"}}, 415, "not_multipart"),
    ({}, 415, "not_multipart"),
])
def test_whole_request_errors(client, kwargs, status, code):
    resp = client.post("/v1/extract", **kwargs)
    assert resp.status_code == status
    assert resp.get_json()["error"]["code"] == code


def test_too_many_parts(client, small_config, varied):
    n = small_config.max_parts + 1
    resp = _post(client, *[(f"{i}.jpg", varied["tiny.png"]) for i in range(n)])
    assert resp.status_code == 413
    err = resp.get_json()["error"]
    assert err["code"] == "too_many_parts" and str(small_config.max_parts) in err["message"]


def test_far_too_many_parts_is_stopped_while_parsing(client, small_config):
    resp = _post(client, *[(f"{i}.jpg", b"x") for i in range(small_config.max_parts * 3 + 20)])
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "too_many_parts"


def test_request_body_too_large(client, small_config):
    resp = _post(client, ("big.jpg", b"\xff" * (small_config.max_request_bytes + 10)))
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "request_too_large"


def test_file_over_byte_limit_is_a_per_item_error(client, small_config, varied):
    resp = _post(client, ("big.jpg", b"\xff" * (small_config.max_file_bytes + 1)), ("ok.jpg", varied["baseline.jpg"]))
    results = resp.get_json()["results"]
    assert results[0]["error"]["code"] == "file_too_large" and results[0]["error"]["status"] == 413
    assert "vector" in results[1]


def test_unknown_route_and_method_are_json(client):
    nf = client.get("/nope")
    assert nf.status_code == 404 and nf.get_json()["error"]["code"] == "not_found"
    na = client.get("/v1/extract")
    assert na.status_code == 405 and na.get_json()["error"]["code"] == "method_not_allowed"


def test_metrics(client, varied):
    _post(client, ("a.jpg", varied["baseline.jpg"]))
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("extractor_requests_total", "extractor_images_total", "extractor_batch_size_bucket",
                 'extractor_stage_seconds_bucket{le="0.001",stage="decode"}', 'stage="model"', 'stage="total"'):
        assert name in text


class BrokenModel:
    def __call__(self, batch):
        raise RuntimeError("secret internal detail")


def test_unexpected_failure_is_500_json_without_trace(small_config, varied):
    from extractor_service.extractor import Extractor

    from extractor_service.backbones.vgg16 import VGG16

    ex = Extractor(small_config, BrokenModel(), backbone=VGG16, fingerprint="vgg16-test", weights_name="test")
    try:
        resp = _post(create_app(small_config, ex).test_client(), ("a.jpg", varied["baseline.jpg"]))
    finally:
        ex.close()
    assert resp.status_code == 500
    assert resp.get_json() == {"error": {"code": "internal_error",
                                         "message": "unexpected server error; see the extractor's log"}}


def test_not_ready_until_loaded_then_ready(small_config, small_extractor):
    release = threading.Event()

    def slow_loader(config, metrics=None):
        release.wait(10)
        return small_extractor

    client = create_app(small_config, loader=slow_loader).test_client()
    assert client.get("/healthz").status_code == 200
    for path in ("/readyz", "/v1/info"):
        resp = client.get(path)
        assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "not_ready"
    assert client.post("/v1/extract").status_code == 503
    release.set()
    for _ in range(100):
        if client.get("/readyz").status_code == 200:
            break
        threading.Event().wait(0.05)
    assert client.get("/readyz").status_code == 200


def test_load_failure_is_reported(small_config):
    called = threading.Event()

    def failing_loader(config, metrics=None):
        raise RuntimeError("weights file vanished")

    client = create_app(small_config, loader=failing_loader, on_load_error=lambda exc: called.set()).test_client()
    assert called.wait(5)
    resp = client.get("/readyz")
    assert resp.status_code == 503 and "weights file vanished" in resp.get_json()["error"]["message"]


def test_openapi_document_lists_the_endpoints(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert {"/healthz", "/readyz", "/v1/info", "/v1/extract", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/extract"]["post"]["requestBody"]["content"]


def test_openapi_document_matches_the_routes(small_app):
    assert route_drift(small_app, OPENAPI) == []


def test_openapi_document_covers_every_field_of_real_responses(client, varied, small_config):
    def check(resp, path, method):
        body = resp.get_json()
        assert undocumented_fields(OPENAPI, path, method, resp.status_code, body) == [], (path, body)

    for path in ("/healthz", "/readyz", "/v1/info"):
        check(client.get(path), path, "get")  # /v1/info: preprocessing and why too
    check(_post(client, ("a.jpg", varied["baseline.jpg"]), ("b.txt", b"junk")), "/v1/extract", "post")
    check(client.post("/v1/extract", json={}), "/v1/extract", "post")  # 415
    check(client.post("/v1/extract", data={"other": "x"}, content_type="multipart/form-data"), "/v1/extract",
          "post")  # 400
    check(_post(client, *[(f"{i}.jpg", b"x") for i in range(small_config.max_parts + 1)]), "/v1/extract",
          "post")  # 413
    release = threading.Event()

    def never_loads(config, metrics=None):
        release.wait(30)
        raise RuntimeError("the test is over")

    loading = create_app(small_config, loader=never_loads)
    try:
        for path in ("/readyz", "/v1/info"):
            check(loading.test_client().get(path), path, "get")  # 503 while loading
    finally:
        release.set()
