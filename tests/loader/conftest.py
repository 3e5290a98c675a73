"""Loader fixtures: small HDF5 files in the classic layout and variants, and a helper to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def write_classic(path: Path, n: int, dim: int = 16, seed: int = 0, prefix: str = "img",
                  attrs: dict | None = None, names_dtype: str = "fixed") -> tuple[np.ndarray, list[str]]:
    """A classic-layout file (dataset_1 float32, dataset_2 names); returns (vectors, names)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    names = [f"{prefix}_{i:06d}.jpg" for i in range(n)]
    with h5py.File(path, "w") as f:
        f["dataset_1"] = vectors
        if names_dtype == "fixed":
            f["dataset_2"] = np.array([s.encode() for s in names], dtype=np.bytes_)
        else:
            f.create_dataset("dataset_2", data=names, dtype=h5py.string_dtype())
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return vectors, names


def run_loader(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m loader ARGS` as a subprocess (what users and scripts run)."""
    return subprocess.run(
        [sys.executable, "-m", "loader", *args], cwd=REPO, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def all_names(catalog) -> list[str]:
    """Every stored name (duplicates included), straight from Milvus with Strong consistency."""
    rows = catalog.client.query(catalog.collection, filter='name != ""', output_fields=["name"],
                                limit=16384, consistency_level="Strong")
    return [r["name"] for r in rows]


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("LOADER_STATE_DIR", str(d))
    return d
