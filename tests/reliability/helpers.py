"""Helpers for the reliability tests: raw multipart bodies, raw HTTP paths, RSS, error-shape checks and a
small load generator that records every response."""

from __future__ import annotations

import http.client
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

import psutil
import requests

from tests.reliability.corpus import Part

CLIENT_TIMEOUT = 60  # seconds; a response slower than this counts as a hang


def multipart(parts: list[Part], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body built byte for byte (file names and types exactly as given)."""
    boundary = boundary or "rel-" + uuid.uuid4().hex
    out = []
    for p in parts:
        disp = f'form-data; name="{p.name}"'
        if p.filename is not None:
            disp += f'; filename="{p.filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
        if p.content_type is not None:
            head += f"Content-Type: {p.content_type}\r\n"
        out.append(head.encode("utf-8", "surrogateescape") + b"\r\n" + p.data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def post_parts(url: str, parts: list[Part], timeout: float = CLIENT_TIMEOUT, **kwargs) -> requests.Response:
    body, ctype = multipart(parts)
    return requests.post(url, data=body, headers={"Content-Type": ctype}, timeout=timeout, **kwargs)


def raw_request(base_url: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """One request with `path` sent exactly as given (requests/urllib3 would normalise `..` segments)."""
    u = urlparse(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def tree_rss(pids: list[int]) -> int:
    """Resident memory of a process tree (bytes); processes that are gone count zero."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def assert_json_error(resp: requests.Response, statuses=range(400, 500), case: str = "") -> dict:
    """The response is an error in the one documented shape, with a status in `statuses`; returns it."""
    assert resp.status_code in statuses, f"{case}: {resp.status_code} {resp.text[:300]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), f"{case}: {resp.headers}"
    err = resp.json()["error"]
    assert isinstance(err["code"], str) and err["code"], case
    assert isinstance(err["message"], str) and len(err["message"]) > 10, case
    assert "Traceback" not in resp.text and 'File "' not in resp.text, case
    return err


@dataclass
class Outcome:
    """One response seen by the load generator (status 0: no response: connection error or timeout)."""

    started: float
    ended: float
    status: int
    kind: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    error: str = ""


class Load:
    """`clients` threads calling `request(i)` in a loop until stopped, recording every outcome."""

    def __init__(self, clients: int, request: Callable[[int, requests.Session], tuple[str, requests.Response]]):
        self.clients = clients
        self.request = request
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, worker: int) -> None:
        session = requests.Session()
        i = worker
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                kind, resp = self.request(i, session)
            except requests.RequestException as exc:
                out = Outcome(started, time.monotonic(), 0, "?", error=f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)  # a refused connection returns at once: do not spin
            else:
                try:
                    body = resp.json()
                except ValueError:
                    body = {"_text": resp.text[:300]}
                out = Outcome(started, time.monotonic(), resp.status_code, kind, body, dict(resp.headers))
                if resp.status_code >= 500:
                    time.sleep(0.05)  # an outage answers at once: do not starve the restarting server of CPU
            with self._lock:
                self.outcomes.append(out)
            i += self.clients
        session.close()

    def __enter__(self) -> "Load":
        for w in range(self.clients):
            t = threading.Thread(target=self._run, args=(w,), daemon=True, name=f"load-{w}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=CLIENT_TIMEOUT + 10)

    def __exit__(self, *exc) -> None:
        self.stop()

    def since(self, t: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.started >= t]

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> object:
    """Poll until `predicate()` is truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
