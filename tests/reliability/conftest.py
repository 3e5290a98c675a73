"""Fixtures for the reliability tests: the session services' catalogue, and private service processes
for the tests that kill or reconfigure a server (their own collection, IMAGE_ROOT and log)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

import pytest
import requests

from devstack.processes import ServiceProcess

TOKEN = "rel-s3cret-token"


def photo_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def add_photos(url: str, photos: list[Path], token: str | None = None) -> list[str]:
    """POST each photo to /v1/images under its file name; returns the names."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    names = []
    for path in photos:
        resp = requests.post(url + "/v1/images", files={"image": (path.name, path.read_bytes())},
                             data={"name": path.name}, headers=headers, timeout=120)
        assert resp.status_code in (200, 201), resp.text
        names.append(path.name)
    return names


@pytest.fixture(scope="session")
def session_catalogue(search_service, sample_photos) -> list[str]:
    """The sample photos in the session search service's collection (idempotent upserts by name)."""
    return add_photos(search_service.url, photo_files(sample_photos))


@pytest.fixture
def start_search(tmp_path, milvus_server, extractor_service) -> Callable[..., ServiceProcess]:
    """Start private search service processes (own collection and IMAGE_ROOT unless given); stopped and
    their collections dropped after the test."""
    started: list[ServiceProcess] = []

    def _start(**env: str) -> ServiceProcess:
        n = len(started)
        base = {
            "MILVUS_URI": milvus_server.uri,
            "EXTRACTOR_URL": extractor_service.url,
            "COLLECTION": "rel_" + uuid.uuid4().hex[:10],
            "IMAGE_ROOT": str(tmp_path / f"images{n}"),
        }
        svc = ServiceProcess("search_service", env={**base, **env}, log_path=tmp_path / f"search{n}.log",
                             ready_path="/healthz")
        started.append(svc)
        return svc.start(timeout=60)

    yield _start
    for svc in started:
        svc.stop()
        _drop(svc.env["MILVUS_URI"], svc.env["COLLECTION"])


def _drop(uri: str, collection: str) -> None:
    from catalog import Catalog, CatalogError

    cat = Catalog(uri, collection=collection, timeout=10)
    try:
        cat.drop()
    except CatalogError:
        pass  # that Milvus is gone already (a private one)
    finally:
        cat.close()
