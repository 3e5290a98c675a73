"""Bulk mode's files: one import job's rows as column files the server can read, and where they are staged.

By default a job is a folder of `.npy` column files (`name.npy`, `vector.npy`, `meta.npy`: the numpy layout
Milvus imports); `--bulk-format parquet` writes one Parquet file per job instead (the layout pymilvus's
BulkWriter writes for our schema: `name` string, `vector` list<float32>, `meta` JSON text). Both are
written column-wise from the checked numpy chunks, not row by row as BulkWriter's `append_row` (too slow
and too big for a million rows: docs/LOADER.md). `.npy` is the default because the vectors go to disk as
they are (no encoding), so staging costs the least.

Files appear under their final name only when complete (written under `.part`, fsynced, then renamed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from catalog import CatalogError
from catalog import schema as S

FORMATS = ("npy", "parquet")
ROW_GROUP_BYTES = 32 * 1024 * 1024  # BulkWriter's choice: bounds the server-side Parquet reader's memory
NPY_COLUMNS = (S.NAME_FIELD, S.VECTOR_FIELD, S.META_FIELD)  # Milvus matches .npy files to fields by name


class BulkError(CatalogError):
    """An import job failed for good, or bulk mode cannot run here (the message says what to do)."""


def stage_chunk_rows(dim: int) -> int:
    """Rows read, checked and written at a time while staging: about 2 MB of vectors, so a chunk is still
    in the CPU cache when it is normalised and written (faster than 10,000-row chunks: docs/LOADER.md)."""
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


def remove_local(files: list[str]) -> None:
    """Delete a job's staged files (and its folder, for .npy jobs)."""
    for f in files:
        Path(f).unlink(missing_ok=True)
    folders = {Path(f).parent for f in files if Path(f).parent.name.startswith("rows-")}
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


# numpy and Arrow types of the collection's declared scalar fields (catalog.schema.SCALAR_TYPES).
NPY_SCALAR = {"str": str, "int": np.int64, "float": np.float64, "bool": np.bool_}


def meta_columns(names: list[str], metas: list[dict] | None, scalars: dict[str, str]) -> tuple[list[str], dict]:
    """The `meta` column (JSON text per row) and one column per declared scalar field (values from meta)."""
    if metas is None:
        return ["{}"] * len(names), {f: [S.SCALAR_TYPES[k][1]] * len(names) for f, k in scalars.items()}
    text = [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in metas]
    return text, {f: [S.scalar_value(k, m.get(f)) for m in metas] for f, k in scalars.items()}


def arrow_schema(scalars: dict[str, str] | None = None):
    """The Parquet layout BulkWriter writes for our schema (pyarrow is imported only when Parquet is used)."""
    import pyarrow as pa

    kinds = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    return pa.schema(
        [(S.NAME_FIELD, pa.string()), (S.VECTOR_FIELD, pa.list_(pa.float32())), (S.META_FIELD, pa.string())]
        + [(f, kinds[k]) for f, k in (scalars or {}).items()]
    )


def arrow_table(names: list[str], vectors: np.ndarray, metas: list[dict] | None = None,
                scalars: dict[str, str] | None = None):
    """The rows as an Arrow table in the import file layout (no per-row Python work for vectors)."""
    import pyarrow as pa

    scalars = scalars or {}
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    vec = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
    text, columns = meta_columns(names, metas, scalars)
    schema = arrow_schema(scalars)
    arrays = [pa.array(names, type=pa.string()), vec, pa.array(text, type=pa.string())]
    arrays += [pa.array(columns[f], type=schema.field(f).type) for f in scalars]
    return pa.Table.from_arrays(arrays, schema=schema)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class JobWriter(Protocol):
    """The files of one import job, written chunk by chunk (memory: one chunk, plus names for .npy)."""

    rows: int

    def write(self, names: list[str], vectors: np.ndarray, metas: list[dict] | None = None) -> None: ...

    def close(self) -> list[Path]: ...

    def abort(self) -> None: ...


