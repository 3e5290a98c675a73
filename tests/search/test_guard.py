"""guard.py: fingerprint checks, brief caching, fresh re-check before reporting a mismatch."""

from __future__ import annotations

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


def test_failures_are_not_cached():
    cat = catalogue()
    guard = ModelGuard(cat, extractor=None, ttl=3600, clock=Clock())
    cat.down = True  # Milvus unreachable: MilvusUnavailable, a CatalogError
    with pytest.raises(CatalogError):
        guard.check("fp-a")
    cat.down = False
    assert guard.check("fp-a").exists
