"""Bulk mode: rows -> Parquet files the server can read -> Milvus import jobs, tracked and retried.

Files have the layout pymilvus's BulkWriter writes for our schema (columns `name` string, `vector`
list<float32>, `meta` JSON text), but are written column-wise with pyarrow from the checked numpy chunks:
BulkWriter's row-by-row `append_row` measured 9,900 rows/s and 1.5 GB RSS for 50,000 rows here, a third of
the server's import ceiling, whereas a columnar write costs almost nothing.

Each file of `bulk_rows` rows becomes one import job (`utility.do_bulk_insert`, the API Milvus 2.3 has and
2.4+ keeps). Every step is recorded in the import state before and after it happens:

    staged     the file is complete on disk (written as .part, then renamed)
    submitted  Milvus accepted the job: its task id is recorded
    done       the job completed: never imported again; its file is deleted

A rerun finishes staged/submitted jobs first (a job submitted just before a crash, whose id was never
recorded, is found again by its file among the collection's tasks), retries failed ones (a failed import
leaves no rows), then continues reading after the last staged row.

Import jobs insert; they do not upsert. Rows whose name is already stored (a collection this import did
not create) are therefore upserted through the insert path instead, so re-importing never duplicates.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog import Catalog, CatalogError
from catalog import schema as S

log = logging.getLogger(__name__)

ARROW_SCHEMA = pa.schema(
    [(S.NAME_FIELD, pa.string()), (S.VECTOR_FIELD, pa.list_(pa.float32())), (S.META_FIELD, pa.string())]
)
ROW_GROUP_BYTES = 32 * 1024 * 1024  # BulkWriter's choice: bounds the server-side Parquet reader's memory
JOB_TRIES = 3
# A job that neither finishes nor moves for this long is reported instead of waited on for ever. Seen on
# Milvus 2.3: a job submitted within the session TTL (15 s) after an unclean restart is sent to the dead
# data node's session and stays "Started" until the server expires it (importTaskExpiration, 900 s).
STALL_SECONDS = 180.0
DONE_STATES = ("Completed",)
FAILED_STATES = ("Failed", "Failed and cleaned")


class BulkError(CatalogError):
    """An import job failed for good, or bulk mode cannot run here (the message says what to do)."""


def arrow_table(names: list[str], vectors: np.ndarray) -> pa.Table:
    """The rows as an Arrow table in the import file layout (no per-row Python work for vectors)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    vec = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
    meta = pa.array(["{}"] * n, type=pa.string())
    return pa.Table.from_arrays([pa.array(names, type=pa.string()), vec, meta], schema=ARROW_SCHEMA)


