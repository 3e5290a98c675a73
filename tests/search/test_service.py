"""The search service as a real process (gunicorn) with the real extractor and Milvus."""

from __future__ import annotations


import pytest
import requests

from catalog import Catalog
from tests.search.conftest import photo_files, wait_until

pytestmark = pytest.mark.integration


def search_file(url: str, path, timeout: float = 60, **data) -> requests.Response:
    with open(path, "rb") as fh:
        return requests.post(url + "/v1/search", files={"image": (path.name, fh)}, data=data, timeout=timeout)


def test_every_photo_finds_itself_first(search_service, photo_catalogue, sample_photos):
    for path in photo_files(sample_photos)[:4]:
        resp = search_file(search_service.url, path, top_k=5)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        top = body["results"][0]
        assert top["name"] == path.name and top["score"] >= 0.99
        assert top["meta"] == {"source": "scikit-image"}
        assert [r["score"] for r in body["results"]] == sorted((r["score"] for r in body["results"]), reverse=True)
        assert len(body["results"]) == 5
        took = body["took_ms"]
        assert took["total"] >= took["extract"] + took["search"] > 0
    f = requests.get(search_service.url + top["url"], timeout=10)
    assert f.status_code == 200 and f.content == path.read_bytes() and f.headers["Content-Type"] == "image/jpeg"


