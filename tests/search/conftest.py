"""Fixtures for the search service tests: in-memory fakes of the catalogue and the extractor (fakes.py), apps
around either the fake or the real Milvus, a TCP fault-injecting proxy, and extra service processes.

An app's catalogue is chosen by the `backend` fixture: "fake" (the default: unit tests, no servers) or
"milvus" (the session's real Milvus, fresh collection). A test that must hold on both is decorated with
`BOTH_CATALOGUES`; its "milvus" run is marked `integration`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from catalog import Catalog, CatalogError
from search_service import Config, create_app
from tests.conftest import jpeg_bytes
from tests.search.fakes import FAKE_DIM, FAKE_FP, FakeCatalog, FakeExtractor

__all__ = ["BOTH_CATALOGUES", "FAKE_DIM", "FAKE_FP", "FakeCatalog", "FakeExtractor", "colour_jpeg", "photo_files",
           "wait_until"]

# Run a test on the in-memory catalogue (unit) and on the real Milvus (integration).
BOTH_CATALOGUES = pytest.mark.parametrize("backend", ["fake", pytest.param("milvus", marks=pytest.mark.integration)])

REAL_MILVUS_TIMEOUT = 5.0  # seconds; bounds how long a call waits for a Milvus the proxy has cut


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.2) -> object:
    """Poll `predicate()` until it is truthy or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def colour_jpeg(rgb: tuple[int, int, int], size: int = 16, seed: int = 0) -> bytes:
    """A small JPEG: a colour with a light pattern, so different colours give different vectors."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = rgb
    img[: size // 2, : size // 2] = np.clip(np.array(rgb) + rng.integers(0, 60, 3), 0, 255)
    return jpeg_bytes(img)


@pytest.fixture
def fake_extractor() -> FakeExtractor:
    return FakeExtractor()


@pytest.fixture
def backend() -> str:
    """Which catalogue apps get: "fake" here; `BOTH_CATALOGUES` parametrizes it with "milvus" too."""
    return "fake"


@pytest.fixture
def milvus_route(backend, request):
    """For the "milvus" backend, a TcpProxy in front of the session's Milvus (to cut it); else None."""
    if backend == "fake":
        return None
    milvus = request.getfixturevalue("milvus_server")
    return request.getfixturevalue("tcp_proxy")(milvus.uri)


@pytest.fixture
def catalogue(backend, milvus_route, collection_name, request):
    """The test's catalogue: a FakeCatalog, or a real Catalog on a fresh collection of the session's Milvus
    (reached through `milvus_route`, dropped afterwards)."""
    if backend == "fake":
        yield FakeCatalog(collection_name)
        return
    assert backend == "milvus", backend
    cat = Catalog(milvus_route.url, collection=collection_name, timeout=REAL_MILVUS_TIMEOUT)
    yield cat
    cat.close()
    direct = Catalog(request.getfixturevalue("milvus_server").uri, collection=collection_name)
    try:
        direct.drop()  # not through the proxy: a test may have left it down
    finally:
        direct.close()


class CatalogueSwitch:
    """Takes the test's catalogue away and brings it back: the fake's `down` flag, or the proxy to Milvus."""

    def __init__(self, catalog, proxy=None):
        self.catalog = catalog
        self.proxy = proxy

    def down(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
        else:
            self.catalog.down = True

    def up(self) -> None:
        if self.proxy is not None:
            self.proxy.up()
        else:
            self.catalog.down = False


@pytest.fixture
def catalogue_switch(catalogue, milvus_route) -> CatalogueSwitch:
    return CatalogueSwitch(catalogue, milvus_route)


@pytest.fixture
def make_app(catalogue, tmp_path):
    """Build an app around the test's catalogue (see `backend`) with a given extractor and config values."""
    apps = []

    def _make(extractor, **config):
        cfg = Config(milvus_uri=getattr(catalogue, "uri", "memory://fake-milvus"), collection=catalogue.collection,
                     image_root=str(tmp_path / "images"), guard_ttl=0.0, **config)
        app = create_app(cfg, catalog=catalogue, extractor=extractor)
        app.testing = True
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["search_service"].close()


class TcpProxy:
    """A loopback TCP proxy in front of a real server, to inject faults: `down` (refuse), `stall`
    (accept, never answer), `up`. Used to take Milvus or the extractor away and bring it back."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode = "up"
        self._listener: socket.socket | None = None
        self.port = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
            if self.mode == "stall":
                continue  # hold the connection open and silent
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def down(self) -> None:
        """Refuse connections and cut the open ones (like a dead server)."""
        self.mode = "down"
        if self._listener:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        self._drop_connections()

    def stall(self) -> None:
        """Accept connections but never answer (like a hung server)."""
        self._drop_connections()
        self.mode = "stall"
        if self._listener is None:
            self.listen()

    def up(self) -> None:
        """Forward again on the same port."""
        self._drop_connections()
        self.mode = "up"
        if self._listener is None:
            self.listen()

    def close(self) -> None:
        self.down()


@pytest.fixture
def tcp_proxy():
    """Factory for TcpProxy instances, all closed after the test."""
    made: list[TcpProxy] = []

    def _make(url: str) -> TcpProxy:
        from urllib.parse import urlparse

        u = urlparse(url)
        proxy = TcpProxy(u.hostname, u.port)
        made.append(proxy)
        return proxy

    yield _make
    for p in made:
        p.close()


def photo_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


@pytest.fixture(scope="session")
def photo_catalogue(search_service, sample_photos) -> list[str]:
    """The sample photos added to the session's search service through POST /v1/images; their names."""
    import requests

    names = []
    for path in photo_files(sample_photos):
        with open(path, "rb") as fh:
            resp = requests.post(search_service.url + "/v1/images", files={"image": (path.name, fh)},
                                 data={"name": path.name, "meta": '{"source": "scikit-image"}'}, timeout=120)
        assert resp.status_code in (200, 201), resp.text
        names.append(path.name)
    return names


@pytest.fixture
def start_search_service(tmp_path, milvus_server, extractor_service):
    """Start extra search service processes (own collection, own IMAGE_ROOT); stopped and their collections
    dropped after the test."""
    import uuid

    from devstack.processes import ServiceProcess

    started: list[ServiceProcess] = []

    def _start(**env: str) -> ServiceProcess:
        base = {
            "MILVUS_URI": milvus_server.uri,
            "EXTRACTOR_URL": extractor_service.url,
            "COLLECTION": "s_" + uuid.uuid4().hex[:10],
            "IMAGE_ROOT": str(tmp_path / f"images{len(started)}"),
        }
        svc = ServiceProcess("search_service", env={**base, **env},
                             log_path=tmp_path / f"search{len(started)}.log", ready_path="/healthz")
        started.append(svc)
        return svc.start(timeout=60)

    yield _start
    for svc in started:
        svc.stop()
        leftover = Catalog(milvus_server.uri, collection=svc.env["COLLECTION"])
        try:
            leftover.drop()
        except CatalogError:
            pass  # a teardown must not hide the test's own result
        finally:
            leftover.close()
