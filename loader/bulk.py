"""Bulk mode: rows -> column files the server can read -> Milvus import jobs, tracked and retried.

Files. By default each job is a folder of `.npy` column files (`name.npy`, `vector.npy`, `meta.npy`: the
numpy layout Milvus imports); `--bulk-format parquet` writes one Parquet file per job instead (the layout
pymilvus's BulkWriter writes for our schema: `name` string, `vector` list<float32>, `meta` JSON text). Both
are written column-wise from the checked numpy chunks: BulkWriter's row-by-row `append_row` measured
9,900 rows/s and 1.5 GB RSS for 50,000 rows here, a third of the server's import ceiling. `.npy` is the
default because the vectors go to disk as they are (no encoding), so staging costs the least.

Where. Local storage (`--bulk-dir`, a folder the server reads under the same path), or object storage
(`--s3-endpoint`): files are staged locally (`--bulk-dir`, else shared memory when it has room, else the
state dir: see `staging_root`), then uploaded into Milvus's bucket (the object keys are what the import job
is given), as pymilvus's RemoteBulkWriter does. Staging in memory (a tmpfs `--bulk-dir` such as /dev/shm
for a server on the same machine) leaves the disk to the server: measured here, 0.86 of the server's import
ceiling against 0.73 with the files on the same disk as the server's.

Jobs. Milvus runs one import job at a time, and starts the next only when a timer (every 2 s) has flipped
the last one to "Completed", so each job costs about 1-2 s on top of its rows: jobs are large (`bulk_rows`,
default 1,000,000). The first one is written before the server has anything to do, with both cores
(checks on this thread, writes on another: a million 512-d rows in about 1 s); each later one is written
while the one before it imports. A small first job, to start the server sooner, measured worse (0.80 of
the server's ceiling against 0.90 for one job): it pays a second completion timer, and writing the next
job then competes with the server for the two cores.

Each job's steps are recorded in the import state before and after they happen:

    staged     the files are complete on disk (written under .part, fsynced, then renamed)
    uploaded   (object storage) the files are in the bucket; the local copies are deleted
    submitted  Milvus accepted the job: its task id is recorded; once the server reports it Persisted
               (every file read), its files are deleted while the completion timer runs
    done       the job completed: never imported again

A rerun finishes staged/submitted jobs first (a job submitted just before a crash, whose id was never
recorded, is found again by its file among the collection's tasks; a staged job whose files are gone is
written again from its rows of the source file), retries failed ones (a failed import leaves no rows),
then continues reading after the last staged row.

A completed job's segments are persisted by the server, so a bulk import is flushed at the end only when
some of its rows went through the insert path (below); the flush would cost 0.5 s of pymilvus polling.

Import jobs insert; they do not upsert. Rows whose name is already stored (a collection this import did
not create) are therefore upserted through the insert path instead, so re-importing never duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
import uuid
import warnings
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from catalog import Catalog, CatalogError
from catalog.errors import MilvusUnavailable, classify
from catalog import schema as S

log = logging.getLogger(__name__)

FORMATS = ("npy", "parquet")
ROW_GROUP_BYTES = 32 * 1024 * 1024  # BulkWriter's choice: bounds the server-side Parquet reader's memory
NPY_COLUMNS = (S.NAME_FIELD, S.VECTOR_FIELD, S.META_FIELD)  # Milvus matches .npy files to fields by name
JOB_TRIES = 3
JOB_RESTARTS = 5  # server restarts one job may see before the run gives up (see RESTARTED)
POLL_SECONDS = 0.1
# Milvus 2.3 after an unclean restart: jobs that were running are failed with this reason, and for one
# session TTL (common.session.ttl, 30 s by default; etcd restarts the lease) the dead data node's session
# still looks alive, so a job submitted then may be sent to it, where it stays "Started" until the server
# expires it (importTaskExpiration, 15 minutes, checked every 5). So a job failed by a restart is
# resubmitted after RESTART_GRACE (env LOADER_RESTART_GRACE), and no job of ours waits queued in the
# server (it would be sent out at once on restart).
RESTARTED = "service restarted"
RESTART_GRACE = float(os.environ.get("LOADER_RESTART_GRACE", "40"))
# A job that neither finishes nor moves for this long is reported instead of waited on for ever.
STALL_SECONDS = 180.0
DONE_STATES = ("Completed",)
# The server has read every file of the job and persisted its rows and the task; only the completion timer
# is left. The staged files are deleted then, while that timer runs, not after it (a job that still fails
# from here has its files written again, as any job whose files are gone).
READ_STATES = ("Persisted",)
FAILED_STATES = ("Failed", "Failed and cleaned")


class BulkError(CatalogError):
    """An import job failed for good, or bulk mode cannot run here (the message says what to do)."""


@dataclass(frozen=True)
class S3Target:
    """Milvus's object store: staged files are uploaded here before their import job starts."""

    endpoint: str  # host:port
    access_key: str
    secret_key: str
    bucket: str = "a-bucket"  # Milvus's default minio.bucketName
    prefix: str = "bulk-import"
    secure: bool = False


