"""`import_h5`: HDF5 feature file -> Milvus collection, chunked, checked, normalised, resumable.

Both modes start here (the file inspected, the collection created or checked, the resume record loaded)
and end here (flush when needed, index, load). Insert mode is below; bulk mode is loader.bulk.

Idempotency comes from the schema: the image name is the primary key, and insert mode upserts, so writing
a row twice leaves one row. Into a collection the import created itself, rows never sent before are
inserted instead, since none of their names can be stored yet (names repeated within the file are
skipped): Milvus 2.3's upsert is a delete and an insert, and those deletes make it compact every segment
and rebuild its index after the import (100k rows: 35 s of both cores after the load; inserted: none),
though the write rate was the same within noise. Resumability comes from `ImportState`: after each
batch Milvus acknowledged, the next row to read is saved, and before a batch is sent, a mark at or past its
end (SENT_AHEAD); a rerun of the same command starts at the first, and upserts what lies between the two
(rows in flight at a crash), as every retried call does (loader.upsert).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from catalog import Catalog, CatalogError
from catalog.retry import with_retry
from catalog.schema import IndexSpec
from loader import hdf5
from loader.bulk import import_bulk
from loader.codes import SAMPLE_ROWS, train_projection
from loader.options import ImportOptions
from loader.progress import Progress, Summary
from loader.source import Source, checked_chunks, inspect_file
from loader.state import ImportState
from loader.upsert import insert_new_rows, upsert_rows
from loader.validate import CheckedChunk

__all__ = ["ImportOptions", "Source", "import_h5", "inspect_file"]

log = logging.getLogger(__name__)


def prepare_collection(catalog: Catalog, src: Source, force: bool,
                       scalar_fields: dict[str, str] | None = None, index: IndexSpec | None = None,
                       code_sample: int = SAMPLE_ROWS, floats_encoding: str = "int8") -> None:
    """Create the collection (no vector index yet: it is built after the data lands; the declared scalar
    fields and their indexes at once) or check it fits. A binary mode (`index`) creates a binary-code
    collection, its codes learned from a sample of the file first; a collection's mode cannot change."""
    bits = index.code_bits if index is not None else None
    projection = None
    if bits and not catalog.exists():
        try:
            projection = train_projection(src, bits, code_sample)
        except ValueError as exc:
            raise CatalogError(f"cannot use {index.index_type}: {exc}") from None
    src.created = catalog.ensure(src.dim, src.fingerprint or "", index=None, force=force,
                                 scalar_fields=scalar_fields, projection=projection, floats_encoding=floats_encoding)
    if src.created and projection is not None:
        # Creating the floats collection with its index loads it; written to while loaded, the query node
        # holds every inserted row in growing segments until they are sealed and indexed (10M x 512-d: Milvus
        # at 20 GB during the import). Released, rows go to storage only; finish_collection loads both.
        catalog.release()
    have = catalog.code_bits()
    if bits and have != bits:  # a binary-code collection keeps its mode whatever --index says
        kind = f"{have}-bit codes" if have else "float vectors"
        raise CatalogError(f"collection {catalog.collection!r} stores {kind}; --index {index.index_type} needs a "
                           f"collection created with it: import into a new collection (--collection)")
    src.scalars = catalog.scalar_fields()
    if src.fingerprint is None and catalog.fingerprint():
        log.warning(
            "%s has no fingerprint; the collection's is %s: assuming they match (pass --fingerprint to check)",
            src.layout.path, catalog.fingerprint(),
        )


# How long the index may show no progress before the loader stops waiting for it (Milvus reports a segment
# when its whole build is done: one large HNSW segment takes minutes on a small machine).
INDEX_STALL_S = 1800.0


def finish_collection(catalog: Catalog, index: IndexSpec, retry_seconds: float, quiet: bool = True) -> float:
    """Build the index when missing, wait until the imported rows are indexed, then load; returns the seconds
    it took.

    Loading first would make the query node hold every imported row raw (plus Milvus's interim index on
    them) until its segment is indexed: 3M x 512-d peaked at 15 GB that way (6 GB of floats), and 10M was
    killed for memory on a 23 GB machine; loaded after the build, the same 3M take 3.7 GB (docs/SCALING.md).
    A collection that is already loaded (an import into a live catalogue) stays loaded throughout.
    """
    t0 = time.monotonic()
    with_retry(lambda: catalog.build_index(index), retry_seconds)
    wait_indexed(catalog, retry_seconds, quiet)
    with_retry(catalog.load, retry_seconds)
    return time.monotonic() - t0