class ParquetJob:
    """One Parquet file."""

    def __init__(self, base: Path, dim: int, scalars: dict[str, str] | None = None):
        import pyarrow.parquet as pq

        self.path = base.with_suffix(".parquet")
        self.part = base.with_suffix(".parquet.part")
        self.rows = 0
        self.scalars = scalars or {}
        self.row_group = max(1000, ROW_GROUP_BYTES // (dim * 4 + 64))
        self.writer = pq.ParquetWriter(self.part, arrow_schema(self.scalars), compression="none")

    def write(self, names: list[str], vectors: np.ndarray, metas: list[dict] | None = None) -> None:
        if names:
            self.writer.write_table(arrow_table(names, vectors, metas, self.scalars), row_group_size=self.row_group)
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

    def __init__(self, base: Path, dim: int, scalars: dict[str, str] | None = None):
        self.folder = base
        self.part = base.with_name(base.name + ".part")
        shutil.rmtree(self.part, ignore_errors=True)
        self.part.mkdir(parents=True)
        self.dim = dim
        self.rows = 0
        self.scalars = scalars or {}
        self.names: list[str] = []
        self.meta: list[str] = []  # JSON text per row, kept until close as the names are
        self.columns: dict[str, list] = {f: [] for f in self.scalars}
        self.vectors = open(self.part / f"{S.VECTOR_FIELD}.npy", "wb")
        self.header_bytes = self._header(self.RESERVED_ROWS)

    def _header(self, rows: int) -> int:
        self.vectors.seek(0)
        np.lib.format.write_array_header_1_0(
            self.vectors, {"descr": "<f4", "fortran_order": False, "shape": (rows, self.dim)}
        )
        return self.vectors.tell()

    def write(self, names: list[str], vectors: np.ndarray, metas: list[dict] | None = None) -> None:
        if names:
            np.ascontiguousarray(vectors, dtype="<f4").tofile(self.vectors)
            self.names.extend(names)
            text, columns = meta_columns(names, metas, self.scalars)
            self.meta.extend(text)
            for f, values in columns.items():
                self.columns[f].extend(values)
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
        np.save(self.part / f"{S.META_FIELD}.npy", np.array(self.meta, dtype=str))
        for f, kind in self.scalars.items():
            np.save(self.part / f"{f}.npy", np.array(self.columns[f], dtype=NPY_SCALAR[kind]))
        columns = [*NPY_COLUMNS, *self.scalars]
        for column in columns:
            if column != S.VECTOR_FIELD:
                _fsync(self.part / f"{column}.npy")
        shutil.rmtree(self.folder, ignore_errors=True)  # a copy staged by a run that died before recording it
        os.replace(self.part, self.folder)
        self.names, self.meta, self.columns = [], [], {f: [] for f in self.scalars}
        return [self.folder / f"{column}.npy" for column in columns]

    def abort(self) -> None:
        self.vectors.close()
        shutil.rmtree(self.part, ignore_errors=True)


class BackgroundWriter:
    """A JobWriter whose writes run in order on one worker thread, so the next chunk is read and checked
    while the last one is written. Most of a write is the kernel filling new pages, and numpy and pyarrow
    release the GIL for it, so the two overlap (docs/LOADER.md has the figures). At most `DEPTH` chunks
    wait; a failed write raises from the next call."""

    DEPTH = 4

    def __init__(self, inner: JobWriter):
        self.inner = inner
        self.rows = 0  # rows handed over (the inner writer's count lags behind)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-writer")
        self._pending: deque[Future] = deque()

    def write(self, names: list[str], vectors: np.ndarray, metas: list[dict] | None = None) -> None:
        if not names:
            return
        self._pending.append(self._pool.submit(self.inner.write, names, vectors, metas))
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


def job_writer(fmt: str, base: Path, dim: int, scalars: dict[str, str] | None = None) -> JobWriter:
    """A writer for one job's files in `fmt` ("npy" or "parquet") at `base` (no suffix), writing in the
    background; `scalars` are the collection's declared scalar fields (each gets its column)."""
    inner: JobWriter = ParquetJob(base, dim, scalars) if fmt == "parquet" else NpyJob(base, dim, scalars)
    return BackgroundWriter(inner)
