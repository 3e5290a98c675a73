"""The import files bulk mode writes: what Milvus reads must be exactly the checked rows."""

from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from loader import bulk_files
from loader.bulk_files import (
    BackgroundWriter,
    NpyJob,
    ParquetJob,
    job_writer,
    remove_local,
    stage_chunk_rows,
    staging_root,
)
from loader.object_store import object_key


def _chunks(n: int, dim: int, size: int):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    names = [f"dir/名前_{i}.jpg" for i in range(n)]
    return names, vectors, [(names[s:s + size], vectors[s:s + size]) for s in range(0, n, size)]


def test_npy_job_streams_vectors_and_fixes_the_header(tmp_path):
    names, vectors, chunks = _chunks(2503, 16, 500)
    job = NpyJob(tmp_path / "rows-000000000000", 16)
    for n, v in chunks:
        job.write(n, v)
    job.write([], np.zeros((0, 16), np.float32))  # a chunk whose rows were all skipped
    files = job.close()
    assert [f.name for f in files] == ["name.npy", "vector.npy", "meta.npy"]
    assert not (tmp_path / "rows-000000000000.part").exists()
    got = np.load(files[1])
    assert got.dtype == np.float32 and got.shape == (2503, 16) and np.array_equal(got, vectors)
    assert np.load(files[0]).tolist() == names
    assert np.load(files[2]).tolist() == ["{}"] * 2503


def test_npy_job_replaces_a_copy_left_by_a_dead_run_and_aborts_cleanly(tmp_path):
    names, vectors, _ = _chunks(10, 4, 10)
    stale = tmp_path / "rows-000000000000"
    stale.mkdir()
    (stale / "vector.npy").write_bytes(b"half a file")
    job = NpyJob(stale, 4)
    job.write(names, vectors)
    assert np.array_equal(np.load(job.close()[1]), vectors)
    job = NpyJob(tmp_path / "rows-000000000010", 4)
    job.write(names, vectors)
    job.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows-000000000000"]


def test_parquet_job_has_bulkwriters_layout(tmp_path):
    names, vectors, chunks = _chunks(1200, 8, 500)
    job = ParquetJob(tmp_path / "rows-000000000000", 8)
    for n, v in chunks:
        job.write(n, v)
    (path,) = job.close()
    table = pq.read_table(path)
    assert table.column_names == ["name", "vector", "meta"]
    assert table.column("name").to_pylist() == names
    assert np.array_equal(np.array(table.column("vector").to_pylist(), dtype=np.float32), vectors)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_background_writer_keeps_every_row_in_order(tmp_path, fmt):
    names, vectors, chunks = _chunks(5000, 8, 97)  # many more chunks than the queue holds
    job = job_writer(fmt, tmp_path / "rows-000000000000", 8)
    assert isinstance(job, BackgroundWriter)
    for n, v in chunks:
        job.write(n, v)
    assert job.rows == 5000  # counted when handed over, before the worker has written them
    files = job.close()
    if fmt == "npy":
        got_names, got = np.load(files[0]).tolist(), np.load(files[1])
    else:
        table = pq.read_table(files[0])
        got_names = table.column("name").to_pylist()
        got = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    assert got_names == names and np.array_equal(got, vectors)


class _FailingJob:
    """An inner writer whose third write fails (a full disk), recording what happened to it."""

    def __init__(self):
        self.rows, self.threads, self.aborted = 0, set(), False

    def write(self, names, vectors, metas=None):
        self.threads.add(threading.get_ident())
        if self.rows >= 2 * len(names):
            raise OSError(28, "No space left on device")
        self.rows += len(names)

    def close(self):
        raise AssertionError("a writer whose write failed must not be closed")

    def abort(self):
        self.aborted = True


def test_background_writer_raises_a_failed_write_and_aborts():
    inner = _FailingJob()
    job = BackgroundWriter(inner)
    names, vectors, chunks = _chunks(100, 4, 10)
    with pytest.raises(OSError, match="No space left"):
        for n, v in chunks:  # the failure surfaces on a later write (at most DEPTH chunks later) ...
            job.write(n, v)
        job.close()  # ... or at the latest on close
    job.abort()
    assert inner.aborted and inner.rows == 20
    assert threading.get_ident() not in inner.threads  # the writes ran on the worker thread


def test_stage_chunks_are_cache_sized():
    assert stage_chunk_rows(512) == 1024  # 2 MB of float32
    assert stage_chunk_rows(4096) == 128
    assert stage_chunk_rows(10**6) == 64  # never absurdly small


def test_staging_goes_to_shared_memory_only_with_room(tmp_path, monkeypatch):
    shm = tmp_path / "shm"
    shm.mkdir()
    state = tmp_path / "state"
    monkeypatch.setattr(bulk_files, "mem_available", lambda: 64 * 2**30)
    assert staging_root(state, 10_000, 512, shm=shm) == shm / f"image-search-loader-{os.getuid()}"  # 46 MB: room
    monkeypatch.setattr(bulk_files, "mem_available", lambda: 60 * 2**20)  # two 23 MB jobs want 92 MB free
    assert staging_root(state, 10_000, 512, shm=shm) == state / "bulk"
    monkeypatch.setattr(bulk_files, "mem_available", lambda: 64 * 2**30)
    assert staging_root(state, 10_000, 512, shm=tmp_path / "none") == state / "bulk"


def test_object_keys_are_unique_per_import(tmp_path):
    root = tmp_path / "bulk"
    a = root / "images-0123456789abcdef" / "rows-000000000000" / "vector.npy"
    b = root / "images-fedcba9876543210" / "rows-000000000000" / "vector.npy"
    assert object_key("bulk-import/", root, a) == "bulk-import/images-0123456789abcdef/rows-000000000000/vector.npy"
    assert object_key("", root, b) == "images-fedcba9876543210/rows-000000000000/vector.npy"


def test_remove_local_deletes_files_and_npy_job_folders(tmp_path):
    npy = tmp_path / "rows-000000000000"
    npy.mkdir()
    files = [npy / "name.npy", npy / "vector.npy"]
    for f in files:
        f.write_bytes(b"x")
    parquet = tmp_path / "rows-000000001000.parquet"
    parquet.write_bytes(b"x")
    remove_local([str(f) for f in files] + [str(parquet), str(tmp_path / "gone.npy")])  # a gone file is fine
    assert list(tmp_path.iterdir()) == []