def wait_indexed(catalog: Catalog, retry_seconds: float, quiet: bool = True, stall_s: float = INDEX_STALL_S,
                 poll_s: float = 1.0) -> bool:
    """Wait until Milvus has indexed every row (a collection created with its index indexes imported segments
    in the background, and searches rows not yet indexed by brute force: correct, but slow at scale); a bar
    counts the rows. Returns False when the index made no progress for `stall_s` (the server goes on)."""
    done, pending, total = with_retry(catalog.index_progress, retry_seconds)
    if not pending and done >= total:
        return True
    moved, shown, last = time.monotonic(), min(done, total), (done, pending)
    with Progress(total, "indexing", quiet, initial=shown) as bar:
        while pending or done < total:
            if time.monotonic() - moved > stall_s:
                log.warning("index of %s: %d of %d rows after %.0f s without progress; not waiting longer (Milvus "
                            "goes on building; searches are slower until it is done)", catalog.collection, done,
                            total, stall_s)
                return False
            time.sleep(poll_s)
            done, pending, total = with_retry(catalog.index_progress, retry_seconds)
            if (done, pending) != last:  # any change is progress (a compaction may move both ways)
                moved, last = time.monotonic(), (done, pending)
            if min(done, total) > shown:
                bar.update(min(done, total) - shown)
                shown = min(done, total)
    return True


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
    if opts.mode == "bulk" and (opts.index.code_bits or (dim_hint is not None and catalog.code_bits())):
        raise CatalogError("binary-code collections are imported with --mode insert (their import files would "
                           "hold codes and text floats, which Milvus 2.3's .npy import cannot take in bounded "
                           "memory)")
    if opts.index.index_type in ("IVF_SQ8", "IVF_PQ") and not catalog.exists():
        log.warning("%s re-ranks with vectors Milvus reads from its chunk cache; on a Milvus with local storage "
                    "(the PyPI 2.3.5 server of `make run`) that cache rewrites the vector files in place and the "
                    "collection's vectors cannot be read after a restart. Use it on object storage (MinIO/S3: "
                    "docker compose), or HNSW / BIN_ITQ* locally (docs/SCALING.md)", opts.index.index_type)
    if opts.index.index_type == "DISKANN" and not (catalog.exists() and catalog.has_index()):
        why = catalog.diskann_refusal()  # the PyPI server's build fails and is retried forever: never wait on it
        if why:
            raise CatalogError(f"the Milvus server at {catalog.uri} cannot build DISKANN indexes ({why}); use "
                               "--index IVF_SQ8 or IVF_PQ (compact too, docs/SCALING.md), or a Milvus built with "
                               "DiskANN and queryNode.enableDisk: true")
    prepare_collection(catalog, src, opts.force, opts.scalar_fields, opts.index, opts.code_sample,
                       opts.floats_encoding)
    state = ImportState(opts.state_dir, src.layout.path, catalog.uri, catalog.collection, opts.mode,
                        (src.layout.vectors, src.layout.names))
    state.load(catalog.collection_id())
    if opts.mode == "bulk":
        needs_flush = import_bulk(src, catalog, opts, state, summary)
    else:
        _import_insert(src, catalog, opts, state, summary)
        needs_flush = True
    if needs_flush:  # durable: what rows/s is measured up to (completed import jobs already are)
        with_retry(catalog.flush, opts.retry_seconds)
    summary.stop()
    summary.index_seconds = finish_collection(catalog, opts.index, opts.retry_seconds, opts.quiet)
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


# How many batches past the one being sent the resume record's `sent` mark is moved each time it is saved.
SENT_AHEAD = 16


def _import_insert(src: Source, catalog: Catalog, opts: ImportOptions, state: ImportState,
                   summary: Summary) -> None:
    """Insert mode: writes of `batch_size` rows, `in_flight` at a time, checkpointed in file order."""
    record = state.record
    start = record.rows_done
    if start == 0 and record.sent == 0:  # a new import (a rerun keeps what its first run found)
        record.fresh = src.created
    summary.read = summary.resumed_from = start
    summary.imported = record.imported
    summary.skipped = Counter(record.skipped)
    pending: list[tuple[Future, int, CheckedChunk]] = []

    def settle(item: tuple[Future, int, CheckedChunk]) -> None:
        fut, end, checked = item
        fut.result()  # raises the batch's error after its retries
        summary.read = end
        summary.imported += len(checked.names)
        summary.skipped.update(checked.skipped)
        record.rows_done, record.imported, record.skipped = end, summary.imported, dict(summary.skipped)
        state.save()
        bar.update(len(checked.rows) + sum(checked.skipped.values()))

    with Progress(src.layout.rows, "importing", opts.quiet, initial=start) as bar, \
            ThreadPoolExecutor(max_workers=max(1, opts.in_flight), thread_name_prefix="upsert") as pool:
        try:
            first, earlier_runs_sent = start, record.sent
            for end, checked in checked_chunks(src, start, opts.batch_size):
                # rows a run before this one may have sent are upserted; rows never sent, into our own
                # collection, are inserted
                write = insert_new_rows if record.fresh and first >= earlier_runs_sent else upsert_rows
                if end > record.sent:
                    # Saved before the call: a crash after it must not leave these rows "never sent". The
                    # mark runs SENT_AHEAD batches ahead, so it is saved once per that many calls (each save
                    # is an fsync, which stalls the pipeline behind a busy disk); a rerun upserts at most
                    # those batches more.
                    record.sent = min(src.layout.rows, end + SENT_AHEAD * opts.batch_size)
                    state.save()
                fut = pool.submit(write, catalog, checked.names, checked.vectors, opts.retry_seconds,
                                  src.metas(checked.names))
                pending.append((fut, end, checked))
                first = end
                while len(pending) >= max(1, opts.in_flight):
                    settle(pending.pop(0))
            while pending:
                settle(pending.pop(0))
        except BaseException:
            for fut, _, _ in pending:
                fut.cancel()
            raise
