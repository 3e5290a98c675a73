"""The real service process (gunicorn, hed weights, 224 input) against the classic Keras code itself."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from tests.extractor.conftest import ClassicPipeline

pytestmark = pytest.mark.integration
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _extract(url: str, items: list[tuple[str, bytes]]) -> dict:
    resp = requests.post(url + "/v1/extract", files=[("image", (n, d)) for n, d in items], timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_vectors_equal_the_classic_keras_code(extractor_service, varied, varied_dir):
    """Issue req. 1: max |ours - classic| <= 1e-4 on >= 12 varied images, same (hed) weights, 224 input."""
    assert len(varied) >= 12
    classic = ClassicPipeline(224)
    body = _extract(extractor_service.url, list(varied.items()))
    assert body["dim"] == 512
    diffs = {}
    for (name, _), result in zip(varied.items(), body["results"]):
        assert "vector" in result, (name, result)
        ours = np.asarray(result["vector"], dtype=np.float32)
        theirs = classic.vector(varied_dir / name)
        diffs[name] = float(np.abs(ours - theirs).max())
    print("max abs diff per image:", diffs)
    assert max(diffs.values()) <= 1e-4, diffs
    info = requests.get(extractor_service.url + "/v1/info", timeout=10).json()
    assert body["fingerprint"] == info["fingerprint"] and info["input_size"] == 224


def test_concurrent_requests_are_batched_and_each_gets_its_own_vector(extractor_service, varied):
    names = list(varied)[:16]
    alone = {n: np.asarray(_extract(extractor_service.url, [(n, varied[n])])["results"][0]["vector"]) for n in names}
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda n: _extract(extractor_service.url, [(n, varied[n])]), names))
    for n, body in zip(names, together):
        assert np.abs(np.asarray(body["results"][0]["vector"]) - alone[n]).max() <= 1e-5, n
    metrics = requests.get(extractor_service.url + "/metrics", timeout=10).text
    assert "extractor_batch_size_count" in metrics


def _bomb(side_w=10_000, side_h=5_000) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (side_w, side_h)).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_input_is_4xx_and_the_service_stays_healthy_and_bounded(extractor_service, varied):
    url = extractor_service.url
    worker = max((psutil.Process(p) for p in extractor_service.pids), key=lambda p: p.memory_info().rss)
    truncated = varied["baseline.jpg"][:5000]
    cases = [("empty.jpg", b"", 400, "empty_file"), ("text.jpg", b"plain text", 415, "not_an_image"),
             ("cut.jpg", truncated, 422, "truncated_image"), ("bomb.png", _bomb(), 413, "too_many_pixels")]
    rss_before = None
    for round_ in range(6):
        body = _extract(url, [(n, d) for n, d, _, _ in cases] + [("ok.jpg", varied["baseline.jpg"])])
        for (name, _, status, code), result in zip(cases, body["results"]):
            assert result["error"]["code"] == code and result["error"]["status"] == status, (name, result)
            assert result["error"]["message"]
        assert "vector" in body["results"][-1]
        if round_ == 0:
            rss_before = worker.memory_info().rss
    assert worker.memory_info().rss - rss_before < 150 * 2**20
    big = requests.post(url + "/v1/extract", files=[("image", ("big.jpg", b"\0" * 21_000_000))], timeout=60)
    assert big.status_code == 200 and big.json()["results"][0]["error"]["code"] == "file_too_large"
    many = requests.post(url + "/v1/extract", files=[("image", (f"{i}.png", b"x")) for i in range(65)], timeout=60)
    assert many.status_code == 413 and many.json()["error"]["code"] == "too_many_parts"
    assert requests.post(url + "/v1/extract", data=b"x", timeout=10).status_code == 415
    assert requests.get(url + "/healthz", timeout=10).status_code == 200
    assert requests.get(url + "/readyz", timeout=10).status_code == 200


def test_the_catalog_client_understands_the_service(extractor_service, varied):
    from extractor_client import ExtractorClient, ExtractorRejected

    client = ExtractorClient(extractor_service.url)
    assert client.ready() and client.info()["dim"] == 512
    batch = client.extract([("a.jpg", varied["baseline.jpg"]), ("b.txt", b"nope")])
    assert batch.items[0].ok and batch.items[0].vector.shape == (512,)
    assert (batch.items[1].error_code, batch.items[1].error_status) == ("not_an_image", 415)
    with pytest.raises(ExtractorRejected) as info:
        client.extract_one("cut.jpg", varied["baseline.jpg"][:5000])
    assert info.value.status == 422
    client.close()


@pytest.mark.parametrize("model, weights, message", [
    ("auto", "/nonexistent/vgg.h5", "not imagenet, hed-vgg16, auto, or an existing file"),
    ("vgg16", __file__, "not a VGG16 weights file"),
    ("mobilenet", "auto", "EXTRACTOR_MODEL must be one of auto, vgg16, resnet50, densenet121, efficientnet-lite0"),
    ("resnet50", "auto", "make weights"),
    ("efficientnet-lite0", __file__, "not usable EfficientNet-Lite0 weights"),
])
def test_wrong_model_or_weights_stop_the_service_at_start_up(tmp_path, model, weights, message):
    env = {**os.environ, "EXTRACTOR_MODEL": model, "EXTRACTOR_WEIGHTS": weights, "KERAS_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "extractor_service", "--port", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
