"""bench/scale.py's exact top 10, kept while the vectors file is written and recomputed from a reused file:
both equal a full sort of every score, and a file from another run is refused (unit: no Milvus)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from devstack.processes import REPO

sys.path.insert(0, str(REPO / "bench"))
import scale  # noqa: E402
from _search_data import PRESETS, FeatureLikeVectors  # noqa: E402

ROWS, DIM = 2500, 64


def generator() -> FeatureLikeVectors:
    return FeatureLikeVectors.preset("broad", ROWS, seed=0, presets={"broad": {**PRESETS["broad"], "dim": DIM}})


@pytest.fixture
def written(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "CHUNK", 1000)  # several chunks, the last one short
    gen = generator()
    queries = gen.sample(7, np.random.default_rng(2))
    path = tmp_path / "vectors.h5"
    truth = scale.write_file(path, ROWS, DIM, queries, gen, np.random.default_rng(1))
    return path, queries, truth


def test_the_truth_kept_while_writing_is_the_exact_top_10(written):
    import h5py

    path, queries, truth = written
    with h5py.File(path, "r") as f:
        x = f["dataset_1"][:]
        assert f["dataset_2"][ROWS - 1] == f"img_{ROWS - 1:09d}".encode()
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    assert [set(a) for a in truth] == [set(b) for b in exact]


def test_a_reused_file_gives_the_same_truth_and_another_file_is_refused(written, tmp_path):
    path, queries, truth = written
    again = scale.reuse_file(path, ROWS, DIM, queries, generator(), np.random.default_rng(1))
    assert [set(a) for a in again] == [set(b) for b in truth]
    with pytest.raises(SystemExit, match="this run is 2,000 x 64-d"):
        scale.reuse_file(path, 2000, DIM, queries, generator(), np.random.default_rng(1))
    with pytest.raises(SystemExit, match="not written by this generator"):
        scale.reuse_file(path, ROWS, DIM, queries, generator(), np.random.default_rng(99))
