"""Search under load for bench/search.py: QPS and p50/p99 at several concurrency levels, through the
search service over HTTP (vector queries, so the extractor is not the bound) and straight against Milvus.

Clients run in `PROCESSES` forked processes (threads inside each), so the Python client is not one GIL;
they share this machine's cores with the servers, as clients on the same host do. The HTTP clients are as
light as Python allows (http.client on a kept-alive connection, request bodies encoded beforehand, the
response read but not parsed), so that what is measured is the service, not the client library; the
Milvus clients are pymilvus's, as the service's own. Each level runs for a fixed time after a warm-up;
every request's latency is kept.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np

from _common import result, value

LEVELS = (1, 4, 16, 64)
PROCESSES = 4


def _worker(kind: str, target: str, extra: dict, queries: np.ndarray, threads: int, seconds: float, out) -> None:
    """One client process: `threads` loops sending queries for `seconds`; puts its latencies (ms)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        if kind == "http":
            import http.client
            from urllib.parse import urlparse

            import orjson

            url = urlparse(target)
            bodies = [orjson.dumps({"vector": q.tolist(), "top_k": 10, **extra}) for q in queries]
            headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
            conn = [http.client.HTTPConnection(url.hostname, url.port, timeout=60)]

            def call(q_index):
                try:
                    conn[0].request("POST", "/v1/search", body=bodies[q_index], headers=headers)
                    resp = conn[0].getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException):
                    conn[0].close()
                    conn[0] = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
                    raise
                if resp.status != 200:
                    raise RuntimeError(data[:200])
        else:
            from catalog import Catalog

            cat = Catalog(target, collection=extra["collection"], timeout=60)

            def call(q_index):
                cat.search(queries[q_index][None, :], top_k=10, with_meta=True,
                           consistency_level=extra.get("consistency"))
        i = k
        mine = []
        while time.monotonic() < stop:
            q_index = i % len(queries)
            i += threads * PROCESSES
            t = time.perf_counter()
            try:
                call(q_index)
            except Exception:  # noqa: BLE001 - counted, reported
                with lock:
                    errors[0] += 1
                continue
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def measure(kind: str, target: str, extra: dict, queries: np.ndarray, clients: int, seconds: float) -> dict:
    """QPS, p50, p99 and errors of `clients` concurrent clients for `seconds`."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = min(PROCESSES, clients)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_worker, args=(kind, target, extra, queries, n, seconds, out)) for n in per]
    start = time.monotonic()
    for w in workers:
        w.start()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    took = time.monotonic() - start
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    return {"qps": len(lat) / max(took, 1e-9), "p50": float(np.percentile(lat, 50)) if lat else float("nan"),
            "p99": float(np.percentile(lat, 99)) if lat else float("nan"), "errors": errors}


def bench_load(service_url: str, milvus_uri: str, collection: str, fingerprint: str, queries: np.ndarray,
               tag: str, seconds: float) -> None:
    """Every level against Milvus and through the service; RESULT lines and the 16-client goal."""
    got: dict[tuple[str, int], dict] = {}
    for clients in LEVELS:
        # The same consistency level as the service's searches (its SEARCH_CONSISTENCY default).
        for kind, target, extra in (("milvus", milvus_uri, {"collection": collection, "consistency": "Session"}),
                                    ("http", service_url, {"fingerprint": fingerprint})):
            measure(kind, target, extra, queries, clients, min(2.0, seconds))  # warm-up
            r = got[(kind, clients)] = measure(kind, target, extra, queries, clients, seconds)
            print(f"INFO load {tag} {kind:6s} {clients:2d} clients: {r['qps']:7.1f} QPS, p50 {r['p50']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms, errors {r['errors']}", flush=True)
            name = "service" if kind == "http" else "milvus"
            value(f"search_load_{name}_qps_{clients}_clients_{tag}", r["qps"], "qps")
            value(f"search_load_{name}_p50_{clients}_clients_{tag}", r["p50"], "ms")
            value(f"search_load_{name}_p99_{clients}_clients_{tag}", r["p99"], "ms")
    result(f"search_service_vs_milvus_qps_16_clients_{tag}", got[("http", 16)]["qps"], got[("milvus", 16)]["qps"],
           "qps")