class JobFile:
    """One Parquet file being written chunk by chunk (memory: one chunk)."""

    def __init__(self, path: Path, dim: int):
        self.path = path
        self.part = path.with_suffix(".parquet.part")
        self.rows = 0
        self.row_group = max(1000, ROW_GROUP_BYTES // (dim * 4 + 64))
        self.writer = pq.ParquetWriter(self.part, ARROW_SCHEMA, compression="none")

    def write(self, names: list[str], vectors: np.ndarray) -> None:
        if names:
            self.writer.write_table(arrow_table(names, vectors), row_group_size=self.row_group)
            self.rows += len(names)

    def close(self) -> Path:
        """Finish the file and make it appear under its final name at once."""
        self.writer.close()
        with open(self.part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.part, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.part.unlink(missing_ok=True)


class ImportJobs:
    """Milvus import jobs of one collection through the 2.3 `do_bulk_insert` API."""

    def __init__(self, catalog: Catalog):
        from pymilvus import connections

        self.catalog = catalog
        self.alias = f"loader-bulk-{uuid.uuid4().hex[:8]}"
        try:
            with warnings.catch_warnings():  # the ORM API is deprecated in pymilvus 3 but is what 2.3 speaks
                warnings.simplefilter("ignore")
                connections.connect(alias=self.alias, uri=catalog.uri, token=catalog.token or "",
                                    timeout=catalog.timeout)
        except Exception as exc:
            raise CatalogError(f"cannot reach Milvus at {catalog.uri}: {exc}") from exc

    def _utility(self, fn: str, *args, **kwargs) -> Any:
        from pymilvus import utility

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # a timeout on every call: without one, a dead server makes pymilvus wait indefinitely
                return getattr(utility, fn)(*args, using=self.alias, timeout=self.catalog.timeout, **kwargs)
            except Exception as exc:
                raise CatalogError(f"Milvus {fn} failed: {exc}") from exc

    def submit(self, file: str) -> int:
        """Start an import job for one file; returns its task id."""
        return int(self._utility("do_bulk_insert", self.catalog.collection, files=[file]))

    def state(self, task: int) -> tuple[str, str, int]:
        """(state name, failure reason, rows imported) of a task."""
        st = self._utility("get_bulk_insert_state", task)
        return st.state_name, str(st.infos.get("failed_reason", "") or ""), int(st.row_count)

    def find(self, file: str) -> int | None:
        """The newest task of this collection that imports `file` (a submit whose id was lost)."""
        tasks = self._utility("list_bulk_insert_tasks", collection_name=self.catalog.collection, limit=0)
        found = [t for t in tasks if file in str(t.infos.get("files", "")).split(",")]
        return max((int(t.task_id) for t in found), default=None)

    def close(self) -> None:
        from pymilvus import connections

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                connections.disconnect(self.alias)
            except Exception:  # closing a dead channel may raise; nothing to keep
                pass


def import_bulk(src, catalog: Catalog, opts, state, summary) -> None:
    """Bulk mode of `import_h5` (see the module doc); updates `summary` and `state` as jobs complete."""
    from loader.importer import checked_chunks, upsert_rows, with_retry
    from loader.progress import Progress

    if not opts.bulk_dir:
        raise BulkError(
            "bulk mode needs --bulk-dir: a folder the Milvus server can read (for a local server, a folder "
            "under its localStorage.path), or use --mode insert"
        )
    stage = Path(opts.bulk_dir).resolve() / f"{catalog.collection}-{state.path.stem[-16:]}"
    stage.mkdir(parents=True, exist_ok=True)
    data = state.data
    if "jobs" not in data:  # a new import: remember whether the collection was empty (created by us)
        data.update(jobs=[], rows_done=0, upserted=0, skipped={}, fresh=bool(getattr(src, "created", False)))
        state.save()
    jobs: list[dict] = data["jobs"]
    fresh: bool = data["fresh"]
    summary.read = summary.resumed_from = int(data["rows_done"])
    summary.skipped = Counter(data.get("skipped", {}))
    if not fresh:  # names already stored must be upserted, not imported: that needs a loaded collection
        with_retry(lambda: catalog.build_index(opts.index), opts.retry_seconds)
        with_retry(catalog.load, opts.retry_seconds)
    milvus = ImportJobs(catalog)
    retry = opts.retry_seconds

    def submit(job: dict) -> None:
        """Start the job's import (or adopt the task a crashed run started for the same file)."""
        task = with_retry(lambda: milvus.find(job["file"]), retry) if job.get("maybe_submitted") else None
        if task is None:
            job["maybe_submitted"] = True  # from here on a crash may leave a task we never heard of
            state.save()
            task = with_retry(lambda: milvus.submit(job["file"]), retry)
        job.update(task=task, status="submitted", tries=job.get("tries", 0) + 1)
        state.save()

    def settle(job: dict) -> None:
        """Drive one job to `done` (submit, wait, retry on failure)."""
        last, since = None, time.monotonic()
        while job["status"] != "done":
            if job["status"] == "staged":
                submit(job)
            name, reason, rows = with_retry(lambda: milvus.state(job["task"]), retry)
            if (name, rows) != last:
                last, since = (name, rows), time.monotonic()
            elif time.monotonic() - since > STALL_SECONDS:
                raise BulkError(
                    f"import job {job['task']} has not moved for {STALL_SECONDS:.0f} s (state {name}); Milvus may "
                    "still be recovering from a restart and expires such jobs itself: run the same command "
                    "again later (tracked jobs are never imported twice)"
                )
            if name in DONE_STATES:
                job["status"] = "done"
                state.save()
                Path(job["file"]).unlink(missing_ok=True)
            elif name in FAILED_STATES:
                if job["tries"] >= JOB_TRIES:
                    raise BulkError(f"import job {job['task']} for {job['file']} failed {job['tries']} times: "
                                    f"{reason}; fix the cause and run the same command again")
                log.warning("import job %s failed (%s); retrying", job["task"], reason)
                job.update(status="staged", maybe_submitted=False)
                state.save()
            else:
                time.sleep(0.5)

    def imported() -> int:
        return int(data.get("upserted", 0)) + sum(j["rows"] for j in jobs if j["status"] == "done")

    with Progress(src.layout.rows, "importing (bulk)", opts.quiet, initial=summary.read) as bar:
        try:
            for job in jobs:  # finish what a previous run left in flight
                settle(job)
            current: JobFile | None = None
            first = summary.read
            for end, checked in checked_chunks(src, summary.read, opts.batch_size):
                names, vectors = checked.names, checked.vectors
                if not fresh and names:
                    have = with_retry(lambda: catalog.existing(names), retry)
                    if have:
                        keep = np.array([n in have for n in names])
                        upsert_rows(catalog, [n for n, k in zip(names, keep) if k], vectors[keep], retry)
                        data["upserted"] = int(data.get("upserted", 0)) + int(keep.sum())
                        names = [n for n, k in zip(names, keep) if not k]
                        vectors = vectors[~keep]
                if current is None:
                    current = JobFile(stage / f"rows-{first:012d}.parquet", src.dim)
                current.write(names, vectors)
                summary.skipped.update(checked.skipped)
                summary.read = end
                bar.update(len(checked.rows) + sum(checked.skipped.values()))
                if current.rows >= opts.bulk_rows or end >= src.layout.rows:
                    path = current.close() if current.rows else None
                    if path is None:
                        current.abort()
                    current = None
                    if path is not None:
                        jobs.append({"file": str(path), "first": first, "end": end, "rows": 0, "status": "staged"})
                        jobs[-1]["rows"] = pq.ParquetFile(path).metadata.num_rows
                    data.update(rows_done=end, skipped=dict(summary.skipped))
                    state.save()
                    first = end
                    open_jobs = [j for j in jobs if j["status"] != "done"]
                    if open_jobs and open_jobs[-1]["status"] == "staged":
                        submit(open_jobs[-1])
                    for job in open_jobs[:-1]:
                        settle(job)  # keep one job importing while the next file is written
            if current is not None:  # rows left when the file ended inside a chunk-less tail
                current.abort()
            for job in jobs:
                settle(job)
        finally:
            milvus.close()
    summary.imported = imported()
