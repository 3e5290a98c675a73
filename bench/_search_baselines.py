"""What bench/search.py's ANN search is measured against, in the same process on the same vectors:

- `exact_per_query`: the best a competent user writes for one query at a time: one matmul over all
  vectors in memory, `np.argpartition` for the top k, then those k sorted (the strongest exact baseline
  per query; its latency is the goal's denominator).
- `exact_batched`: all queries in one matmul (per-query time amortised): the best exact throughput.
- `tutorial_way`: the classic tutorial's code, kept for reference: the whole HDF5 read, then per query
  `np.dot` + a full `argsort`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

TOP_K = 10


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part])]


def exact_per_query(vectors: np.ndarray, queries: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, list[float]]:
    """(top-k row indices per query, per-query ms): one matmul + argpartition per query."""
    for q in queries[:5]:  # warm up BLAS threads and caches
        _top(vectors @ q, k)
    tops, times = [], []
    for q in queries:
        t = time.perf_counter()
        tops.append(_top(vectors @ q, k))
        times.append((time.perf_counter() - t) * 1000)
    return np.array(tops), times


def exact_batched(vectors: np.ndarray, queries: np.ndarray, k: int = TOP_K, chunk: int = 100) -> float:
    """Per-query ms, amortised, of exact search for all queries in matmuls of `chunk` queries."""
    t = time.perf_counter()
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ vectors.T
        for row in scores:
            _top(row, k)
    return (time.perf_counter() - t) * 1000 / len(queries)


def tutorial_way(path: Path, queries: np.ndarray, k: int = TOP_K) -> tuple[list[float], float]:
    """The classic code: load the whole HDF5, then np.dot + argsort per query; (per-query ms, load s)."""
    import h5py

    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        feats = f["dataset_1"][:]
        f["dataset_2"][:]  # the names too, as the tutorial loads them
    load_s = time.perf_counter() - t
    times = []
    for q in queries:
        t = time.perf_counter()
        np.argsort(np.dot(feats, q))[::-1][:k]
        times.append((time.perf_counter() - t) * 1000)
    return times, load_s
