"""The rows bench/load.py works on: the bench file, its rows as the loader stores them, empty collections."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from catalog import Catalog

DIM = 512


def make_file(path: Path, rows: int) -> None:
    """A classic-layout file written in slabs (the generator's memory stays small too)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        vec = f.create_dataset("dataset_1", (rows, DIM), "float32", chunks=(1024, DIM))
        names = f.create_dataset("dataset_2", (rows,), "S24")
        for s in range(0, rows, 50_000):
            e = min(s + 50_000, rows)
            vec[s:e] = rng.standard_normal((e - s, DIM), dtype=np.float32)
            names[s:e] = np.array([f"img/{i:010d}.jpg".encode() for i in range(s, e)])


def empty_collection(uri: str, name: str) -> Catalog:
    """A new, empty collection (no index: each measurement is the data path only)."""
    cat = Catalog(uri, collection=name)
    cat.drop()
    cat.create(DIM, "bench", None)
    return cat


def file_names(source: Path, rows: int) -> list[str]:
    """The file's first `rows` names, decoded (the bench file has no invalid or repeated rows)."""
    with h5py.File(source, "r") as f:
        return [n.decode() for n in f["dataset_2"][:rows]]


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Vectors L2-normalised, as the loader stores them."""
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def file_rows(source: Path, rows: int) -> tuple[list[str], np.ndarray]:
    """The file's first `rows` names and L2-normalised vectors (float32), all in memory."""
    vectors = np.empty((rows, DIM), np.float32)
    with h5py.File(source, "r") as f:
        for s in range(0, rows, 50_000):
            block = f["dataset_1"][s : s + 50_000]
            vectors[s : s + len(block)] = unit_rows(block)
    return file_names(source, rows), vectors
