"""Bulk mode: rows -> column files the server can read -> Milvus import jobs, tracked and retried.

The file is read on after the last staged row and cut into jobs of `bulk_rows` rows. Each job's files are
written (loader.bulk_files: `.npy` columns by default, or Parquet), on object storage uploaded into
Milvus's bucket (loader.object_store), and imported by the server (catalog.import_jobs). Milvus 2.3 runs
one import job at a time, so each job is written while the one before it imports, and submitted only once
that one is done: no job of ours then waits queued in the server, where a restart would send it to a dead
node (catalog.milvus23).

`BulkImport` drives every job through the states of loader.state (STAGED, UPLOADED, SUBMITTING,
SUBMITTED, DONE, FAILED), saving the import record after each transition. A rerun of the same command
first finishes the jobs the record holds: a SUBMITTING job's task, whose id a crash lost, is found again
by its file among the collection's tasks (never a task older than the import's task floor); a job whose
staged files are gone is written again from its rows of the source file; a FAILED job gets fresh tries.
Then it reads on. A failed import leaves no rows and is retried (JOB_TRIES in all); one failed by a
server restart is submitted again after `restart_grace` seconds without counting as a try (JOB_RESTARTS
at most); a job that does not move for STALL_SECONDS is reported. The staging folder is removed at the end.

Import jobs insert; they do not upsert. Rows whose name is already stored (a collection this import did
not create) are therefore upserted through the insert path instead, so re-importing never duplicates; a
flush is needed at the end only then (a completed job's segments are persisted already).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from catalog import Catalog
from catalog.import_jobs import ImportJobs, Phase
from catalog.milvus23 import STALL_SECONDS
from catalog.retry import with_retry
from loader.bulk_files import (
    FORMATS,
    BulkError,
    JobWriter,
    job_writer,
    remove_local,
    stage_chunk_rows,
    staging_root,
)
from loader.object_store import ObjectStore, S3Target
from loader.options import ImportOptions
from loader.progress import Progress, Summary
from loader.source import Source, checked_chunks
from loader.state import BulkRecord, ImportState, Job, JobState
from loader.upsert import upsert_rows

__all__ = ["BulkError", "BulkImport", "FORMATS", "S3Target", "import_bulk", "staging_root"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # a job's state is asked this often


class BulkImport:
    """One bulk import of `src` into `catalog`'s collection, resumed from `state`'s record (taken up, or
    started, here).

    `jobs` (the server's import jobs) and `store` (the object store) are made from `catalog` and `opts`
    when not given; `sleep` and `clock` are time.sleep and time.monotonic. Tests pass fakes of all four.
    """

    def __init__(self, src: Source, catalog: Catalog, opts: ImportOptions, state: ImportState,
                 summary: Summary, jobs: ImportJobs | None = None, store: ObjectStore | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        if not opts.bulk_dir and opts.bulk_s3 is None:
            raise BulkError(
                "bulk mode needs --bulk-dir (a folder the Milvus server can read under the same path: a server "
                "on this machine) or --s3-endpoint (Milvus's MinIO/S3), or use --mode insert"
            )
        if store is None and opts.bulk_s3 is not None:
            store = ObjectStore(opts.bulk_s3)  # a bad endpoint or bucket fails before anything is made
        self.src, self.catalog, self.opts, self.state, self.summary = src, catalog, opts, state, summary
        self.store, self.milvus, self.sleep, self.clock = store, jobs, sleep, clock
        self.record = state.record
        if self.record.bulk is None:  # a new import: was the collection empty (created by us)?
            self.record.bulk = BulkRecord(fresh=src.created)
            self.record.rows_done, self.record.skipped = 0, {}
        self.bulk: BulkRecord = self.record.bulk
        if opts.bulk_dir:
            self.root = Path(opts.bulk_dir)
        else:  # chosen once per import: the staged files and their object keys hang off it
            if self.bulk.stage_root is None:
                self.bulk.stage_root = str(staging_root(state.path.parent, opts.bulk_rows, src.dim))
            self.root = Path(self.bulk.stage_root)
        self.stage = self.root.resolve() / f"{catalog.collection}-{state.path.stem[-16:]}"
        state.save()
        # Chunks are cache-sized (never more than --batch-size), except where each one costs a query for
        # names already stored. A job ends at the first chunk boundary at or past bulk_rows.
        self.read_rows = opts.batch_size
        if self.bulk.fresh:
            self.read_rows = min(opts.batch_size, stage_chunk_rows(src.dim))

    def save(self) -> None:
        """Save the import record (after every transition)."""
        self.state.save()

    # -- the run -------------------------------------------------------------------------------------
    def run(self) -> bool:
        """Import every row; returns whether a flush is still needed (rows went through the insert path)."""
        self.stage.mkdir(parents=True, exist_ok=True)
        self.summary.read = self.summary.resumed_from = self.record.rows_done
        self.summary.skipped = Counter(self.record.skipped)
        rows, quiet = self.src.layout.rows, self.opts.quiet
        with Progress(rows, "importing (bulk)", quiet, initial=self.summary.read) as bar:
            try:
                self._connect()
                for job in self.bulk.jobs:  # finish what a previous run left in flight
                    self.settle(job)
                self._stage_rest(bar)
                for job in self.bulk.jobs:
                    self.settle(job)
            finally:
                if self.milvus is not None:
                    self.milvus.close()
        self.summary.imported = self.bulk.imported()
        shutil.rmtree(self.stage, ignore_errors=True)  # every job is done: its folder holds nothing more
        if not self.opts.bulk_dir:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # the default root, once no other import stages there
        return self.bulk.upserted > 0

    def _connect(self) -> None:
        """Make the collection ready for upserts when it may hold our names, reach the import jobs, and fix
        the task floor: tasks up to it (an earlier import of the same files) are never adopted."""
        retry = self.opts.retry_seconds
        if not self.bulk.fresh:  # names already stored must be upserted: that needs a loaded collection
            with_retry(lambda: self.catalog.build_index(self.opts.index), retry)
            with_retry(self.catalog.load, retry)
        if self.milvus is None:
            self.milvus = ImportJobs(self.catalog, retry)
        if self.bulk.task_floor is None:
            self.bulk.task_floor = self.milvus.newest()
            self.save()

    def _stage_rest(self, bar: Progress) -> None:
        """Read on after the last staged row; each job is recorded STAGED once its files are complete."""
        first = self.summary.read
        current: JobWriter | None = None
        try:
            for end, checked in checked_chunks(self.src, first, self.read_rows):
                names, vectors, upserted = self.split_stored(checked.names, checked.vectors)
                self.bulk.upserted += upserted
                if current is None:
                    current = self._writer(first)
                current.write(names, vectors, self.src.metas(names))
                self.summary.skipped.update(checked.skipped)
                self.summary.read = end
                bar.update(len(checked.rows) + sum(checked.skipped.values()))
                if current.rows >= self.opts.bulk_rows or end >= self.src.layout.rows:
                    rows = current.rows
                    files = current.close() if rows else None
                    if files is None:
                        current.abort()
                    current = None
                    if files is not None:
                        self.bulk.jobs.append(Job(first, end, rows, files=[str(f) for f in files]))
                    self.record.rows_done, self.record.skipped = end, dict(self.summary.skipped)
                    self.save()
                    first = end
                    self._advance()
            if current is not None:  # rows left when the file ended inside a chunk-less tail
                current.abort()
                current = None
        except BaseException:
            if current is not None:  # unrecorded files: a rerun stages these rows again
                current.abort()
            raise

    def _advance(self) -> None:
        """The next files were written while the last job imported: finish that one, then submit them (so
        the server never holds a queued job of ours)."""
        open_jobs = self.bulk.open_jobs()
        for job in open_jobs[:-1]:
            self.settle(job)
        if open_jobs and open_jobs[-1].unsubmitted:
            self.submit(open_jobs[-1])

    # -- one job -------------------------------------------------------------------------------------
    def settle(self, job: Job) -> None:
        """Drive one job to DONE: submit, follow, retry. Raises BulkError when it fails JOB_TRIES times or
        stops moving."""
        if job.state is JobState.FAILED:  # the run that gave up on it stopped; this one tries again
            job.retried()
            self.save()
        seen, since = None, self.clock()
        let_go = None  # the task whose server has read the staged files (deleted then)
        while job.state is not JobState.DONE:
            if job.unsubmitted:
                self.submit(job)
                continue
            st = self.milvus.state(job.task)
            if (st.task, st.name, st.rows) != seen:
                seen, since = (st.task, st.name, st.rows), self.clock()
            elif self.clock() - since > STALL_SECONDS:
                raise BulkError(
                    f"import job {st.task} has not moved for {STALL_SECONDS:.0f} s (state {st.name}); Milvus "
                    "may still be recovering from a restart and expires such jobs itself: run the same "
                    "command again later (tracked jobs are never imported twice)"
                )
            if st.phase is Phase.COMPLETED:
                job.completed()
                self.save()
                if self.store is not None:
                    self.store.remove(job.keys)
                remove_local(job.files)
            elif st.phase is Phase.READ and let_go != st.task:
                # Only the completion timer is left: let the files go now, not after it (a job that still
                # fails from here has its files written again, as any job whose files are gone).
                remove_local(job.files)
                let_go = st.task
            elif st.restarted and job.can_restart:
                # Not the job's fault, so not counted as a try; submitted again once the server can no
                # longer send it to the dead node. The record says SUBMITTED until then: a rerun waits too.
                log.warning("Milvus restarted during import job %s; retrying it in %.0f s", st.task,
                            self.opts.restart_grace)
                self.sleep(self.opts.restart_grace)
                job.restarted()
                self.save()
            elif st.phase is Phase.FAILED:
                job.failed()
                self.save()
                if job.state is JobState.FAILED:
                    raise BulkError(f"import job {st.task} for {job.files[0]} failed {job.failures} times: "
                                    f"{st.reason}; fix the cause and run the same command again")
                log.warning("import job %s failed (%s); retrying", st.task, st.reason)
            else:
                self.sleep(POLL_SECONDS)

    def submit(self, job: Job) -> None:
        """STAGED / UPLOADED / SUBMITTING -> SUBMITTED, through restaging and upload where needed (or DONE
        when, written again, the job held no row left to import)."""
        task = None
        if job.state is JobState.SUBMITTING:  # a crash may have left a task we never heard of
            task = self.milvus.find(job.server_files[0], newer_than=self.floor(job))
        if task is None and not job.keys and not all(Path(f).exists() for f in job.files):
            self.restage(job)
            if job.state is JobState.DONE:
                return
        if task is None:
            if job.state is JobState.STAGED and self.store is not None:
                self.upload(job)
            if job.state is not JobState.SUBMITTING:
                job.submitting()
                self.save()
            task = self.milvus.submit(job.server_files, newer_than=self.floor(job))
        job.submitted(task)
        self.save()

    def floor(self, job: Job) -> int:
        """Tasks up to this id are not the job's current one: the import's floor, or its last task."""
        floor = self.bulk.task_floor if self.bulk.task_floor is not None else -1
        return max(job.task if job.task is not None else -1, floor)

    def upload(self, job: Job) -> None:
        """STAGED -> UPLOADED: from here on the bucket holds the job's only copy."""
        keys = self.store.upload(self.stage.parent, [Path(f) for f in job.files])
        job.uploaded(keys)
        self.save()
        remove_local(job.files)

    def restage(self, job: Job) -> None:
        """Write a job's files again from its rows of the source file: they are gone (staged in memory
        before a reboot, or deleted). Skip counts were taken when it was first staged."""
        log.warning("the staged files of rows %s-%s are gone; writing them again", job.first, job.end)
        writer = self._writer(job.first)
        try:
            for end, checked in checked_chunks(self.src, job.first, self.read_rows):
                inside = checked.rows < job.end
                names, vectors, _ = self.split_stored([n for n, i in zip(checked.names, inside) if i],
                                                      checked.vectors[inside])
                writer.write(names, vectors, self.src.metas(names))
                if end >= job.end:
                    break
            rows = writer.rows
            files = writer.close() if rows else []
        except BaseException:
            writer.abort()
            raise
        if not rows:
            writer.abort()
        # Rows it no longer holds were stored meanwhile and are upserted now (those upserted when it was
        # first staged are not counted again). With no row left it is DONE now, in the same save (a crash
        # must not leave a job without files).
        self.bulk.upserted += job.rows - rows
        job.restaged([str(f) for f in files], rows)
        self.save()

    def _writer(self, first: int) -> JobWriter:
        """A writer for the files of the job that starts at file row `first` (its folder is named after it,
        so a job written again lands where it was)."""
        return job_writer(self.opts.bulk_format, self.stage / f"rows-{first:012d}", self.src.dim, self.src.scalars)

    def split_stored(self, names: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray, int]:
        """Upsert the rows whose name is stored already (not in new collections); returns the rest, for the
        job's files, and how many were upserted."""
        if self.bulk.fresh or not names:
            return names, vectors, 0
        have = with_retry(lambda: self.catalog.existing(names), self.opts.retry_seconds)
        if not have:
            return names, vectors, 0
        keep = np.array([n in have for n in names])
        stored = [n for n, k in zip(names, keep) if k]
        upsert_rows(self.catalog, stored, vectors[keep], self.opts.retry_seconds, self.src.metas(stored))
        return [n for n, k in zip(names, keep) if not k], vectors[~keep], int(keep.sum())


def import_bulk(src: Source, catalog: Catalog, opts: ImportOptions, state: ImportState,
                summary: Summary) -> bool:
    """Bulk mode of `import_h5` (see the module doc); updates `summary` and `state` as jobs complete.

    Returns whether a flush is still needed: only when rows went through the insert path (names already
    stored); a completed import job has persisted its segments already.
    """
    return BulkImport(src, catalog, opts, state, summary).run()
