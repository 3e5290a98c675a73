"""One collection per backbone: vectors of one backbone never meet a collection built by another.

A catalogue indexed with VGG16 (the session's hed-vgg16 extractor) and the same photos through a real
EfficientNet-Lite0 extractor: the loader refuses the other backbone's HDF5 file and images with a one-line
error, the search service answers 409 with JSON, and the same photos in a collection of their own work.
"""

from __future__ import annotations

import json
import uuid

import h5py
import pytest
import requests

from tests.loader.conftest import run_loader
from devstack.processes import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lite0_extractor(tmp_path_factory):
    logs = tmp_path_factory.mktemp("lite0")
    svc = ServiceProcess("extractor_service", env={"EXTRACTOR_MODEL": "efficientnet-lite0", "TF_CPP_MIN_LOG_LEVEL": "2"},
                         log_path=logs / "extractor.log").start(timeout=300)
    yield svc
    svc.stop()


def _search_service(milvus_server, extractor, collection, image_root, log_dir) -> ServiceProcess:
    return ServiceProcess("search_service", env={
        "MILVUS_URI": milvus_server.uri, "EXTRACTOR_URL": extractor.url, "COLLECTION": collection,
        "IMAGE_ROOT": str(image_root)}, log_path=log_dir / f"search-{collection}.log", ready_path="/healthz").start()


def _one_line_error(res) -> str:
    assert res.returncode != 0, res.stdout
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_each_backbone_keeps_its_own_collection(milvus_server, extractor_service, lite0_extractor, sample_photos,
                                                tmp_path, monkeypatch):
    monkeypatch.setenv("LOADER_STATE_DIR", str(tmp_path / "state"))
    info = requests.get(lite0_extractor.url + "/v1/info", timeout=10).json()
    assert (info["model"], info["dim"], info["weights"]) == ("efficientnet-lite0", 1280, "imagenet")
    assert info["fingerprint"].startswith("efficientnet-lite0-")
    vgg, lite = "vgg_" + uuid.uuid4().hex[:8], "lite_" + uuid.uuid4().hex[:8]
    milvus = ["--milvus-uri", milvus_server.uri]
    res = run_loader("index", str(sample_photos), "--extractor-url", extractor_service.url, "--collection", vgg,
                     "-q", *milvus, timeout=600)
    assert res.returncode == 0, res.stderr

    # The other backbone's vectors, as an HDF5 file (fingerprint recorded) and straight from images.
    feats = tmp_path / "lite0.h5"
    res = run_loader("extract", str(sample_photos), "-o", str(feats), "--extractor-url", lite0_extractor.url, "-q",
                     timeout=600)
    assert res.returncode == 0, res.stderr
    with h5py.File(feats, "r") as f:
        assert f["dataset_1"].shape[1] == 1280 and f.attrs["fingerprint"] == info["fingerprint"]
    error = _one_line_error(run_loader("import", str(feats), "--collection", vgg, *milvus))
    assert "512-d" in error and "1280-d" in error
    error = _one_line_error(run_loader("index", str(sample_photos), "--extractor-url", lite0_extractor.url,
                                       "--collection", vgg, *milvus, timeout=600))
    assert "512-d" in error and "1280-d" in error
    res = run_loader("import", str(feats), "--collection", lite, "-q", *milvus)
    assert res.returncode == 0, res.stderr

    photo = sorted(sample_photos.glob("*.jpg"))[0]
    services = [_search_service(milvus_server, lite0_extractor, c, sample_photos, tmp_path) for c in (vgg, lite)]
    try:
        wrong, right = (s.url for s in services)
        for path, data in (("/v1/search", {}), ("/v1/images", {"name": "new.jpg"})):
            with open(photo, "rb") as fh:
                resp = requests.post(wrong + path, files={"image": fh}, data=data, timeout=120)
            assert resp.status_code == 409, resp.text
            err = resp.json()["error"]
            assert err["code"] == "fingerprint_mismatch" and "vgg16-" in err["message"], err
        vector = json.dumps({"vector": [0.0] * 1279 + [1.0], "top_k": 3})
        resp = requests.post(wrong + "/v1/search", data=vector, headers={"Content-Type": "application/json"}, timeout=60)
        assert 400 <= resp.status_code < 500 and "512" in resp.json()["error"]["message"], resp.text
        with open(photo, "rb") as fh:
            resp = requests.post(right + "/v1/search", files={"image": fh}, timeout=120)
        assert resp.status_code == 200, resp.text
        top = resp.json()["results"][0]
        assert top["name"] == photo.name and top["score"] >= 0.99
    finally:
        for s in services:
            s.stop()
