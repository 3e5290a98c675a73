"""The retrieval metrics of bench/quality.py: precision@k with self-exclusion, the rank of each query's
relevant item (ties counted against it), recall@1, MRR, and what the near-duplicate misses matched instead.

Pure numpy (no TensorFlow): tests/bench checks them on hand-made examples.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from _quality_data import NearDupSet


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean over all items of the share of their k most cosine-similar *other* items with the same label.

    `vectors` are unit rows; each item is excluded from its own neighbours.
    """
    vectors = np.asarray(vectors, np.float32)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)  # self-exclusion
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def ranks_of_relevant(sims: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of each query's relevant catalogue column in `sims` (queries x catalogue).

    Ties count against the relevant item, so a model giving everything the same score ranks it last.
    """
    rel = sims[np.arange(len(sims)), relevant][:, None]
    return 1 + (sims > rel).sum(axis=1) + (sims == rel).sum(axis=1) - 1


def recall_at_1(ranks: np.ndarray) -> float:
    """Share of queries whose relevant item is ranked first."""
    return float(np.mean(np.asarray(ranks) == 1))


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """Mean of 1 / rank of the relevant item."""
    return float(np.mean(1.0 / np.asarray(ranks, np.float64)))


def miss_sources(top1: np.ndarray, neardup: NearDupSet) -> str:
    """'source count, ...' of catalogue columns that won instead of the original (most frequent first)."""
    names = neardup.catalogue_names + ["fashion-mnist"] * len(neardup.fmnist_distractors)
    counts = Counter(names[int(i)].split("[")[0] for i in top1)
    return ", ".join(f"{name} {n}" for name, n in counts.most_common())
