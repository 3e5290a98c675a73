"""Load: 16 concurrent clients for 30 s against POST /v1/search on the session's real stack:
zero 5xx, p50/p99 reported, and the RSS of each service (extractor, search service) grows by less than
20% over its warmed-up size. Latency is reported, never asserted (no timing thresholds)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from tests.reliability.conftest import photo_files
from tests.reliability.helpers import CLIENT_TIMEOUT, Load, percentile, tree_rss

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS, SECONDS, WARM_UP_S = 16, 30.0, 3.0


def test_16_clients_for_30_seconds(extractor_service, search_service, session_catalogue, sample_photos):
    photos = [(p.name, p.read_bytes()) for p in photo_files(sample_photos)]
    vector = np.random.default_rng(5).random(512).tolist()

    def request(i: int, session: requests.Session):
        # Three in four searches upload a picture (extractor + Milvus); one in four sends a vector (Milvus).
        if i % 4 == 3:
            return "vector", session.post(search_service.url + "/v1/search", json={"vector": vector, "top_k": 10},
                                          timeout=CLIENT_TIMEOUT)
        name, data = photos[i % len(photos)]
        return "image", session.post(search_service.url + "/v1/search", files={"image": (name, data)},
                                     data={"top_k": 10}, timeout=CLIENT_TIMEOUT)

    with Load(CLIENTS, request) as load:
        time.sleep(WARM_UP_S)  # the extractor reaches its full batch size; pools fill up
        rss0 = {"extractor": tree_rss(extractor_service.pids), "search": tree_rss(search_service.pids)}
        t0 = time.monotonic()
        time.sleep(SECONDS)
        load.stop()
    rss1 = {"extractor": tree_rss(extractor_service.pids), "search": tree_rss(search_service.pids)}
    measured = load.since(t0)
    statuses = {s: sum(o.status == s for o in measured) for s in {o.status for o in measured}}
    lat = {kind: [(o.ended - o.started) * 1000 for o in measured if o.kind == kind and o.status == 200]
           for kind in ("image", "vector")}
    every = lat["image"] + lat["vector"]
    report = (f"{CLIENTS} clients x {SECONDS:.0f}s: {len(measured)} searches ({len(measured) / SECONDS:.1f}/s), "
              f"statuses {statuses}; p50 {percentile(every, 50):.0f} ms, p99 {percentile(every, 99):.0f} ms; "
              f"image p50/p99 {percentile(lat['image'], 50):.0f}/{percentile(lat['image'], 99):.0f} ms, "
              f"vector p50/p99 {percentile(lat['vector'], 50):.0f}/{percentile(lat['vector'], 99):.0f} ms; RSS "
              + ", ".join(f"{k} {rss0[k] / 2**20:.0f}->{rss1[k] / 2**20:.0f} MiB" for k in rss0))
    print(report)
    assert measured and statuses.get(200, 0) > 0, report
    assert not [o for o in load.snapshot() if o.status >= 500 or o.status == 0], report
    assert set(statuses) == {200}, report
    for k in rss0:
        assert rss1[k] < rss0[k] * 1.20, f"{k} RSS grew by 20% or more: {report}"
