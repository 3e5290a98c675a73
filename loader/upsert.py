"""The insert path's write, shared by both modes: insert mode writes every row with it, bulk mode the rows
whose name is already stored (import jobs insert; they cannot replace a row)."""

from __future__ import annotations

import numpy as np

from catalog import Catalog
from catalog.retry import with_retry


def upsert_rows(catalog: Catalog, names: list[str], vectors: np.ndarray, retry_seconds: float,
                metas: list[dict] | None = None) -> int:
    """Upsert one batch by name (idempotent), with each row's meta ({} by default), retrying while Milvus
    comes back."""
    return with_retry(lambda: catalog.upsert(names, vectors, metas), retry_seconds)


def insert_new_rows(catalog: Catalog, names: list[str], vectors: np.ndarray, retry_seconds: float,
                    metas: list[dict] | None = None) -> int:
    """Write one batch of names not stored yet with a plain insert (less work for Milvus than an upsert); every retry
    upserts instead, since a call that failed may have been applied (a lost answer), and an insert would
    then store its names twice."""
    tries = [0]

    def write() -> int:
        tries[0] += 1
        if tries[0] == 1:
            return catalog.insert(names, vectors, metas)
        return catalog.upsert(names, vectors, metas)

    return with_retry(write, retry_seconds)
