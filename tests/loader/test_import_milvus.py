"""`loader import` against the real Milvus: idempotency, collection checks, bulk mode, failures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.loader.conftest import all_names, run_loader, write_classic

pytestmark = pytest.mark.integration


def test_import_twice_leaves_exactly_n_rows_normalised(milvus_server, catalog, tmp_path, state_dir):
    vectors, names = write_classic(tmp_path / "a.h5", 1200, dim=16, attrs={"fingerprint": "fp-a"})
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri,
            "--collection", catalog.collection, "--batch-size", "500", "-q"]
    for _ in range(2):
        res = run_loader(*args)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("read 1,200, imported 1,200, skipped 0, ")
    assert catalog.count() == 1200 and sorted(all_names(catalog)) == names
    assert catalog.fingerprint() == "fp-a" and catalog.dim() == 16
    assert catalog.has_index() and catalog.is_loaded()
    row = catalog.get([names[7]], with_vectors=True)[0]
    assert np.allclose(row["vector"], vectors[7] / np.linalg.norm(vectors[7]), atol=1e-6)
    assert catalog.index_spec().index_type == "HNSW"


def test_index_choice_and_reimport_updates_vectors(milvus_server, catalog, tmp_path, state_dir):
    write_classic(tmp_path / "a.h5", 300, dim=8, seed=1)
    vectors, _ = write_classic(tmp_path / "b.h5", 300, dim=8, seed=2)  # same names, new vectors
    base = ["--milvus-uri", milvus_server.uri, "--collection", catalog.collection, "-q"]
    assert run_loader("import", str(tmp_path / "a.h5"), *base, "--index", "IVF_FLAT",
                      "--index-params", '{"nlist": 16}').returncode == 0
    assert run_loader("import", str(tmp_path / "b.h5"), *base).returncode == 0
    assert catalog.count() == 300 and catalog.index_spec().index_type == "IVF_FLAT"
    got = catalog.get(["img_000005.jpg"], with_vectors=True)[0]["vector"]
    assert np.allclose(got, vectors[5] / np.linalg.norm(vectors[5]), atol=1e-6)


def test_dimension_and_fingerprint_mismatch_are_refused(milvus_server, catalog, tmp_path, state_dir):
    base = ["--milvus-uri", milvus_server.uri, "--collection", catalog.collection, "-q"]
    write_classic(tmp_path / "a.h5", 50, dim=8, attrs={"fingerprint": "fp-a"})
    write_classic(tmp_path / "d.h5", 50, dim=4)
    write_classic(tmp_path / "b.h5", 50, dim=8, prefix="b", attrs={"fingerprint": "fp-b"})
    assert run_loader("import", str(tmp_path / "a.h5"), *base).returncode == 0

    res = run_loader("import", str(tmp_path / "d.h5"), *base)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"Error: collection '{catalog.collection}' stores 8-d vectors, these are 4-d: "
        "use another collection (COLLECTION=... or --collection)"
    )
    res = run_loader("import", str(tmp_path / "b.h5"), *base)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(
        f"Error: collection '{catalog.collection}' holds vectors with fingerprint fp-a, but these have fp-b."
    )
    res = run_loader("import", str(tmp_path / "b.h5"), *base, "--fingerprint", "fp-a")
    assert res.returncode == 0, res.stderr  # --fingerprint overrides the file's attribute
    assert run_loader("import", str(tmp_path / "b.h5"), *base, "--force").returncode == 0
    assert catalog.count() == 100


def test_milvus_unreachable_is_one_line(tmp_path, state_dir):
    write_classic(tmp_path / "a.h5", 5, dim=4)
    res = run_loader("import", str(tmp_path / "a.h5"), "--milvus-uri", "http://127.0.0.1:9")
    assert res.returncode == 1
    assert res.stderr == ("Error: cannot reach Milvus at http://127.0.0.1:9: start it (make run, or docker "
                          "compose up) or set MILVUS_URI / --milvus-uri\n")


def test_bulk_mode_imports_via_real_import_jobs(milvus_server, catalog, tmp_path, state_dir):
    """.npy column files (the default) + import jobs on the real server (local storage, same filesystem)."""
    _, names = write_classic(tmp_path / "a.h5", 2500, dim=8, attrs={"fingerprint": "fp"})
    with __import__("h5py").File(tmp_path / "a.h5", "r+") as f:
        f["dataset_1"][10] = 0  # skipped, counted
    stage = tmp_path / "stage"
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri, "--collection",
            catalog.collection, "--mode", "bulk", "--bulk-dir", str(stage), "--bulk-rows", "1000",
            "--batch-size", "500", "-q"]
    res = run_loader(*args)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("read 2,500, imported 2,499, skipped 1 (zero_vector=1), ")
    assert catalog.count() == 2499 and len(set(all_names(catalog))) == 2499
    assert list(stage.iterdir()) == []  # files and folders of completed jobs are removed
    # Bulk into a collection that already holds the names: upserted, never duplicated.
    res = run_loader(*args)
    assert res.returncode == 0, res.stderr
    assert catalog.count() == 2499 and len(all_names(catalog)) == 2499
    assert set(all_names(catalog)) == set(names) - {names[10]}


def test_bulk_mode_without_stage_dir_says_what_to_do(milvus_server, catalog, tmp_path, state_dir):
    write_classic(tmp_path / "a.h5", 5, dim=4)
    res = run_loader("import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri,
                     "--collection", catalog.collection, "--mode", "bulk")
    assert res.returncode == 1
    assert res.stderr.startswith("Error: bulk mode needs --bulk-dir (a folder the Milvus server can read")


def test_bulk_mode_frees_staged_files_once_read_and_flushes_only_upserts(milvus_server, catalog, tmp_path,
                                                                          state_dir, monkeypatch):
    """Staged files are deleted when the job is Persisted (read by the server), not after the completion
    timer; a completed import job needs no flush, rows upserted through the insert path do."""
    from catalog.import_jobs import ImportJobs, Phase
    from loader.importer import import_h5
    from loader.options import ImportOptions

    _, names = write_classic(tmp_path / "a.h5", 1200, dim=8)
    stage = tmp_path / "stage"
    seen: list[tuple[str, bool]] = []  # (state the loader was told, were staged files on disk)
    real_state = ImportJobs.state

    def recorded_state(self, task):
        st = real_state(self, task)
        if st.name == "Completed" and not any(s == "Persisted" for s, _ in seen):
            # The server's 2-s flip timer may pass between two polls; make sure the loader sees the state.
            st = dataclasses.replace(st, name="Persisted", phase=Phase.READ)
        seen.append((st.name, any(stage.rglob("*.npy"))))
        return st

    monkeypatch.setattr(ImportJobs, "state", recorded_state)
    flushes = []
    real_flush = type(catalog).flush
    monkeypatch.setattr(type(catalog), "flush", lambda self: (flushes.append(1), real_flush(self))[1])
    opts = ImportOptions(mode="bulk", bulk_dir=stage, quiet=True, state_dir=state_dir)

    summary = import_h5(tmp_path / "a.h5", catalog, opts)
    assert summary.imported == 1200 and catalog.count() == 1200
    first_read = next(i for i, (s, _) in enumerate(seen) if s == "Persisted")
    assert all(on_disk for s, on_disk in seen[:first_read + 1])  # never deleted before the server read them
    assert seen[-1] == ("Completed", False)  # deleted before the job completed
    assert flushes == []  # nothing went through the insert path

    seen.clear()
    summary = import_h5(tmp_path / "a.h5", catalog, opts)  # every name is stored: upserted, then flushed
    assert summary.imported == 1200 and catalog.count() == 1200 and len(all_names(catalog)) == 1200
    assert flushes == [1]
