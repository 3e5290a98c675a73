"""`import_h5`: HDF5 feature file -> Milvus collection, chunked, checked, normalised, resumable.

Idempotency comes from the schema: the image name is the primary key and every row is written with an
upsert, so writing a row twice leaves one row. Resumability comes from `ImportState`: after each batch
Milvus acknowledged, the next row to read is saved; a rerun of the same command starts there (rows in
flight at a crash are simply upserted again).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from catalog import Catalog
from catalog.retry import with_retry
from catalog.schema import DEFAULT_INDEX, IndexSpec
from loader import hdf5
from loader.progress import Progress, Summary
from loader.state import ImportState
from loader.validate import CheckedChunk, check_chunk, duplicate_rows

log = logging.getLogger(__name__)


@dataclass
class ImportOptions:
    """Everything `import_h5` can be told; the CLI maps its flags onto these."""

    vectors: str | None = None  # dataset names; None = classic layout or auto-detect
    names: str | None = None
    fingerprint: str | None = None  # overrides the file's `fingerprint` attribute
    force: bool = False  # accept a fingerprint that differs from the collection's
    index: IndexSpec = DEFAULT_INDEX
    batch_size: int = 10_000  # rows per upsert call (and per chunk read from the file)
    in_flight: int = 2  # upsert calls outstanding, so reading overlaps with Milvus's work
    dry_run: bool = False
    quiet: bool = False
    mode: str = "insert"  # or "bulk"
    state_dir: str | Path | None = None
    retry_seconds: float = 60.0  # how long a lost Milvus is waited for before giving up
    bulk_dir: str | Path | None = None  # bulk mode: where the server can read the staged files
    bulk_rows: int = 1_000_000  # bulk mode: rows per import job
    bulk_format: str = "npy"  # bulk mode: "npy" column files or "parquet"
    bulk_s3: Any = None  # bulk mode: a loader.bulk.S3Target to upload into, instead of a shared folder


@dataclass
class Source:
    """What the file says before anything is written: layout, dimension, fingerprint, duplicate rows."""

    layout: hdf5.Layout
    dim: int
    fingerprint: str | None
    duplicates: set[int]
    created: bool = False  # the collection was created by this import (so it held none of these names)


def inspect_file(path: str | Path, opts: ImportOptions, dim_hint: int | None = None) -> Source:
    """Open the file, pick its datasets, and find repeated names (names only: cheap)."""
    layout = hdf5.open_layout(path, opts.vectors, opts.names)
    dim = layout.dim or dim_hint or _first_row_dim(layout)
    dups = duplicate_rows(hdf5.iter_names(layout), lambda rows: hdf5.names_at(layout, rows))
    return Source(layout=layout, dim=dim, fingerprint=opts.fingerprint or layout.fingerprint, duplicates=dups)


def _first_row_dim(layout: hdf5.Layout) -> int:
    attr = layout.attrs.get(hdf5.ATTR_DIM)
    if attr and attr.isdigit():
        return int(attr)
    with h5py.File(layout.path, "r") as h5:
        ds = h5[layout.vectors]
        return len(ds[0]) if ds.shape[0] else 0


def checked_chunks(src: Source, start: int, chunk_rows: int) -> Iterator[tuple[int, CheckedChunk]]:
    """Yield (end row, checked chunk) for the rows from `start` on."""
    for chunk in hdf5.iter_chunks(src.layout, chunk_rows, start):
        yield chunk.start + len(chunk.names), check_chunk(
            chunk.start, chunk.names, chunk.vectors, src.dim, src.duplicates
        )


def prepare_collection(catalog: Catalog, src: Source, force: bool) -> None:
    """Create the collection (no index yet: it is built after the data lands) or check it fits."""
    src.created = catalog.ensure(src.dim, src.fingerprint or "", index=None, force=force)
    if src.fingerprint is None and catalog.fingerprint():
        log.warning(
            "%s has no fingerprint; the collection's is %s: assuming they match (pass --fingerprint to check)",
            src.layout.path, catalog.fingerprint(),
        )


def finish_collection(catalog: Catalog, index: IndexSpec, retry_seconds: float) -> float:
    """Build the index when missing and load; returns the seconds it took."""
    t0 = time.monotonic()
    with_retry(lambda: catalog.build_index(index), retry_seconds)
    with_retry(catalog.load, retry_seconds)
    return time.monotonic() - t0


def collection_id(catalog: Catalog) -> Any:
    """Milvus's id of the collection: a dropped and re-created collection never matches old state."""
    return with_retry(lambda: catalog.client.describe_collection(catalog.collection).get("collection_id"), 0)


