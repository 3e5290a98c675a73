"""The import files bulk mode writes: what Milvus reads must be exactly the checked rows."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from loader.bulk import NpyJob, ParquetJob, first_job_rows


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


@pytest.mark.parametrize("bulk_rows, first", [(1_000_000, 100_000), (30_000, 3000), (3000, 1000), (1000, 1000)])
def test_first_job_is_a_tenth(bulk_rows, first):
    assert first_job_rows(bulk_rows) == first


def test_staging_goes_to_shared_memory_only_with_room(tmp_path, monkeypatch):
    from loader import bulk

    shm = tmp_path / "shm"
    shm.mkdir()
    state = tmp_path / "state"
    monkeypatch.setattr(bulk, "mem_available", lambda: 64 * 2**30)
    assert bulk.staging_root(state, 10_000, 512, shm=shm) == shm / f"image-search-loader-{os.getuid()}"  # 46 MB: room
    monkeypatch.setattr(bulk, "mem_available", lambda: 60 * 2**20)  # two 23 MB jobs want 92 MB free
    assert bulk.staging_root(state, 10_000, 512, shm=shm) == state / "bulk"
    monkeypatch.setattr(bulk, "mem_available", lambda: 64 * 2**30)
    assert bulk.staging_root(state, 10_000, 512, shm=tmp_path / "none") == state / "bulk"


def test_object_keys_are_unique_per_import(tmp_path):
    from loader.bulk import object_key

    root = tmp_path / "bulk"
    a = root / "images-0123456789abcdef" / "rows-000000000000" / "vector.npy"
    b = root / "images-fedcba9876543210" / "rows-000000000000" / "vector.npy"
    assert object_key("bulk-import/", root, a) == "bulk-import/images-0123456789abcdef/rows-000000000000/vector.npy"
    assert object_key("", root, b) == "images-fedcba9876543210/rows-000000000000/vector.npy"
