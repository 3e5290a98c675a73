"""ports.py: the real clients and the fakes all fit the Protocols the app is typed against.

No type checker runs in this project, so this checks the same by inspection: every member a Protocol
lists exists on each implementation and takes the Protocol's parameters under the same names, in the same
order, with nothing more required.
"""

from __future__ import annotations

import inspect

import pytest

from catalog import Catalog
from extractor_client import ExtractorClient
from search_service.ports import CatalogPort, ExtractorPort
from tests.search.conftest import FakeCatalog, FakeExtractor


def _members(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


def _misfits(protocol: type, impl: type) -> list[str]:
    problems = []
    for name in _members(protocol):
        if not callable(getattr(impl, name, None)):
            problems.append(f"{impl.__name__} has no {name}()")
            continue
        want = list(inspect.signature(getattr(protocol, name)).parameters.values())[1:]
        have = list(inspect.signature(getattr(impl, name)).parameters.values())[1:]
        if [p.name for p in have[: len(want)]] != [p.name for p in want]:
            problems.append(f"{impl.__name__}.{name}{inspect.signature(getattr(impl, name))} does not take "
                            f"{protocol.__name__}'s parameters {[p.name for p in want]}")
        for p in have[len(want):]:
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                problems.append(f"{impl.__name__}.{name} requires {p.name!r}, which the app never passes")
        for w, h in zip(want, have):
            if w.default is not inspect.Parameter.empty and h.default is inspect.Parameter.empty:
                problems.append(f"{impl.__name__}.{name} requires {h.name!r}, which is optional in the Protocol")
    return problems


@pytest.mark.parametrize("protocol, impl", [(CatalogPort, Catalog), (CatalogPort, FakeCatalog),
                                            (ExtractorPort, ExtractorClient), (ExtractorPort, FakeExtractor)])
def test_implementations_fit_the_protocols(protocol, impl):
    assert _misfits(protocol, impl) == []


class OnlyThePort:
    """Wraps an implementation and lets through only what `protocol` lists, recording what was used."""

    def __init__(self, protocol: type, impl: object):
        self._allowed = set(_members(protocol)) | set(getattr(protocol, "__annotations__", {}))
        self._impl = impl
        self.used: set[str] = set()

    def __getattr__(self, name: str):
        if name not in self._allowed:
            raise AssertionError(f"the app used {name}, which the Protocol does not list")
        self.used.add(name)
        return getattr(self._impl, name)


def test_the_app_needs_nothing_beyond_the_protocols(tmp_path):
    import io

    from search_service import Config, create_app
    from tests.search.conftest import colour_jpeg, wait_until

    catalog, extractor = OnlyThePort(CatalogPort, FakeCatalog("c")), OnlyThePort(ExtractorPort, FakeExtractor())
    app = create_app(Config(collection="c", image_root=str(tmp_path), guard_ttl=0.0), catalog=catalog,
                     extractor=extractor)
    client = app.test_client()
    upload = {"image": (io.BytesIO(colour_jpeg((200, 10, 10))), "r.jpg"), "meta": '{"k": 1}'}
    assert client.post("/v1/images", data=upload, content_type="multipart/form-data").status_code == 201
    assert client.post("/v1/search", data={"image": (io.BytesIO(colour_jpeg((200, 10, 10))), "q.jpg")},
                       content_type="multipart/form-data").status_code == 200
    assert client.post("/v1/search", json={"name": "r.jpg"}).status_code == 200
    assert client.post("/v1/search", json={"vector": [0.5] * 12}).status_code == 200
    two = [("image", (io.BytesIO(colour_jpeg(c)), f"{i}.jpg")) for i, c in enumerate([(200, 10, 10), (10, 200, 10)])]
    assert client.post("/v1/search", data={"image": [p[1] for p in two]},
                       content_type="multipart/form-data").status_code == 200
    wait_until(lambda: client.get("/v1/duplicates?threshold=0.9").status_code == 200, timeout=10)
    for path in ("/v1/images/r.jpg", "/v1/images/r.jpg/file", "/v1/stats", "/readyz", "/healthz"):
        assert client.get(path).status_code == 200, path
    assert client.delete("/v1/images/r.jpg").status_code == 200
    app.extensions["search_service"].close()
    # Everything listed is used somewhere, so the Protocols stay minimal; dim() only for collections
    # whose properties lack the dimension (made before it was recorded).
    assert catalog._allowed - catalog.used == {"dim"} and extractor.used == extractor._allowed


def test_instances_are_recognised_at_run_time():
    assert isinstance(Catalog("http://127.0.0.1:1", collection="c"), CatalogPort)  # connects on first use only
    assert isinstance(FakeCatalog(), CatalogPort) and isinstance(FakeExtractor(), ExtractorPort)
    client = ExtractorClient("http://127.0.0.1:1")
    try:
        assert isinstance(client, ExtractorPort)
    finally:
        client.close()