def stage_chunk_rows(dim: int) -> int:
    """Rows read, checked and written at a time while staging: about 2 MB of vectors, so a chunk is still
    in the CPU cache when it is normalised and written (measured 1.75 -> 1.45 s per million 512-d rows
    against 10,000-row chunks)."""
    return max(64, (2 << 20) // (4 * max(1, dim)))


def job_bytes(rows: int, dim: int) -> int:
    """About how much room one job's .npy files take (vectors, names of up to 64 characters, meta)."""
    return rows * (dim * 4 + 64 * 4 + 8)


def staging_root(state_dir: Path, rows: int, dim: int, shm: Path = Path("/dev/shm")) -> Path:
    """Where files are staged before their upload when no --bulk-dir is given.

    Staged files live only until their job is uploaded and imported (a lost one is written again from the
    source file), so shared memory suits them when it has room for two jobs with half the machine's free
    memory to spare: the disk is then left to the server. Otherwise the state dir.
    """
    need = 2 * job_bytes(rows, dim)
    try:
        st = os.statvfs(shm)
        free = st.f_bavail * st.f_frsize
        if os.access(shm, os.W_OK) and free >= need and mem_available() >= 2 * need:
            return shm / f"image-search-loader-{os.getuid()}"  # per user: /dev/shm is shared by all
    except OSError:
        pass
    return state_dir / "bulk"


def mem_available() -> int:
    """MemAvailable from /proc/meminfo in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def arrow_schema():
    """The Parquet layout BulkWriter writes for our schema (pyarrow is imported only when Parquet is used)."""
    import pyarrow as pa

    return pa.schema(
        [(S.NAME_FIELD, pa.string()), (S.VECTOR_FIELD, pa.list_(pa.float32())), (S.META_FIELD, pa.string())]
    )


def arrow_table(names: list[str], vectors: np.ndarray):
    """The rows as an Arrow table in the import file layout (no per-row Python work for vectors)."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    vec = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
    meta = pa.array(["{}"] * n, type=pa.string())
    return pa.Table.from_arrays([pa.array(names, type=pa.string()), vec, meta], schema=arrow_schema())


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class JobWriter(Protocol):
    """The files of one import job, written chunk by chunk (memory: one chunk, plus names for .npy)."""

    rows: int

    def write(self, names: list[str], vectors: np.ndarray) -> None: ...

    def close(self) -> list[Path]: ...

    def abort(self) -> None: ...


class ParquetJob:
    """One Parquet file."""

    def __init__(self, base: Path, dim: int):
        import pyarrow.parquet as pq

        self.path = base.with_suffix(".parquet")
        self.part = base.with_suffix(".parquet.part")
        self.rows = 0
        self.row_group = max(1000, ROW_GROUP_BYTES // (dim * 4 + 64))
        self.writer = pq.ParquetWriter(self.part, arrow_schema(), compression="none")

    def write(self, names: list[str], vectors: np.ndarray) -> None:
        if names:
            self.writer.write_table(arrow_table(names, vectors), row_group_size=self.row_group)
            self.rows += len(names)

    def close(self) -> list[Path]:
        """Finish the file and make it appear under its final name at once."""
        self.writer.close()
        _fsync(self.part)
        os.replace(self.part, self.path)
        return [self.path]

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.part.unlink(missing_ok=True)


class NpyJob:
    """A folder of .npy column files. Vectors stream to disk as they come; the header (which holds the
    row count) is rewritten at the end, in the same number of bytes. Names are kept until then, because
    a `<U` column's width is the longest name (about 70 MB per million names)."""

    RESERVED_ROWS = 10**11  # the header written first: any real count takes the same 128 bytes

    def __init__(self, base: Path, dim: int):
        self.folder = base
        self.part = base.with_name(base.name + ".part")
        shutil.rmtree(self.part, ignore_errors=True)
        self.part.mkdir(parents=True)
        self.dim = dim
        self.rows = 0
        self.names: list[str] = []
        self.vectors = open(self.part / f"{S.VECTOR_FIELD}.npy", "wb")
        self.header_bytes = self._header(self.RESERVED_ROWS)

    def _header(self, rows: int) -> int:
        self.vectors.seek(0)
        np.lib.format.write_array_header_1_0(
            self.vectors, {"descr": "<f4", "fortran_order": False, "shape": (rows, self.dim)}
        )
        return self.vectors.tell()

    def write(self, names: list[str], vectors: np.ndarray) -> None:
        if names:
            np.ascontiguousarray(vectors, dtype="<f4").tofile(self.vectors)
            self.names.extend(names)
            self.rows += len(names)

    def close(self) -> list[Path]:
        """Finish the three files and make the folder appear under its final name at once."""
        end = self.vectors.tell()
        if self._header(self.rows) != self.header_bytes:  # cannot happen for counts below RESERVED_ROWS
            raise BulkError(f"{self.part}: the .npy header changed size")
        self.vectors.seek(end)
        self.vectors.flush()
        os.fsync(self.vectors.fileno())
        self.vectors.close()
        np.save(self.part / f"{S.NAME_FIELD}.npy", np.array(self.names, dtype=str))
        np.save(self.part / f"{S.META_FIELD}.npy", np.full(self.rows, "{}"))
        for column in (S.NAME_FIELD, S.META_FIELD):
            _fsync(self.part / f"{column}.npy")
        shutil.rmtree(self.folder, ignore_errors=True)  # a copy staged by a run that died before recording it
        os.replace(self.part, self.folder)
        self.names = []
        return [self.folder / f"{column}.npy" for column in NPY_COLUMNS]

    def abort(self) -> None:
        self.vectors.close()
        shutil.rmtree(self.part, ignore_errors=True)


class BackgroundWriter:
    """A JobWriter whose writes run in order on one worker thread, so the next chunk is read and checked
    while the last one is written. Most of a write is the kernel filling new pages (numpy and pyarrow
    release the GIL for it): staging a million 512-d rows took 1.45 s in one thread, about 1 s with this.
    At most `DEPTH` chunks wait; a failed write raises from the next call."""

    DEPTH = 4

    def __init__(self, inner: JobWriter):
        self.inner = inner
        self.rows = 0  # rows handed over (the inner writer's count lags behind)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-writer")
        self._pending: deque[Future] = deque()

    def write(self, names: list[str], vectors: np.ndarray) -> None:
        if not names:
            return
        self._pending.append(self._pool.submit(self.inner.write, names, vectors))
        self.rows += len(names)
        while len(self._pending) > self.DEPTH:
            self._pending.popleft().result()

    def _drain(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> list[Path]:
        self._drain()
        return self.inner.close()

    def abort(self) -> None:
        try:
            self._drain()
        except Exception:  # the files are thrown away: a failed write no longer matters
            pass
        finally:
            self.inner.abort()


def job_writer(fmt: str, base: Path, dim: int) -> JobWriter:
    """A writer for one job's files in `fmt` ("npy" or "parquet") at `base` (no suffix), writing in the
    background."""
    inner: JobWriter = ParquetJob(base, dim) if fmt == "parquet" else NpyJob(base, dim)
    return BackgroundWriter(inner)


def object_key(prefix: str, root: Path, path: Path) -> str:
    """The object key of a staged file: prefix/<import>/<job>/<file>, the import being the staging folder
    named after the collection and the import's state, so concurrent imports never share a key."""
    return "/".join([prefix.strip("/"), *path.relative_to(root).parts]).lstrip("/")


class ObjectStore:
    """Uploads staged job files into Milvus's bucket (the minio SDK, as pymilvus's RemoteBulkWriter)."""

    def __init__(self, target: S3Target):
        from minio import Minio

        self.target = target
        self.client = Minio(target.endpoint, access_key=target.access_key, secret_key=target.secret_key,
                            secure=target.secure)
        try:
            found = self.client.bucket_exists(target.bucket)
        except Exception as exc:  # connection refused, bad credentials, TLS mismatch
            raise BulkError(f"cannot use object storage at {target.endpoint}: {exc}; check --s3-endpoint and "
                            "the credentials (S3_ACCESS_KEY / S3_SECRET_KEY)") from exc
        if not found:
            raise BulkError(f"bucket {target.bucket!r} not found at {target.endpoint}: give Milvus's own bucket "
                            "(its minio.bucketName, default a-bucket) with --s3-bucket")

    def upload(self, root: Path, paths: list[Path]) -> list[str]:
        """Put the files into the bucket; returns their keys (what the import job reads)."""
        keys = []
        for path in paths:
            key = object_key(self.target.prefix, root, path)
            try:
                self.client.fput_object(self.target.bucket, key, str(path))
            except Exception as exc:
                raise CatalogError(f"upload of {path.name} to {self.target.endpoint} failed: {exc}") from exc
            keys.append(key)
        return keys

    def remove(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.client.remove_object(self.target.bucket, key)
            except Exception as exc:  # a leftover object is harmless: say so and go on
                log.warning("could not delete %s from bucket %s: %s", key, self.target.bucket, exc)


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them.

    Milvus 2.3's proxy dereferences a nil response when an import RPC fails inside the server, and a client
    that cancels the call mid-flight makes it fail: the whole server crashes (milvus-io/milvus#35539, fixed
    upstream in 2024; reproduced with 2.3.5 and a cancelled get_bulk_insert_state). So an interrupt that
    lands during a poll waits the millisecond the call takes. Python runs signal handlers on the main thread
    only, so elsewhere this holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: a handler set outside Python, which cannot be put back from here
                signal.signal(s, handler)
        for s in dict.fromkeys(caught):  # once each, in the order they came
            signal.raise_signal(s)


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
            raise MilvusUnavailable(f"cannot reach Milvus at {catalog.uri}: {exc}", "connect", str(exc)) from exc

    def _utility(self, fn: str, *args, **kwargs) -> Any:
        from pymilvus import utility

        with warnings.catch_warnings(), signals_held():
            warnings.simplefilter("ignore")
            try:  # a timeout on every call: without one, a dead server makes pymilvus wait indefinitely
                return getattr(utility, fn)(*args, using=self.alias, timeout=self.catalog.timeout, **kwargs)
            except Exception as exc:
                raise classify(exc, fn, self.catalog.uri) from exc

    def submit(self, files: list[str]) -> int:
        """Start an import job for one job's files (server paths or object keys); returns its task id."""
        return int(self._utility("do_bulk_insert", self.catalog.collection, files=files))

    def state(self, task: int) -> tuple[str, str, int]:
        """(state name, failure reason, rows imported) of a task."""
        st = self._utility("get_bulk_insert_state", task)
        return st.state_name, str(st.infos.get("failed_reason", "") or ""), int(st.row_count)

    def _tasks(self) -> list:
        return self._utility("list_bulk_insert_tasks", collection_name=self.catalog.collection, limit=0)

    def newest(self) -> int:
        """The newest task id of this collection (-1 when it has none)."""
        return max((int(t.task_id) for t in self._tasks()), default=-1)

    def find(self, file: str) -> int | None:
        """The newest task of this collection that imports `file` (a submit whose id was lost)."""
        found = [t for t in self._tasks() if file in str(t.infos.get("files", "")).split(",")]
        return max((int(t.task_id) for t in found), default=None)

    def close(self) -> None:
        from pymilvus import connections

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                connections.disconnect(self.alias)
            except Exception:  # closing a dead channel may raise; nothing to keep
                pass


def import_bulk(src, catalog: Catalog, opts, state, summary) -> bool:
    """Bulk mode of `import_h5` (see the module doc); updates `summary` and `state` as jobs complete.

    Returns whether a flush is still needed: only when rows went through the insert path (names already
    stored); a completed import job has persisted its segments already.
    """
    from loader.importer import checked_chunks, upsert_rows, with_retry
    from loader.progress import Progress

    s3: S3Target | None = opts.bulk_s3
    if not opts.bulk_dir and s3 is None:
        raise BulkError(
            "bulk mode needs --bulk-dir (a folder the Milvus server can read under the same path: a server on "
            "this machine) or --s3-endpoint (Milvus's MinIO/S3), or use --mode insert"
        )
    store = ObjectStore(s3) if s3 is not None else None  # a bad endpoint or bucket fails before anything is made
    data = state.data
    if opts.bulk_dir:
        root = Path(opts.bulk_dir)
    else:  # chosen once per import: the staged files and their object keys hang off it
        root = Path(data.get("stage_root") or staging_root(state.path.parent, opts.bulk_rows, src.dim))
        data["stage_root"] = str(root)
    stage = root.resolve() / f"{catalog.collection}-{state.path.stem[-16:]}"
    stage.mkdir(parents=True, exist_ok=True)
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
    if "task_floor" not in data:  # tasks up to here (an earlier import of the same files) are never adopted
        data["task_floor"] = -1 if jobs else with_retry(milvus.newest, retry)
        state.save()

    def server_files(job: dict) -> list[str]:
        """What the import job reads: local paths, or object keys once uploaded."""
        if store is None:
            return job["files"]
        if not job.get("keys"):
            job["keys"] = with_retry(lambda: store.upload(stage.parent, [Path(f) for f in job["files"]]), retry)
            state.save()  # uploaded: from here on the bucket holds the job's only copy
            _remove_local(job["files"])
        return job["keys"]

    def new_task(job: dict, files: list[str]) -> int | None:
        """A task for the job's files that is newer than any we recorded for it: one a crashed run, or a
        submit whose reply was lost, started (task ids grow)."""
        task = milvus.find(files[0]) if files else None
        floor = max(job.get("task", -1), data.get("task_floor", -1))
        return task if task is not None and task > floor else None

    def submit_once(job: dict, files: list[str]) -> int:
        """Submit, unless a retried call already did (its reply lost while the server went away)."""
        return new_task(job, files) or milvus.submit(files)

    def split_stored(names: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray, int]:
        """Upsert the rows whose name is stored already (not new collections); returns the rest, and how
        many were upserted."""
        if fresh or not names:
            return names, vectors, 0
        have = with_retry(lambda: catalog.existing(names), retry)
        if not have:
            return names, vectors, 0
        keep = np.array([n in have for n in names])
        upsert_rows(catalog, [n for n, k in zip(names, keep) if k], vectors[keep], retry)
        return [n for n, k in zip(names, keep) if not k], vectors[~keep], int(keep.sum())

    # Chunks are cache-sized (never more than --batch-size), except where each one costs a query for names
    # already stored. A job ends at the first chunk boundary at or past bulk_rows.
    read_rows = min(opts.batch_size, stage_chunk_rows(src.dim)) if fresh else opts.batch_size

    def restage(job: dict) -> None:
        """Write a job's files again from its rows of the source file: they are gone (staged in memory
        before a reboot, or deleted); the counts were taken when it was first staged."""
        log.warning("the staged files of rows %s-%s are gone; writing them again", job["first"], job["end"])
        writer = job_writer(opts.bulk_format, stage / f"rows-{job['first']:012d}", src.dim)
        try:
            for end, checked in checked_chunks(src, job["first"], read_rows):
                inside = checked.rows < job["end"]
                names = [n for n, i in zip(checked.names, inside) if i]
                names, vectors, upserted = split_stored(names, checked.vectors[inside])
                data["upserted"] = int(data.get("upserted", 0)) + upserted  # stored since it was staged
                writer.write(names, vectors)
                if end >= job["end"]:
                    break
            rows = writer.rows
            files = writer.close() if rows else []
        except BaseException:
            writer.abort()
            raise
        if not rows:
            writer.abort()
        # With no row left it is done now, in the same save (a crash must not leave a job without files).
        job.update(files=[str(f) for f in files], rows=rows, keys=[], status="staged" if rows else "done")
        state.save()

    def submit(job: dict) -> None:
        """Start the job's import (or adopt the task a crashed run started for the same files)."""
        known = job.get("keys") or job["files"]
        task = with_retry(lambda: new_task(job, known), retry) if job.get("maybe_submitted") else None
        if task is None and not job.get("keys") and not all(Path(f).exists() for f in job["files"]):
            restage(job)
            if job["status"] == "done":  # every row of it is stored by now
                return
        files = server_files(job) if task is None else []
        if task is None:
            job["maybe_submitted"] = True  # from here on a crash may leave a task we never heard of
            state.save()
            task = with_retry(lambda: submit_once(job, files), retry)
        job.update(task=task, status="submitted", tries=job.get("tries", 0) + 1)
        state.save()

    def settle(job: dict) -> None:
        """Drive one job to `done` (submit, wait, retry on failure)."""
        last, since = None, time.monotonic()
        read = False  # its staged files are deleted (the server has read them)
        while job["status"] != "done":
            if job["status"] == "staged":
                submit(job)
                if job["status"] == "done":  # written again, it held no row left to import
                    break
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
                if store is not None:
                    store.remove(job.get("keys", []))
                _remove_local(job["files"])
            elif name in READ_STATES and not read:
                _remove_local(job["files"])
                read = True
            elif name in FAILED_STATES and RESTARTED in reason and job.get("restarts", 0) < JOB_RESTARTS:
                # Not the job's fault, so not counted as a try (a server that restarts on every attempt is,
                # after JOB_RESTARTS); resubmitted once the server can no longer send it to the dead node.
                log.warning("Milvus restarted during import job %s; retrying it in %.0f s", job["task"], RESTART_GRACE)
                time.sleep(RESTART_GRACE)
                job.update(status="staged", maybe_submitted=False, tries=job["tries"] - 1,
                           restarts=job.get("restarts", 0) + 1)
                state.save()
            elif name in FAILED_STATES:
                if job["tries"] >= JOB_TRIES:
                    raise BulkError(f"import job {job['task']} for {job['files'][0]} failed {job['tries']} times: "
                                    f"{reason}; fix the cause and run the same command again")
                log.warning("import job %s failed (%s); retrying", job["task"], reason)
                job.update(status="staged", maybe_submitted=False)
                state.save()
            else:
                time.sleep(POLL_SECONDS)

    def imported() -> int:
        return int(data.get("upserted", 0)) + sum(j["rows"] for j in jobs if j["status"] == "done")

    current: JobWriter | None = None
    with Progress(src.layout.rows, "importing (bulk)", opts.quiet, initial=summary.read) as bar:
        try:
            for job in jobs:  # finish what a previous run left in flight
                job.setdefault("files", [job.pop("file", "")])  # records of older versions: one file a job
                settle(job)
            first = summary.read
            for end, checked in checked_chunks(src, summary.read, read_rows):
                names, vectors, upserted = split_stored(checked.names, checked.vectors)
                data["upserted"] = int(data.get("upserted", 0)) + upserted
                if current is None:
                    current = job_writer(opts.bulk_format, stage / f"rows-{first:012d}", src.dim)
                current.write(names, vectors)
                summary.skipped.update(checked.skipped)
                summary.read = end
                bar.update(len(checked.rows) + sum(checked.skipped.values()))
                if current.rows >= opts.bulk_rows or end >= src.layout.rows:
                    rows = current.rows
                    files = current.close() if rows else None
                    if files is None:
                        current.abort()
                    current = None
                    if files is not None:
                        jobs.append({"files": [str(f) for f in files], "first": first, "end": end, "rows": rows,
                                     "status": "staged"})
                    data.update(rows_done=end, skipped=dict(summary.skipped))
                    state.save()
                    first = end
                    # The next files were written while the last job imported; it is submitted only once
                    # that job is done, so the server never holds a queued job of ours (see RESTART_GRACE).
                    open_jobs = [j for j in jobs if j["status"] != "done"]
                    for job in open_jobs[:-1]:
                        settle(job)
                    if open_jobs and open_jobs[-1]["status"] == "staged":
                        submit(open_jobs[-1])
            if current is not None:  # rows left when the file ended inside a chunk-less tail
                current.abort()
                current = None
            for job in jobs:
                settle(job)
        except BaseException:
            if current is not None:  # unrecorded files: a rerun stages these rows again
                current.abort()
            raise
        finally:
            milvus.close()
    summary.imported = imported()
    shutil.rmtree(stage, ignore_errors=True)  # every job is done: its folder holds nothing more
    if not opts.bulk_dir:
        with contextlib.suppress(OSError):
            root.rmdir()  # the default root, once no other import stages there
    return int(data.get("upserted", 0)) > 0


def _remove_local(files: list[str]) -> None:
    """Delete a job's staged files (and its folder, for .npy jobs)."""
    for f in files:
        Path(f).unlink(missing_ok=True)
    folders = {Path(f).parent for f in files if Path(f).parent.name.startswith("rows-")}
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
