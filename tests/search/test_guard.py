"""guard.py: fingerprint checks, brief caching, fresh re-check before reporting a mismatch."""

from __future__ import annotations

import threading
import time

import pytest

from catalog.errors import CatalogError, FingerprintMismatch
from search_service.guard import ModelGuard
from tests.search.conftest import FakeCatalog


def catalogue(fingerprint: str = "fp-a", dim: int = 12, exists: bool = True) -> FakeCatalog:
    """An in-memory catalogue whose collection was built by `fingerprint` (or is missing)."""
    cat = FakeCatalog("c")
    if exists:
        cat.ensure(dim, fingerprint)
    return cat


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_match_passes_and_is_cached():
    cat, clock = catalogue(), Clock()
    guard = ModelGuard(cat, extractor=None, ttl=5, clock=clock)
    assert guard.check("fp-a", 12).fingerprint == "fp-a"
    guard.check("fp-a", 12)
    assert cat.calls["properties"] == 1
    clock.t = 6
    guard.check("fp-a")
    assert cat.calls["properties"] == 2


def test_mismatch_names_both_fingerprints_after_a_fresh_read():
    cat = catalogue()
    guard = ModelGuard(cat, extractor=None, ttl=60, clock=Clock())
    guard.check("fp-a")
    with pytest.raises(FingerprintMismatch) as err:
        guard.check("fp-b")
    assert err.value.expected == "fp-a" and err.value.got == "fp-b"
    assert "fp-a" in str(err.value) and "fp-b" in str(err.value)
    assert cat.calls["properties"] == 2  # confirmed against a fresh read, not the cache


def test_recreated_collection_is_seen_without_waiting_for_the_cache():
    cat = catalogue(fingerprint="old")
    guard = ModelGuard(cat, extractor=None, ttl=3600, clock=Clock())
    guard.check("old")
    cat.drop()  # someone re-extracted the catalogue with the new model
    cat.ensure(12, "new")
    assert guard.check("new").fingerprint == "new"


def test_dimension_mismatch_is_a_mismatch():
    guard = ModelGuard(catalogue(dim=12), extractor=None, ttl=5, clock=Clock())
    with pytest.raises(FingerprintMismatch, match="12-d"):
        guard.check("fp-a", 3)


def test_missing_collection_accepts_anything():
    guard = ModelGuard(catalogue(exists=False), extractor=None, ttl=5, clock=Clock())
    assert guard.check("whatever", 3).exists is False


def test_a_missing_collection_is_not_cached():
    # Another worker process (or the loader) may create it any moment: the next check must see it.
    cat = catalogue(exists=False)
    guard = ModelGuard(cat, extractor=None, ttl=3600, clock=Clock())
    assert guard.check("fp-a", 12).exists is False
    cat.ensure(12, "fp-a")
    assert guard.check("fp-a", 12).exists


def test_failures_are_not_cached():
    cat = catalogue()
    guard = ModelGuard(cat, extractor=None, ttl=3600, clock=Clock())
    cat.down = True  # Milvus unreachable: MilvusUnavailable, a CatalogError
    with pytest.raises(CatalogError):
        guard.check("fp-a")
    cat.down = False
    assert guard.check("fp-a").exists


class InfoExtractor:
    """An extractor whose /v1/info is counted and can fail or block."""

    def __init__(self, fingerprint: str = "fp-a"):
        self.fingerprint = fingerprint
        self.calls = 0
        self.down = False
        self.gate = None  # a threading.Event the call waits for, when set

    def info(self) -> dict:
        from extractor_client import ExtractorUnavailable

        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.down:
            raise ExtractorUnavailable("extractor unavailable at fake: read timed out")
        return {"fingerprint": self.fingerprint, "dim": 12}


def test_extractions_keep_the_extractor_fingerprint_fresh_without_asking():
    clock, ex = Clock(), InfoExtractor()
    guard = ModelGuard(catalogue(), ex, ttl=5, clock=clock)
    guard.note_extractor("fp-a", 12)
    clock.t = 4
    guard.note_extractor("fp-a", 12)  # every extraction's answer names the model
    clock.t = 8
    assert guard.extractor_info().fingerprint == "fp-a" and ex.calls == 0
    guard.note_extractor("", 0)  # a batch of failed images says nothing: the known value stays
    assert guard.extractor_info().fingerprint == "fp-a" and ex.calls == 0


def test_a_busy_extractor_does_not_fail_vector_searches_while_its_fingerprint_is_recent():
    from extractor_client import ExtractorUnavailable

    clock, ex = Clock(), InfoExtractor()
    guard = ModelGuard(catalogue(), ex, ttl=5, clock=clock, max_stale=60)
    assert guard.extractor_info().fingerprint == "fp-a" and ex.calls == 1
    ex.down = True
    clock.t = 30  # past the TTL: asks again, the ask fails, the recent value is used
    assert guard.extractor_info().fingerprint == "fp-a" and ex.calls == 2
    with pytest.raises(ExtractorUnavailable):
        guard.extractor_info(refresh=True)  # readiness checks always ask
    clock.t = 61  # too old to trust: the failure is the answer
    with pytest.raises(ExtractorUnavailable):
        guard.extractor_info()
    ex.down = False
    assert guard.extractor_info().fingerprint == "fp-a"


def test_one_thread_refreshes_an_expired_fingerprint_while_the_others_use_it():
    clock, ex = Clock(), InfoExtractor()
    guard = ModelGuard(catalogue(), ex, ttl=5, clock=clock)
    guard.extractor_info()
    clock.t = 10
    ex.gate = threading.Event()
    ex.fingerprint = "fp-b"
    refresher = threading.Thread(target=guard.extractor_info)
    refresher.start()
    deadline = time.monotonic() + 10
    while ex.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # While the refresh waits on a slow extractor, other requests are answered from the known value.
    assert [guard.extractor_info().fingerprint for _ in range(5)] == ["fp-a"] * 5 and ex.calls == 2
    ex.gate.set()
    refresher.join(10)
    assert guard.extractor_info().fingerprint == "fp-b" and ex.calls == 2


class SlowPropertiesCatalog(FakeCatalog):
    """A catalogue whose properties read waits on `gate` once it is set (a slow Milvus)."""

    gate: threading.Event | None = None
    waiting = threading.Event()

    def properties(self, refresh: bool = False) -> dict[str, str]:
        if self.gate is not None:
            self.waiting.set()
            self.gate.wait(10)
        return super().properties(refresh)


def test_one_thread_rereads_an_expired_collection_while_the_others_use_it():
    clock, cat = Clock(), SlowPropertiesCatalog("c")
    cat.ensure(12, "fp-a")
    guard = ModelGuard(cat, extractor=None, ttl=5, clock=clock)
    guard.check("fp-a", 12)
    assert cat.calls["properties"] == 1
    clock.t = 10
    cat.gate = threading.Event()
    refresher = threading.Thread(target=guard.collection)
    refresher.start()
    assert cat.waiting.wait(10)
    # While one request re-reads the collection from a slow Milvus, the others use the known value.
    assert [guard.check("fp-a", 12).fingerprint for _ in range(5)] == ["fp-a"] * 5
    assert cat.calls["properties"] == 1
    cat.gate.set()
    refresher.join(10)
    clock.t = 12
    guard.check("fp-a", 12)
    assert cat.calls["properties"] == 2  # the re-read value is fresh again
    clock.t = 100  # past max_stale too: read again
    guard.check("fp-a", 12)
    assert cat.calls["properties"] == 3
