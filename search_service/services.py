"""`Services`: the long-lived resources one app holds, created once by the factory."""

from __future__ import annotations

from dataclasses import dataclass

from search_service.coalescing import SearchCoalescer
from search_service.config import Config
from search_service.duplicates import DuplicateFinder
from search_service.files import ImageFiles
from search_service.guard import CollectionInfo, ModelGuard
from search_service.metrics import Metrics
from search_service.ports import CatalogPort, ExtractorPort
from search_service.shared_state import SharedDir


@dataclass
class Services:
    """Catalogue, extractor client(s), model guard, image files, metrics, duplicate jobs and the search
    coalescer of one app."""

    config: Config
    catalog: CatalogPort
    extractor: ExtractorPort
    probe: ExtractorPort  # the extractor client for health checks: short timeouts, no retries
    guard: ModelGuard
    files: ImageFiles
    metrics: Metrics
    shared: SharedDir  # what the service's worker processes share (locks, counters, job results)
    duplicates: DuplicateFinder
    searches: SearchCoalescer  # single-query searches, several to a Milvus call under load

    def ensure_collection(self, fingerprint: str, dim: int) -> CollectionInfo:
        """The collection, created for this model when missing; FingerprintMismatch when it is another's.

        Serialised across the service's threads and worker processes, so two first uploads do not both
        try to create it.
        """
        info = self.guard.check(fingerprint, dim)
        if info.exists:
            return info
        with self.shared.lock("create-collection"):
            if not self.guard.collection(refresh=True).exists:
                self.catalog.ensure(dim, fingerprint)
            self.guard.invalidate()
        return self.guard.check(fingerprint, dim)

    def close(self) -> None:
        """Release connections."""
        self.catalog.close()
        for client in {id(self.extractor): self.extractor, id(self.probe): self.probe}.values():
            client.close()
