"""The Milvus catalogue, shared by the loader and the search service: the only package that talks to Milvus.

- `catalog.schema`: collection schema, index and search parameters (the one place they live).
- `catalog.store`: `Catalog`, a thin `MilvusClient` wrapper with the few calls we make.
- `catalog.errors`: what a Milvus call can end in (typed); `catalog.retry`: bounded retries of them.
- `catalog.filters`: search filters on metadata -> Milvus expressions (every value quoted).
- `catalog.import_jobs`: Milvus bulk-import jobs; `catalog.milvus23`: what only Milvus 2.3 needs.
"""

from catalog.errors import CatalogError, FingerprintMismatch
from catalog.schema import IndexSpec, DEFAULT_INDEX
from catalog.store import Catalog

__all__ = ["Catalog", "CatalogError", "FingerprintMismatch", "IndexSpec", "DEFAULT_INDEX"]