def test_ready_stats_and_metrics_on_the_real_stack(search_service, photo_catalogue, extractor_service):
    ready = requests.get(search_service.url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    fp = requests.get(extractor_service.url + "/v1/info", timeout=10).json()["fingerprint"]
    checks = ready.json()["checks"]
    assert checks["fingerprint"] == {"ok": True, "collection": fp, "extractor": fp}
    stats = requests.get(search_service.url + "/v1/stats", timeout=10).json()
    assert stats["count"] >= len(photo_catalogue) and stats["fingerprint"] == fp and stats["dim"] == 512
    metrics = requests.get(search_service.url + "/metrics", timeout=10).text
    assert 'search_stage_seconds_bucket{le="0.005",stage="search"}' in metrics


def _requests_total(url: str, endpoint: str) -> float:
    """search_http_requests_total of `endpoint` (every status), as /metrics reports it."""
    lines = requests.get(url + "/metrics", timeout=10).text.splitlines()
    return sum(float(ln.split()[-1]) for ln in lines
               if ln.startswith("search_http_requests_total{") and f'endpoint="{endpoint}"' in ln)


def test_the_workers_share_metrics_and_duplicate_groups(search_service, photo_catalogue):
    """Several gunicorn workers answer a client's requests in turn: /metrics must count all of them, and a
    near-duplicate job must run once and be served by every worker."""
    import psutil

    workers = psutil.Process(search_service.proc.pid).children()
    assert len(workers) == 2, [w.cmdline() for w in workers]
    before = _requests_total(search_service.url, "/healthz")
    for _ in range(30):  # a new connection each: any worker may take it
        assert requests.get(search_service.url + "/healthz", timeout=10).status_code == 200
    assert _requests_total(search_service.url, "/healthz") - before == 30
    url = search_service.url + "/v1/duplicates?threshold=0.5&limit=100"
    assert wait_until(lambda: requests.get(url, timeout=30).status_code == 200, timeout=120)
    answers = [requests.get(url, timeout=30) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1 and answers[0].json()["status"] == "done"


def _queries_per_call(url: str) -> tuple[float, float]:
    """(calls, queries) of the service's search_milvus_call_queries histogram."""
    lines = requests.get(url + "/metrics", timeout=10).text.splitlines()
    get = lambda name: float(next(ln.split()[-1] for ln in lines if ln.startswith(name + " ")))  # noqa: E731
    return get("search_milvus_call_queries_count"), get("search_milvus_call_queries_sum")


def test_concurrent_searches_get_the_answers_they_get_one_at_a_time(search_service, photo_catalogue):
    """Concurrent single searches may share Milvus calls (search_service/coalescing.py): each must still
    get its own answer, the one it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(name: str, top_k: int) -> list[tuple[str, float]]:
        resp = requests.post(search_service.url + "/v1/search", json={"name": name, "top_k": top_k}, timeout=60)
        assert resp.status_code == 200, resp.text
        return [(r["name"], round(r["score"], 4)) for r in resp.json()["results"]]

    asks = [(name, 3 + i % 2) for i, name in enumerate(photo_catalogue)] * 4
    alone = {a: ask(*a) for a in set(asks)}
    assert all(hits[0][0] == name for (name, _), hits in alone.items())
    calls0, queries0 = _queries_per_call(search_service.url)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda a: ask(*a), asks))
    assert together == [alone[a] for a in asks]
    calls, queries = _queries_per_call(search_service.url)
    assert queries - queries0 == len(asks) and 1 <= calls - calls0 <= len(asks)


def test_bad_image_gets_the_extractors_message(search_service, photo_catalogue):
    resp = requests.post(search_service.url + "/v1/search",
                         files={"image": ("notes.jpg", b"these are notes, not a picture")}, timeout=30)
    assert 400 <= resp.status_code < 500, resp.text
    err = resp.json()["error"]
    assert err["code"] and err["message"] and "Traceback" not in resp.text


def test_mismatched_collection_is_refused_with_both_fingerprints(start_search_service, milvus_server,
                                                                  extractor_service, sample_photos):
    svc = start_search_service()
    collection = svc.env["COLLECTION"]
    other = Catalog(milvus_server.uri, collection=collection)
    other.create(512, "vgg16-some-other-weights")  # a catalogue built by another model
    try:
        other.upsert(["x.jpg"], [[1.0] * 512])
        resp = search_file(svc.url, photo_files(sample_photos)[0])
        assert resp.status_code == 409, resp.text
        msg = resp.json()["error"]["message"]
        fp = requests.get(extractor_service.url + "/v1/info", timeout=10).json()["fingerprint"]
        assert "vgg16-some-other-weights" in msg and fp in msg and "results" not in resp.json()
        ready = requests.get(svc.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and "mismatch" in ready.json()["message"]
    finally:
        other.drop()
        other.close()


def test_dependencies_down_slow_and_back(start_search_service, tcp_proxy, milvus_server, extractor_service,
                                         sample_photos):
    """Extractor down, extractor hung, Milvus down: 503 + Retry-After; each recovers by itself."""
    milvus = tcp_proxy(milvus_server.uri)
    extractor = tcp_proxy(extractor_service.url)
    svc = start_search_service(MILVUS_URI=milvus.url, EXTRACTOR_URL=extractor.url, MILVUS_TIMEOUT="3",
                               EXTRACTOR_READ_TIMEOUT="2", EXTRACTOR_RETRIES="0", GUARD_TTL="0")
    photo = photo_files(sample_photos)[1]
    with open(photo, "rb") as fh:
        added = requests.post(svc.url + "/v1/images", files={"image": (photo.name, fh)}, timeout=60)
    assert added.status_code == 201, added.text

    def ok():
        return search_file(svc.url, photo).status_code == 200

    assert ok()
    for name, proxy, break_it, code in [
        ("extractor down", extractor, extractor.down, "extractor_unavailable"),
        ("extractor hung", extractor, extractor.stall, "extractor_unavailable"),
        ("milvus down", milvus, milvus.down, "catalog_unavailable"),
    ]:
        break_it()
        resp = search_file(svc.url, photo, timeout=30)  # a hang guard: the 503 must not wait for ever
        assert resp.status_code == 503, f"{name}: {resp.text}"
        assert int(resp.headers["Retry-After"]) > 0 and resp.json()["error"]["code"] == code, name
        assert requests.get(svc.url + "/readyz", timeout=30).status_code == 503
        assert requests.get(svc.url + "/healthz", timeout=5).status_code == 200
        proxy.up()
        assert wait_until(ok), f"{name}: did not recover by itself"
        assert wait_until(lambda: requests.get(svc.url + "/readyz", timeout=30).status_code == 200), name
