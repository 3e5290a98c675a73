"""Shared fixtures: real Milvus, extractor and search service processes on free loopback ports.

Session-scoped servers are started once and shared; tests that kill a server start their own.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from devstack.milvus_server import MilvusServer
from devstack.processes import ServiceProcess, free_port

SAMPLE_SIZE = 96  # small images keep tests fast; the behaviour is the same at any size


def require_tool(name: str, install: str) -> str:
    """The path of an external tool the test needs. Missing: a skip with the reason, except under
    `make test` (REQUIRE_TOOLS=1, which installs the tools first), where it is a failure: CI runs it all."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is missing: {install} (`make test` installs it)"
    if os.environ.get("REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


# A restart after SIGKILL waits out the dead process's etcd sessions (about two TTLs). Servers that tests
# kill take a shorter TTL than make run's 15 s (devstack/milvus_server.py): the same recovery, sooner.
KILLED_SESSION_TTL_S = 10


def killable_milvus(data_dir: Path, **kwargs) -> MilvusServer:
    """A Milvus server of a test's own (not started), for tests that SIGKILL it and start it again."""
    return MilvusServer(data_dir, port=free_port(), extra_config={"common.session.ttl": KILLED_SESSION_TTL_S},
                        **kwargs)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus standalone server on a free port, for the whole session."""
    server = MilvusServer(tmp_path_factory.mktemp("milvus"), port=free_port()).start()
    yield server
    server.stop(grace=0)  # its data goes with the session's temporary directory


@pytest.fixture
def collection_name() -> str:
    """A fresh collection name per test."""
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def catalog(milvus_server, collection_name):
    """A Catalog on a fresh collection of the session's Milvus; dropped afterwards."""
    from catalog import Catalog

    cat = Catalog(milvus_server.uri, collection=collection_name)
    yield cat
    try:
        cat.drop()
    finally:
        cat.close()


@pytest.fixture(scope="session")
def extractor_service(tmp_path_factory):
    """The real extractor service (offline hed-vgg16 weights) as a process, for the whole session."""
    logs = tmp_path_factory.mktemp("extractor")
    svc = ServiceProcess(
        "extractor_service",
        env={"EXTRACTOR_WEIGHTS": "hed-vgg16", "TF_CPP_MIN_LOG_LEVEL": "2"},
        log_path=logs / "extractor.log",
    ).start(timeout=300)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    """IMAGE_ROOT for the session's search service."""
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def search_collection() -> str:
    return "search_" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def search_service(milvus_server, extractor_service, image_root, search_collection, tmp_path_factory):
    """The real search service, wired to the session's Milvus and extractor."""
    logs = tmp_path_factory.mktemp("search")
    svc = ServiceProcess(
        "search_service",
        env={
            "MILVUS_URI": milvus_server.uri,
            "EXTRACTOR_URL": extractor_service.url,
            "COLLECTION": search_collection,
            "IMAGE_ROOT": str(image_root),
        },
        log_path=logs / "search.log",
        ready_path="/healthz",
    ).start(timeout=120)
    yield svc
    svc.stop()


def _skimage_photos() -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
             "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "coins.png", "horse.png",
             "moon.png", "brick.png", "grass.png", "gravel.png", "cell.png"]
    return [data / n for n in names if (data / n).exists()]


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory) -> Path:
    """A folder of small JPEG versions of the real photographs in scikit-image's wheel."""
    from PIL import Image

    out = tmp_path_factory.mktemp("photos")
    for src in _skimage_photos():
        img = Image.open(src).convert("RGB")
        img.thumbnail((SAMPLE_SIZE * 2, SAMPLE_SIZE * 2))
        img.save(out / (src.stem + ".jpg"), quality=90)
    return out


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an HxWx3 uint8 array as JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
