"""The JSON API in-process, with a small fake extractor (the real one is in test_service.py).

Apps are built around the in-memory catalogue (unit tests: no servers, milliseconds); the tests marked
`BOTH_CATALOGUES` run on the real Milvus too (integration), so what the fake lets pass holds on Milvus.
"""

from __future__ import annotations

import io
import json

import pytest

from tests.search.conftest import BOTH_CATALOGUES, FAKE_FP, FakeExtractor, colour_jpeg, wait_until

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (40, 40, 220)


def add(client, name, data, meta=None, token=None):
    form = {"image": (io.BytesIO(data), name.rsplit("/", 1)[-1]), "name": name}
    if meta is not None:
        form["meta"] = json.dumps(meta)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/v1/images", data=form, content_type="multipart/form-data", headers=headers)


def search(client, data, **form):
    return client.post("/v1/search", data={"image": (io.BytesIO(data), "q.jpg"), **form},
                       content_type="multipart/form-data")


def assert_error(resp, status, code=None, words=""):
    assert resp.status_code == status, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    if code:
        assert err["code"] == code
    assert words.lower() in err["message"].lower()
    assert "Traceback" not in resp.get_data(as_text=True)


@pytest.fixture
def client(make_app, fake_extractor):
    return make_app(fake_extractor).test_client()


@BOTH_CATALOGUES
def test_empty_catalogue_says_so(client):
    resp = search(client, colour_jpeg(RED))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["results"] == [] and body["empty"] is True and "catalogue is empty" in body["message"]
    stats = client.get("/v1/stats").get_json()
    assert stats["count"] == 0 and stats["exists"] is False


