"""guard.py: fingerprint checks, brief caching, fresh re-check before reporting a mismatch."""

from __future__ import annotations

import pytest

from catalog.errors import CatalogError, FingerprintMismatch
from search_service.guard import ModelGuard


class FakeCatalog:
    """Just what the guard reads from Catalog."""

    collection = "c"

    def __init__(self, fingerprint="fp-a", dim=12, exists=True):
        self.fp, self.d, self.present, self.reads, self.fail = fingerprint, dim, exists, 0, False
        self._props = None

    def exists(self):
        if self.fail:
            raise CatalogError("Milvus down")
        return self.present

    def properties(self, refresh=False):
        self.reads += 1
        return {"fingerprint": self.fp, "dim": str(self.d)}

    def dim(self):
        return self.d

    def index_spec(self):
        return None


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_match_passes_and_is_cached():
    cat, clock = FakeCatalog(), Clock()
    guard = ModelGuard(cat, extractor=None, ttl=5, clock=clock)
    assert guard.check("fp-a", 12).fingerprint == "fp-a"
    guard.check("fp-a", 12)
    assert cat.reads == 1
    clock.t = 6
    guard.check("fp-a")
    assert cat.reads == 2


def test_mismatch_names_both_fingerprints_after_a_fresh_read():
    cat = FakeCatalog()
    guard = ModelGuard(cat, extractor=None, ttl=60, clock=Clock())
    guard.check("fp-a")
    with pytest.raises(FingerprintMismatch) as err:
        guard.check("fp-b")
    assert err.value.expected == "fp-a" and err.value.got == "fp-b"
    assert "fp-a" in str(err.value) and "fp-b" in str(err.value)
    assert cat.reads == 2  # confirmed against a fresh read, not the cache


def test_recreated_collection_is_seen_without_waiting_for_the_cache():
    cat = FakeCatalog(fingerprint="old")
    guard = ModelGuard(cat, extractor=None, ttl=3600, clock=Clock())
    guard.check("old")
    cat.fp = "new"  # someone re-extracted the catalogue with the new model
    assert guard.check("new").fingerprint == "new"


def test_dimension_mismatch_is_a_mismatch():
    guard = ModelGuard(FakeCatalog(dim=12), extractor=None, ttl=5, clock=Clock())
    with pytest.raises(FingerprintMismatch, match="12-d"):
        guard.check("fp-a", 3)


def test_missing_collection_accepts_anything():
    guard = ModelGuard(FakeCatalog(exists=False), extractor=None, ttl=5, clock=Clock())
    assert guard.check("whatever", 3).exists is False


def test_failures_are_not_cached():
    cat = FakeCatalog()
    guard = ModelGuard(cat, extractor=None, ttl=3600, clock=Clock())
    cat.fail = True
    with pytest.raises(CatalogError):
        guard.check("fp-a")
    cat.fail = False
    assert guard.check("fp-a").exists
