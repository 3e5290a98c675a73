"""`ExtractorClient`: HTTP to one or more extractor replicas, with pooling, timeouts and bounded retries.

Used by the search service (one image per request) and the loader (many in flight). Several replicas are
given as a comma-separated EXTRACTOR_URL; requests rotate over them and a failed replica is retried on the
next one, so a replica that dies costs a retry, not an error.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import requests
from requests.adapters import HTTPAdapter

from extractor_client.errors import ExtractorRejected, ExtractorUnavailable


@dataclass
class Extraction:
    """One image's outcome: a vector, or an error (code, message) from the extractor."""

    vector: np.ndarray | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_status: int = 422

    @property
    def ok(self) -> bool:
        return self.vector is not None


@dataclass
class ExtractBatch:
    """The extractor's answer to one request: its fingerprint and one Extraction per image."""

    fingerprint: str
    dim: int
    items: list[Extraction]


class ExtractorClient:
    """Client for the extractor service's /v1/extract and /v1/info."""

    def __init__(
        self,
        urls: str | Sequence[str],
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
        retries: int = 2,
        pool_size: int = 16,
    ):
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise ValueError("no extractor URL given: set EXTRACTOR_URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self._rotation = itertools.cycle(range(len(self.urls)))
        self._rotation_lock = threading.Lock()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=len(self.urls), pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _next_urls(self) -> list[str]:
        with self._rotation_lock:
            start = next(self._rotation)
        order = self.urls[start:] + self.urls[:start]
        # Bounded: each replica once, then the first again up to `retries` extra attempts in total.
        return (order * (1 + self.retries))[: max(len(order), 1 + self.retries)]

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        last: Exception | None = None
        for base in self._next_urls():
            try:
                resp = self.session.request(method, base + path, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                last = exc
                continue
            if resp.status_code == 503:
                last = ExtractorUnavailable(f"extractor at {base} is not ready: {_message(resp)}")
                continue
            return resp
        raise ExtractorUnavailable(
            f"extractor unavailable at {', '.join(self.urls)}: {last}. Start it or set EXTRACTOR_URL."
        )

    def info(self) -> dict:
        """GET /v1/info of one replica."""
        resp = self._request("GET", "/v1/info")
        _raise_for_status(resp)
        return resp.json()

    def ready(self) -> bool:
        """Whether a replica answers /readyz with 200."""
        try:
            return self._request("GET", "/readyz").status_code == 200
        except ExtractorUnavailable:
            return False

    def extract(self, images: Sequence[tuple[str, bytes]]) -> ExtractBatch:
        """POST images (filename, bytes) in one request; per-image results in order.

        Raises ExtractorRejected when the whole request is refused (4xx), ExtractorUnavailable when no
        replica answers.
        """
        files = [("image", (name, data, "application/octet-stream")) for name, data in images]
        resp = self._request("POST", "/v1/extract", files=files)
        _raise_for_status(resp)
        body = resp.json()
        items: list[Extraction] = []
        for r in body["results"]:
            if "vector" in r:
                items.append(Extraction(vector=np.asarray(r["vector"], dtype=np.float32)))
            else:
                err = r.get("error") or {}
                items.append(
                    Extraction(
                        error_code=err.get("code"),
                        error_message=err.get("message"),
                        error_status=int(err.get("status", 422)),
                    )
                )
        if len(items) != len(images):
            raise ExtractorUnavailable(f"extractor returned {len(items)} results for {len(images)} images")
        return ExtractBatch(fingerprint=body["fingerprint"], dim=int(body["dim"]), items=items)

    def extract_one(self, name: str, data: bytes) -> tuple[np.ndarray, str]:
        """Extract one image; returns (vector, fingerprint) or raises ExtractorRejected with its message."""
        batch = self.extract([(name, data)])
        item = batch.items[0]
        if not item.ok:
            raise ExtractorRejected(item.error_status, item.error_code or "bad_image", item.error_message or "bad image")
        return item.vector, batch.fingerprint

    def close(self) -> None:
        self.session.close()


def _message(resp: requests.Response) -> str:
    try:
        err = resp.json().get("error") or {}
        return str(err.get("message") or resp.text[:200])
    except ValueError:
        return resp.text[:200]


def _raise_for_status(resp: requests.Response) -> None:
    if resp.status_code < 400:
        return
    if resp.status_code >= 500:
        raise ExtractorUnavailable(f"extractor error {resp.status_code}: {_message(resp)}")
    try:
        err = resp.json().get("error") or {}
    except ValueError:
        err = {}
    raise ExtractorRejected(resp.status_code, str(err.get("code", "bad_request")), _message(resp))
