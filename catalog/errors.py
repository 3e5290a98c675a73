"""Errors shared by the loader and the search service; each message says what to do."""

from __future__ import annotations


class CatalogError(Exception):
    """Milvus is unreachable or refused an operation."""


class FingerprintMismatch(CatalogError):
    """Vectors from one model were about to meet a collection built by another."""

    def __init__(self, collection: str, expected: str, got: str):
        self.collection = collection
        self.expected = expected
        self.got = got
        super().__init__(
            f"collection {collection!r} holds vectors with fingerprint {expected}, but these have {got}. "
            "Re-extract the catalogue with this model into a new collection, or point at the extractor "
            "that built it (use --force only if you know the vectors are compatible)."
        )
