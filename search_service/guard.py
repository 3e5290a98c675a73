"""The model guard: vectors from one model never meet a collection built by another.

The collection records the fingerprint of the model that filled it; the extractor reports the
fingerprint of the model it runs (with every extraction, and on /v1/info). Both are cached for a few
seconds, because they change only when someone re-creates the collection or swaps the extractor; a
failed lookup is not cached, and a mismatch is re-checked against fresh values before it is reported,
so the guard recovers as soon as the dependency or the configuration is fixed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from catalog import schema as S
from catalog.errors import FingerprintMismatch
from extractor_client import ExtractorUnavailable
from search_service.ports import CatalogPort, ExtractorPort

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionInfo:
    """What the guard knows about the collection."""

    exists: bool
    fingerprint: str | None = None
    dim: int | None = None
    index: S.IndexSpec | None = None
    scalar_fields: dict[str, str] = field(default_factory=dict)  # declared at creation: name -> type


@dataclass(frozen=True)
class ExtractorInfo:
    """The extractor's model identity."""

    fingerprint: str
    dim: int


class ModelGuard:
    """Cached fingerprints of the collection and the extractor, and the check between them."""

    def __init__(self, catalog: CatalogPort, extractor: ExtractorPort | None, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, max_stale: float = 60.0):
        self.catalog = catalog
        self.extractor = extractor
        self.ttl = ttl
        self.max_stale = max(ttl, max_stale)
        self.clock = clock
        self._refreshing: set[str] = set()  # "collection" / "extractor" while one thread re-reads it
        self._lock = threading.Lock()
        self._collection: tuple[float, CollectionInfo] | None = None
        self._extractor: tuple[float, ExtractorInfo] | None = None

    def _cached_or_claim(self, which: str) -> tuple[Any, tuple[float, Any] | None]:
        """(value, entry) of the cached `which` ("collection" or "extractor") when it may be used: younger
        than the TTL, or younger than max_stale while another thread re-reads it. Otherwise (None, entry),
        and this thread is the one that re-reads it (`_release` when done)."""
        with self._lock:
            entry = self._collection if which == "collection" else self._extractor
            if entry is not None:
                age = self.clock() - entry[0]
                if age < self.ttl or (which in self._refreshing and age < self.max_stale):
                    return entry[1], entry
            self._refreshing.add(which)
            return None, entry

    def _release(self, which: str) -> None:
        with self._lock:
            self._refreshing.discard(which)

    def invalidate(self) -> None:
        """Forget both cached values (after creating the collection, or before a re-check)."""
        with self._lock:
            self._collection = None
            self._extractor = None

    def collection(self, refresh: bool = False) -> CollectionInfo:
        """The collection's existence, fingerprint, dimension and index; raises CatalogError.

        Past its TTL a known value is re-read by one thread at a time while the others keep using it (for
        at most `max_stale` seconds): under load every request thread would otherwise make the same three
        Milvus calls at once. `refresh` always reads.
        """
        if not refresh:
            cached, _ = self._cached_or_claim("collection")
            if cached is not None:
                return cached
        try:
            info = self._read_collection()
        finally:
            if not refresh:
                self._release("collection")
        with self._lock:
            # "No collection" is not kept: another worker process or the loader may create it at any
            # moment, and a service without a catalogue has no load to save Milvus calls for.
            self._collection = (self.clock(), info) if info.exists else None
        return info

    def _read_collection(self) -> CollectionInfo:
        if not self.catalog.exists():
            info = CollectionInfo(exists=False)
        else:
            # A dropped and re-created collection has new properties: re-read them.
            props = self.catalog.properties(refresh=True)
            dim = props.get(S.PROP_DIM)
            info = CollectionInfo(
                exists=True,
                fingerprint=props.get(S.PROP_FINGERPRINT) or None,
                dim=int(dim) if dim else self.catalog.dim(),
                index=self.catalog.index_spec(),
                scalar_fields=json.loads(props.get(S.PROP_SCALAR_FIELDS) or "{}"),
            )
        return info

    def extractor_info(self, refresh: bool = False) -> ExtractorInfo:
        """The extractor's fingerprint and dimension from /v1/info; raises ExtractorUnavailable.

        Past its TTL a known value is refreshed by one thread at a time while the others keep using it,
        and it stays in use, for at most `max_stale` seconds, while refreshing fails: a vector search must
        not fail because a busy extractor was slow to say what it already said. `refresh` always asks.
        """
        if not refresh:
            cached, entry = self._cached_or_claim("extractor")
            if cached is not None:
                return cached
        try:
            body = self.extractor.info()
        except ExtractorUnavailable:
            if not refresh and entry is not None and self.clock() - entry[0] < self.max_stale:
                log.warning("extractor /v1/info failed; using its fingerprint from %.0f s ago",
                            self.clock() - entry[0])
                return entry[1]
            raise
        finally:
            if not refresh:
                self._release("extractor")
        info = ExtractorInfo(fingerprint=str(body["fingerprint"]), dim=int(body["dim"]))
        self.note_extractor(info.fingerprint, info.dim)
        return info

    def note_extractor(self, fingerprint: str, dim: int) -> None:
        """Record the extractor's identity as an extraction reported it (every answer carries it), so
        searches by vector under load need no /v1/info call of their own."""
        if not fingerprint or not dim:  # a batch whose every image failed says nothing of the model
            return
        with self._lock:
            self._extractor = (self.clock(), ExtractorInfo(fingerprint=str(fingerprint), dim=int(dim)))

    def check(self, fingerprint: str, dim: int | None = None) -> CollectionInfo:
        """Return the collection when vectors of `fingerprint` (and `dim`) may be searched in it.

        Raises FingerprintMismatch when the collection was built by another model; the mismatch is
        confirmed against a fresh read first, so a fixed configuration is seen at once.
        """
        info = self.collection()
        if info.exists and not _compatible(info, fingerprint, dim):
            info = self.collection(refresh=True)
            if info.exists and not _compatible(info, fingerprint, dim):
                expected = info.fingerprint or "?"
                got = fingerprint if info.fingerprint != fingerprint else f"{fingerprint} ({dim}-d)"
                if info.fingerprint == fingerprint:
                    expected = f"{expected} ({info.dim}-d)"
                raise FingerprintMismatch(self.catalog.collection, expected, got)
        return info


def _compatible(info: CollectionInfo, fingerprint: str, dim: int | None) -> bool:
    if info.fingerprint and fingerprint and info.fingerprint != fingerprint:
        return False
    return dim is None or info.dim is None or info.dim == dim
