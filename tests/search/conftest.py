"""Fixtures for the search service tests: a small fake extractor (unit tests only), apps around the real
Milvus, a TCP fault-injecting proxy, and extra service processes."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from extractor_client import ExtractorRejected, ExtractorUnavailable
from search_service import Config, create_app
from tests.conftest import jpeg_bytes

FAKE_FP = "fake-model-v1"
FAKE_DIM = 12


class FakeExtractor:
    """Stands in for ExtractorClient in unit tests: a 12-d vector from a 2x2 thumbnail of the picture.

    The same picture always gives the same vector (score 1.0 against itself); undecodable bytes are
    refused with 422 like the real extractor; `down = True` makes it unavailable.
    """

    def __init__(self, fingerprint: str = FAKE_FP):
        self.fingerprint = fingerprint
        self.down = False
        self.calls = 0

    def info(self) -> dict:
        if self.down:
            raise ExtractorUnavailable("extractor unavailable at fake: connection refused")
        return {"fingerprint": self.fingerprint, "dim": FAKE_DIM}

    def ready(self) -> bool:
        return not self.down

    def extract_one(self, name: str, data: bytes):
        from PIL import Image, UnidentifiedImageError

        self.calls += 1
        if self.down:
            raise ExtractorUnavailable("extractor unavailable at fake: connection refused")
        try:
            img = Image.open(io.BytesIO(data)).convert("RGB").resize((2, 2))
        except (UnidentifiedImageError, OSError):
            raise ExtractorRejected(422, "undecodable_image", f"{name}: cannot decode the image") from None
        v = np.asarray(img, dtype=np.float32).reshape(-1) + 1.0
        return v / np.linalg.norm(v), self.fingerprint

    def close(self) -> None:
        pass


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
def make_app(milvus_server, collection_name, tmp_path):
    """Build an app on the real Milvus (fresh collection) with a given extractor; drops the collection."""
    apps = []

    def _make(extractor, **config):
        cfg = Config(milvus_uri=milvus_server.uri, collection=collection_name,
                     image_root=str(tmp_path / "images"), guard_ttl=0.0, **config)
        app = create_app(cfg, extractor=extractor)
        app.testing = True
        apps.append(app)
        return app

    yield _make
    for app in apps:
        svc = app.extensions["search_service"]
        try:
            svc.catalog.drop()
        finally:
            svc.close()


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
    """Start extra search service processes (own collection, own IMAGE_ROOT); stopped after the test."""
    import uuid

    from tests.procs import ServiceProcess

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