def upsert_rows(catalog: Catalog, names: list[str], vectors: np.ndarray, retry_seconds: float) -> int:
    """Upsert one batch by name (idempotent), retrying while Milvus comes back."""
    return with_retry(lambda: catalog.upsert(names, vectors), retry_seconds)


def import_h5(
    path: str | Path,
    catalog: Catalog | None,
    opts: ImportOptions | None = None,
    summary: Summary | None = None,
) -> Summary:
    """Import an HDF5 feature file into `catalog`'s collection; returns the run's Summary.

    Raises hdf5.LayoutError (file), CatalogError / FingerprintMismatch (Milvus); rows that fail a check are
    skipped and counted, never raised. With `opts.dry_run` nothing is written and `catalog` may be None.
    """
    opts = opts or ImportOptions()
    summary = summary or Summary()
    hdf5.open_layout(path, opts.vectors, opts.names)  # a bad file fails before Milvus is asked anything
    dim_hint = None
    if catalog is not None and not opts.dry_run and catalog.exists():
        dim_hint = catalog.dim()
    src = inspect_file(path, opts, dim_hint)
    if opts.dry_run:
        return _dry_run(src, opts, summary)
    assert catalog is not None
    prepare_collection(catalog, src, opts.force)
    state = ImportState(opts.state_dir, src.layout.path, catalog.uri, catalog.collection, opts.mode,
                        (src.layout.vectors, src.layout.names))
    state.load(collection_id(catalog))
    if opts.mode == "bulk":
        from loader.bulk import import_bulk

        needs_flush = import_bulk(src, catalog, opts, state, summary)
    else:
        _import_insert(src, catalog, opts, state, summary)
        needs_flush = True
    if needs_flush:  # durable: what rows/s is measured up to (completed import jobs already are)
        with_retry(catalog.flush, opts.retry_seconds)
    summary.stop()
    summary.index_seconds = finish_collection(catalog, opts.index, opts.retry_seconds)
    state.clear()
    return summary


def _dry_run(src: Source, opts: ImportOptions, summary: Summary) -> Summary:
    summary.verb = "valid"
    with Progress(src.layout.rows, "checking", opts.quiet) as bar:
        for end, checked in checked_chunks(src, 0, opts.batch_size):
            summary.read = end
            summary.imported += len(checked.names)
            summary.skipped.update(checked.skipped)
            bar.update(len(checked.rows) + sum(checked.skipped.values()))
    return summary.stop()


def _import_insert(src: Source, catalog: Catalog, opts: ImportOptions, state: ImportState,
                   summary: Summary) -> None:
    """Insert mode: upserts of `batch_size` rows, `in_flight` at a time, checkpointed in file order."""
    start = int(state.data.get("rows_done", 0))
    summary.read = summary.resumed_from = start
    summary.imported = int(state.data.get("imported", 0))
    summary.skipped = Counter(state.data.get("skipped", {}))
    pending: list[tuple[Future, int, CheckedChunk]] = []

    def settle(item: tuple[Future, int, CheckedChunk]) -> None:
        fut, end, checked = item
        fut.result()  # raises the batch's error after its retries
        summary.read = end
        summary.imported += len(checked.names)
        summary.skipped.update(checked.skipped)
        state.data.update(rows_done=end, imported=summary.imported, skipped=dict(summary.skipped))
        state.save()
        bar.update(len(checked.rows) + sum(checked.skipped.values()))

    with Progress(src.layout.rows, "importing", opts.quiet, initial=start) as bar, \
            ThreadPoolExecutor(max_workers=max(1, opts.in_flight), thread_name_prefix="upsert") as pool:
        try:
            for end, checked in checked_chunks(src, start, opts.batch_size):
                fut = pool.submit(upsert_rows, catalog, checked.names, checked.vectors, opts.retry_seconds)
                pending.append((fut, end, checked))
                while len(pending) >= max(1, opts.in_flight):
                    settle(pending.pop(0))
            while pending:
                settle(pending.pop(0))
        except BaseException:
            for fut, _, _ in pending:
                fut.cancel()
            raise
