"""The HTTP side of bench/extract.py: concurrent clients of the extractor, and where the service's time went.

`drive` runs `clients` threads, each posting one JPEG per request (as the search service does for an
upload; or `per_request` of them, as `loader extract` does: 8 per request, 4 in flight), until `total`
images are done. The answer is JSON (`{"results": [{"vector": [...]}]}`, what
`extractor_client` reads) or, with `binary=True`, the service's `Accept: application/octet-stream` form
(N x dim little-endian float32).

`ServiceWindow` reads the service's /metrics and CPU times before and after a measurement: images per model
call, model seconds per image, decode seconds per image, the service's and the clients' CPU seconds per
image. Those say where the time goes when the service is slower than a baseline.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

BINARY_TYPE = "application/octet-stream"


def drive(url: str, images: list[bytes], clients: int, total: int, binary: bool = False,
          per_request: int = 1) -> tuple[float, list[float], list]:
    """`clients` threads posting `per_request` images per request until `total` are done:
    (images/s, per-request latencies, vectors in image order)."""
    local = threading.local()
    latencies: list[float] = []
    vectors: list = [None] * total
    headers = {"Accept": BINARY_TYPE} if binary else {}

    def one(first: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        idx = range(first, min(first + per_request, total))
        files = [("image", (f"{i}.jpg", images[i % len(images)])) for i in idx]
        t0 = time.perf_counter()
        resp = session.post(url + "/v1/extract", files=files, headers=headers, timeout=300)
        resp.raise_for_status()
        if binary:
            rows = np.frombuffer(resp.content, dtype="<f4").reshape(int(resp.headers["X-Count"]), -1)
        else:
            rows = [np.asarray(r["vector"], dtype=np.float32) for r in resp.json()["results"]]
        for i, row in zip(idx, rows):
            vectors[i] = row
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(0, total, per_request)))
    return total / (time.perf_counter() - start), latencies, vectors


def _scrape(url: str) -> dict[str, float]:
    """The histogram sums and counts the breakdown needs, from the service's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("extractor_batch_size_sum", "extractor_batch_size_count"):
                out[s.name] = s.value
            elif s.name in ("extractor_stage_seconds_sum", "extractor_stage_seconds_count"):
                out[f"{s.name}_{s.labels.get('stage')}"] = s.value
    return out


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


class ServiceWindow:
    """Service metrics and CPU times over measurements: `with window: drive(...)`, as often as needed (the
    figures add up over every `with`); then `breakdown` and `line()`."""

    def __init__(self, url: str, pids: list[int]):
        self.url, self.pids = url, pids
        self._sums: dict[str, float] = {}

    def __enter__(self) -> "ServiceWindow":
        self._m0, self._cpu0 = _scrape(self.url), _cpu_seconds(self.pids)
        self._own0, self._t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        deltas = {"wall": time.perf_counter() - self._t0, "own_cpu": time.process_time() - self._own0,
                  "service_cpu": _cpu_seconds(self.pids) - self._cpu0}
        m1 = _scrape(self.url)
        deltas.update({k: m1[k] - self._m0.get(k, 0.0) for k in m1})
        for k, v in deltas.items():
            self._sums[k] = self._sums.get(k, 0.0) + v

    @property
    def breakdown(self) -> dict[str, float]:
        d = self._sums
        wall = d.get("wall", 0.0) or float("nan")
        images = d.get("extractor_batch_size_sum", 0.0) or float("nan")
        model = d.get("extractor_stage_seconds_sum_model", 0.0)
        return {
            "images": images,
            "mean_batch": images / (d.get("extractor_batch_size_count", 0.0) or float("nan")),
            "model_ms_per_image": 1000 * model / images,
            "model_busy_share": model / wall,
            "decode_ms_per_image": 1000 * d.get("extractor_stage_seconds_sum_decode", 0.0) / images,
            "service_cpu_ms_per_image": 1000 * d.get("service_cpu", 0.0) / images,
            "client_cpu_ms_per_image": 1000 * d.get("own_cpu", 0.0) / images,
            "cores_used": (d.get("service_cpu", 0.0) + d.get("own_cpu", 0.0)) / wall,
        }

    def line(self) -> str:
        b = self.breakdown
        # model time is summed over the calls, which overlap with EXTRACTOR_MODEL_STREAMS > 1: "busy" can
        # pass 100% (two calls in progress all the time: 200%)
        return (f"mean batch {b['mean_batch']:.1f}, model {b['model_ms_per_image']:.1f} ms/img (calls in progress "
                f"{100 * b['model_busy_share']:.0f}% of the time), decode {b['decode_ms_per_image']:.1f} "
                f"ms/img, CPU per image: service {b['service_cpu_ms_per_image']:.1f} ms, clients "
                f"{b['client_cpu_ms_per_image']:.1f} ms; {b['cores_used']:.2f} cores busy")