@BOTH_CATALOGUES
def test_add_search_get_file_delete(client, tmp_path):
    red, green, blue = colour_jpeg(RED), colour_jpeg(GREEN, seed=1), colour_jpeg(BLUE, seed=2)
    resp = add(client, "cats/red.jpg", red, meta={"colour": "red"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["url"] == "/v1/images/cats/red.jpg/file"
    assert add(client, "green.jpg", green).status_code == 201
    assert add(client, "blue b#?.jpg", blue).status_code == 201
    assert (tmp_path / "images" / "cats" / "red.jpg").read_bytes() == red

    body = search(client, red, top_k="2").get_json()
    assert [r["name"] for r in body["results"]][0] == "cats/red.jpg"
    assert len(body["results"]) == 2
    top = body["results"][0]
    assert top["score"] > 0.999 and top["meta"] == {"colour": "red"} and top["url"] == "/v1/images/cats/red.jpg/file"
    assert body["results"][0]["score"] >= body["results"][1]["score"]
    assert set(body["took_ms"]) == {"extract", "search", "total"}

    # By stored name and by vector: same best match.
    assert client.post("/v1/search", json={"name": "green.jpg"}).get_json()["results"][0]["name"] == "green.jpg"
    vec = FakeExtractor().extract_one("b", blue)[0].tolist()
    by_vec = client.post("/v1/search", json={"vector": vec, "top_k": 1}).get_json()
    assert [r["name"] for r in by_vec["results"]] == ["blue b#?.jpg"] and "extract" not in by_vec["took_ms"]

    # min_score filters.
    strict = search(client, red, min_score="0.9999").get_json()["results"]
    assert [r["name"] for r in strict] == ["cats/red.jpg"]

    # Metadata and file.
    assert client.get("/v1/images/cats/red.jpg").get_json() == {
        "name": "cats/red.jpg", "meta": {"colour": "red"}, "url": "/v1/images/cats/red.jpg/file", "file": True}
    f = client.get("/v1/images/cats/red.jpg/file")
    assert f.status_code == 200 and f.data == red and f.mimetype == "image/jpeg"
    assert f.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/v1/images/blue%20b%23%3F.jpg/file").data == blue
    assert client.get("/v1/stats").get_json()["count"] == 3

    # Replace keeps one row; delete removes row and file.
    replaced = add(client, "green.jpg", green, meta={"v": 2})
    assert replaced.status_code == 200 and replaced.get_json()["replaced"] is True
    assert client.get("/v1/stats").get_json()["count"] == 3
    assert client.delete("/v1/images/cats/red.jpg").get_json()["deleted"] is True
    assert not (tmp_path / "images" / "cats" / "red.jpg").exists()
    assert_error(client.get("/v1/images/cats/red.jpg"), 404, "not_found", "cats/red.jpg")
    assert_error(client.delete("/v1/images/cats/red.jpg"), 404)
    assert "cats/red.jpg" not in [r["name"] for r in search(client, red).get_json()["results"]]


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": {"top_k": "5"}, "content_type": "multipart/form-data"}, 400, "missing_image"),
        ({"data": {"image": (io.BytesIO(b""), "e.jpg")}, "content_type": "multipart/form-data"}, 400, "empty_image"),
        ({"data": {"image": (io.BytesIO(b"x"), "e.jpg"), "top_k": "0"}, "content_type": "multipart/form-data"},
         400, "bad_top_k"),
        ({"data": {"image": (io.BytesIO(b"x"), "e.jpg"), "top_k": "101"}, "content_type": "multipart/form-data"},
         400, "bad_top_k"),
        ({"json": {"vector": [1, 2], "name": "x"}}, 400, "bad_query"),
        ({"json": {"vector": "nope"}}, 400, "bad_vector"),
        ({"json": [1, 2]}, 400, "bad_json"),
        ({"data": b"{not json", "content_type": "application/json"}, 400, "bad_json"),
        ({"data": b"raw", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
def test_bad_search_requests_get_clear_4xx(client, kwargs, status, code):
    assert_error(client.post("/v1/search", **kwargs), status, code)


def test_bad_image_passes_the_extractors_message_through(client):
    add(client, "red.jpg", colour_jpeg(RED))
    assert_error(search(client, b"this is not a picture"), 422, "undecodable_image", "cannot decode")
    assert_error(add(client, "bad.jpg", b"GIF89a-broken"), 422, "undecodable_image")


def test_wrong_vector_dimension_is_refused_not_searched(client):
    add(client, "red.jpg", colour_jpeg(RED))
    assert_error(client.post("/v1/search", json={"vector": [1.0, 2.0, 3.0]}), 400, "bad_vector", "12-d")


@pytest.mark.parametrize("name, words", [("../escape.jpg", "'..'"), ("/abs.jpg", "absolute"), ("a\\b.jpg", "backslash")])
def test_bad_names_are_refused(client, tmp_path, name, words):
    assert_error(add(client, name, colour_jpeg(RED)), 400, "bad_name", words)
    assert not (tmp_path / "escape.jpg").exists()


def test_bad_meta_is_refused(client):
    assert_error(add(client, "r.jpg", colour_jpeg(RED), meta=[1, 2]), 400, "bad_meta")


def test_files_outside_the_root_are_404(client, tmp_path):
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT")
    for path in ("/v1/images/../secret.txt/file", "/v1/images/%2E%2E/secret.txt/file",
                 f"/v1/images/{tmp_path}/secret.txt/file", "/v1/images/x%00.jpg/file"):
        resp = client.get(path, follow_redirects=True)  # '//' is merged by a redirect, still inside
        assert resp.status_code == 404 and b"TOP-SECRET" not in resp.data


def test_upload_limit_is_413(make_app, fake_extractor):
    client = make_app(fake_extractor, max_upload_bytes=1000).test_client()
    assert_error(search(client, b"\xff\xd8" + b"0" * 5000), 413, words="1000 bytes")


def test_writes_need_the_token_when_set(make_app, fake_extractor):
    client = make_app(fake_extractor, api_token="s3cret").test_client()
    resp = add(client, "r.jpg", colour_jpeg(RED))
    assert_error(resp, 401, "unauthorized", "Authorization: Bearer")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(add(client, "r.jpg", colour_jpeg(RED), token="wrong"), 401)
    assert add(client, "r.jpg", colour_jpeg(RED), token="s3cret").status_code == 201
    assert_error(client.delete("/v1/images/r.jpg"), 401)
    assert search(client, colour_jpeg(RED)).status_code == 200  # reads need no token
    assert client.delete("/v1/images/r.jpg", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@BOTH_CATALOGUES
def test_model_mismatch_is_409_and_never_returns_results(make_app):
    good = FakeExtractor()
    app = make_app(good)
    client = app.test_client()
    add(client, "red.jpg", colour_jpeg(RED))
    good.fingerprint = "other-model-v2"  # the extractor was swapped for another model
    resp = search(client, colour_jpeg(RED))
    assert_error(resp, 409, "fingerprint_mismatch")
    msg = resp.get_json()["error"]["message"]
    assert FAKE_FP in msg and "other-model-v2" in msg and "Re-extract" in msg and "EXTRACTOR_URL" in msg
    assert "results" not in resp.get_json()
    assert_error(client.post("/v1/search", json={"vector": [0.5] * 12}), 409, "fingerprint_mismatch")
    assert_error(add(client, "new.jpg", colour_jpeg(GREEN)), 409, "fingerprint_mismatch")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "mismatch" in ready.get_json()["message"]
    # A vector that says it comes from the collection's model may still be searched.
    ok = client.post("/v1/search", json={"vector": [0.5] * 12, "fingerprint": FAKE_FP})
    assert ok.status_code == 200 and ok.get_json()["results"]
    good.fingerprint = FAKE_FP  # pointed back at the right extractor: recovers at once
    assert search(client, colour_jpeg(RED)).get_json()["results"][0]["name"] == "red.jpg"
    assert client.get("/readyz").status_code == 200


def test_extractor_down_is_503_with_retry_after_and_recovers(client, fake_extractor):
    add(client, "red.jpg", colour_jpeg(RED))
    fake_extractor.down = True
    resp = search(client, colour_jpeg(RED))
    assert_error(resp, 503, "extractor_unavailable", "extractor")
    assert int(resp.headers["Retry-After"]) > 0
    assert client.get("/readyz").status_code == 503
    # Search by a stored image needs no extractor.
    assert client.post("/v1/search", json={"name": "red.jpg"}).status_code == 200
    fake_extractor.down = False
    assert search(client, colour_jpeg(RED)).status_code == 200


@BOTH_CATALOGUES
def test_catalogue_down_is_503_with_retry_after_and_recovers(client, catalogue_switch, tmp_path):
    assert add(client, "red.jpg", colour_jpeg(RED)).status_code == 201
    catalogue_switch.down()
    try:
        resp = search(client, colour_jpeg(RED))
        assert_error(resp, 503, "catalog_unavailable", "vector database is unavailable")
        assert int(resp.headers["Retry-After"]) > 0
        assert_error(add(client, "green.jpg", colour_jpeg(GREEN)), 503, "catalog_unavailable")
        assert not (tmp_path / "images" / "green.jpg").exists()  # nothing stored when the row cannot be
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["checks"]["milvus"]["ok"] is False
        assert client.get("/healthz").status_code == 200
    finally:
        catalogue_switch.up()
    # Recovers by itself: the next calls reconnect.
    assert wait_until(lambda: search(client, colour_jpeg(RED)).status_code == 200, timeout=60)
    assert search(client, colour_jpeg(RED)).get_json()["results"][0]["name"] == "red.jpg"
    assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)


def test_readyz_healthz_metrics_openapi(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["checks"]["collection"]["exists"] is False
    add(client, "red.jpg", colour_jpeg(RED))
    search(client, colour_jpeg(RED))
    ready = client.get("/readyz").get_json()
    assert ready["ready"] and ready["checks"]["fingerprint"]["ok"] and ready["checks"]["collection"]["loaded"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'search_http_requests_total{endpoint="/v1/search",method="POST",status="200"} 1.0' in text
    for stage in ("extract", "search", "total"):
        assert f'search_stage_seconds_count{{stage="{stage}"}} 1.0' in text
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/v1/search" in spec["paths"] and "/v1/images/{name}" in spec["paths"]


def test_unexpected_errors_are_500_without_trace(make_app, fake_extractor):
    app = make_app(fake_extractor)

    def boom(*a, **k):
        raise RuntimeError("secret internals /home/x/db.py line 3")

    fake_extractor.extract_one = boom
    resp = app.test_client().post("/v1/search", data={"image": (io.BytesIO(b"x"), "q.jpg")},
                                  content_type="multipart/form-data")
    assert_error(resp, 500, "internal")
    assert "secret" not in resp.get_data(as_text=True)


def test_wrong_method_is_json_405(client):
    assert_error(client.get("/v1/search"), 405, "method_not_allowed")


def test_a_name_through_a_folder_link_out_of_the_root_is_400(client, tmp_path):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "images" / "outlink").symlink_to(tmp_path / "outside")
    assert_error(add(client, "outlink/evil.jpg", colour_jpeg(RED)), 400, "bad_name", "outside IMAGE_ROOT")
    assert list((tmp_path / "outside").iterdir()) == []
