"""openapi.py is held to the code: every route documented and nothing else, every field of real responses
(and every status they come with) in the document. Unit tests: the app runs on the in-memory fakes."""

from __future__ import annotations

import io

import pytest

from search_service.openapi import OPENAPI
from service_common.openapi import route_drift, undocumented_fields
from tests.search.conftest import FAKE_FP, colour_jpeg


@pytest.fixture
def app(make_app, fake_extractor):
    return make_app(fake_extractor)


def _check(resp, path: str, method: str) -> dict:
    """The response's JSON, after checking the document covers its status and every field."""
    body = resp.get_json()
    assert undocumented_fields(OPENAPI, path, method, resp.status_code, body) == [], (path, method, body)
    return body


def test_every_route_is_documented_and_nothing_else(app):
    assert route_drift(app, OPENAPI) == []


def test_the_served_document_is_this_one(app):
    assert app.test_client().get("/openapi.json").get_json() == OPENAPI


def test_real_responses_are_documented_field_by_field(app):
    client = app.test_client()
    stats = _check(client.get("/v1/stats"), "/v1/stats", "get")
    assert stats["exists"] is False and "message" in stats
    _check(client.post("/v1/search", data={"image": (io.BytesIO(colour_jpeg((10, 200, 10))), "q.jpg")},
                       content_type="multipart/form-data"), "/v1/search", "post")
    upload = {"image": (io.BytesIO(colour_jpeg((200, 10, 10))), "r.jpg"), "name": "r.jpg", "meta": '{"k": 1}'}
    assert _check(client.post("/v1/images", data=upload, content_type="multipart/form-data"),
                  "/v1/images", "post")["fingerprint"] == FAKE_FP
    stats = _check(client.get("/v1/stats"), "/v1/stats", "get")
    assert stats["model"] == FAKE_FP.rsplit("-", 1)[0] and stats["index"]["type"] == "HNSW"
    hits = _check(client.post("/v1/search", json={"name": "r.jpg", "min_score": 0.5}), "/v1/search", "post")
    assert hits["results"] and set(hits["results"][0]) == {"name", "score", "url", "meta"}
    _check(client.get("/v1/images/r.jpg"), "/v1/images/{name}", "get")
    _check(client.get("/healthz"), "/healthz", "get")
    _check(client.get("/readyz"), "/readyz", "get")
    assert _check(client.delete("/v1/images/r.jpg"), "/v1/images/{name}", "delete")["file_removed"] is True


def test_error_responses_are_documented(app, fake_extractor, catalogue_switch):
    client = app.test_client()
    client.post("/v1/images", data={"image": (io.BytesIO(colour_jpeg((200, 10, 10))), "r.jpg")},
                content_type="multipart/form-data")
    _check(client.post("/v1/search", json={"vector": "x"}), "/v1/search", "post")  # 400
    _check(client.get("/v1/images/nope.jpg"), "/v1/images/{name}", "get")  # 404
    _check(client.post("/v1/search", data=b"x", content_type="text/plain"), "/v1/search", "post")  # 415
    _check(client.post("/v1/search", data={"image": (io.BytesIO(b"junk"), "q.jpg")},
                       content_type="multipart/form-data"), "/v1/search", "post")  # 422
    fake_extractor.fingerprint = "other-model-v2"
    body = _check(client.post("/v1/images", data={"image": (io.BytesIO(colour_jpeg((9, 9, 9))), "x.jpg")},
                              content_type="multipart/form-data"), "/v1/images", "post")  # 409
    assert body["error"]["extractor_fingerprint"] == "other-model-v2"
    fake_extractor.fingerprint = FAKE_FP
    catalogue_switch.down()
    _check(client.get("/v1/stats"), "/v1/stats", "get")  # 503
    _check(client.get("/readyz"), "/readyz", "get")  # 503
