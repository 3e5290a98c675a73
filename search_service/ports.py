"""What the app needs from its two dependencies, as Protocols: the catalogue and the extractor.

`create_app` and `Services` are typed against these, not against `catalog.Catalog` and
`extractor_client.ExtractorClient`, so an app can be built around in-memory fakes (tests/search/fakes.py)
as well as the real clients. Only the calls the app makes are listed; the real classes have more.
Errors are part of the contract: the catalogue raises `catalog.errors.CatalogError` subclasses
(`MilvusUnavailable` when Milvus is away, `FingerprintMismatch`/`DimensionMismatch` from `ensure`), the
extractor `extractor_client.ExtractorUnavailable` and `ExtractorRejected`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from catalog.schema import IndexSpec


@runtime_checkable
class CatalogPort(Protocol):
    """One collection of image vectors keyed by name (`catalog.Catalog`)."""

    collection: str

    def exists(self) -> bool:
        """Whether the collection exists."""
        ...

    def properties(self, refresh: bool = False) -> dict[str, str]:
        """The collection's properties: `fingerprint`, `dim` and `schema_version` (catalog.schema.PROP_*)."""
        ...

    def dim(self) -> int | None:
        """The collection's vector dimension."""
        ...

    def index_spec(self) -> IndexSpec | None:
        """The vector index, or None when there is none."""
        ...

    def ensure(self, dim: int, fingerprint: str) -> bool:
        """Create the collection when missing (True), else check it fits; raises Fingerprint/DimensionMismatch."""
        ...

    def is_loaded(self) -> bool:
        """Whether the collection is loaded and can be searched."""
        ...

    def upsert(self, names: Sequence[str], vectors: np.ndarray, metas: Sequence[dict] | None = None) -> int:
        """Insert or replace rows by name; returns the number written."""
        ...

    def delete(self, names: Sequence[str]) -> None:
        """Delete rows by name."""
        ...

    def get(self, names: Sequence[str], with_vectors: bool = False) -> list[dict]:
        """Rows `{"name", "meta"[, "vector"]}` for those of `names` that exist."""
        ...

    def existing(self, names: Sequence[str]) -> set[str]:
        """The subset of `names` already stored."""
        ...

    def count(self) -> int:
        """The number of rows."""
        ...

    def search(self, vectors: np.ndarray, top_k: int = 10, index: IndexSpec | None = None,
               params: dict[str, Any] | None = None, with_meta: bool = True,
               consistency_level: str | None = None, filter: str = "", offset: int = 0,
               min_score: float | None = None) -> list[list[dict]]:
        """Per query vector, up to `top_k` hits `{"name", "score" (cosine), "meta"}`, best first: those
        matching `filter` (catalog.filters), after `offset`, scoring at least `min_score`."""
        ...

    def iter_rows(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[dict]]:
        """Every row `{"name"[, "vector"]}`, in batches (near-duplicate groups)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@runtime_checkable
class ExtractorPort(Protocol):
    """The feature extractor service (`extractor_client.ExtractorClient`)."""

    def info(self) -> dict[str, Any]:
        """The model's identity: at least `fingerprint` and `dim`."""
        ...

    def ready(self) -> bool:
        """Whether the extractor can extract now (never raises)."""
        ...

    def extract_one(self, name: str, data: bytes) -> tuple[np.ndarray, str]:
        """One image's vector and the fingerprint of the model that made it."""
        ...

    def extract(self, images: Sequence[tuple[str, bytes]]) -> Any:
        """Several images in one request: an `extractor_client.ExtractBatch` (fingerprint, dim, and per image
        a vector or an error)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
