"""Shared by the loader and the search service: the Milvus catalogue and the extractor client.

- `catalog.schema`: collection schema, index and search parameters (the one place they live).
- `catalog.store`: `Catalog`, a thin `MilvusClient` wrapper with the few calls we make.
- `catalog.extractor_client`: `ExtractorClient`, HTTP to one or more extractor replicas.
"""

from catalog.errors import CatalogError, FingerprintMismatch, ExtractorUnavailable, ExtractorRejected
from catalog.schema import IndexSpec, DEFAULT_INDEX
from catalog.store import Catalog
from catalog.extractor_client import ExtractorClient

__all__ = [
    "Catalog",
    "CatalogError",
    "FingerprintMismatch",
    "ExtractorClient",
    "ExtractorUnavailable",
    "ExtractorRejected",
    "IndexSpec",
    "DEFAULT_INDEX",
]
