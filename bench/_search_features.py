"""The search features' figures for bench/search.py: filtered search, batches, near-duplicate groups.

- Filtered search: every row of a size's collection carries `meta.shard = row % 10`, declared as an int
  scalar field (indexed); a filter on one shard keeps 10% of the catalogue. Per-query p50 of the filtered
  search (through the declared field, and through the JSON path `meta["shard"]` for comparison) against
  the unfiltered p50 on the same collection, plus the filtered recall@10 against exact search over that
  shard. Goal: filtered p50 within 2x of unfiltered.
- Batches: 16 photos in one request (one extractor batch, one Milvus call) against the same 16 as
  sequential single requests, end to end through the search service. Goal: the batch >= 1.5x faster.
- Near-duplicate groups: a collection of broad VGG-like vectors with planted near-copies (groups of 2-3);
  `catalog.duplicates.find_groups` through the index against the brute-force N^2 scan
  (`brute_force_groups`): seconds of each and whether the groups are the same.
"""

from __future__ import annotations

import time

import numpy as np
import requests

from _common import result, value
from catalog import Catalog
from catalog.duplicates import brute_force_groups, find_groups
from catalog.filters import to_expression

SHARDS = 10
SHARD_FIELD = {"shard": "int"}


def shard_meta(first_row: int, n: int) -> list[dict]:
    """The meta of rows first_row .. first_row + n: their shard (10% of the catalogue each)."""
    return [{"shard": (first_row + i) % SHARDS} for i in range(n)]


def bench_filtered(cat: Catalog, vectors: np.ndarray, queries: np.ndarray, ann_ms: list[float], tag: str,
                   top_k: int = 10) -> None:
    """Filtered against unfiltered p50 on one collection; recall of the filtered search within its shard."""
    shard = 3
    declared = to_expression({"shard": shard}, SHARD_FIELD)
    json_path = to_expression({"shard": shard})
    rows = np.arange(len(vectors))
    keep = rows[rows % SHARDS == shard]
    truth = [keep[np.argpartition(-(vectors[keep] @ q), top_k)[:top_k]] for q in queries]
    for expr, name in ((declared, "scalar"), (json_path, "json")):
        for q in queries[:10]:  # warm up
            cat.search(q[None, :], top_k=top_k, with_meta=False, filter=expr)
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            hits = cat.search(q[None, :], top_k=top_k, with_meta=False, filter=expr)[0]
            times.append((time.perf_counter() - t) * 1000)
            found.append({int(h["name"][4:11]) for h in hits})
        recall = float(np.mean([len(f & set(t.tolist())) / top_k for f, t in zip(found, truth)]))
        result(f"search_filtered_{name}_p50_{tag}", float(np.median(times)), float(np.median(ann_ms)), "ms",
               higher_is_better=False)
        value(f"search_filtered_{name}_recall_at_10_{tag}", recall)


def bench_batch(search_url: str, photos: list[tuple[str, bytes]], repeats: int, size: int = 16) -> None:
    """`size` photos in one request against `size` sequential single requests, end to end."""
    batch = [photos[i % len(photos)] for i in range(size)]
    session = requests.Session()

    def one_request() -> float:
        t = time.perf_counter()
        resp = session.post(search_url + "/v1/search", files=[("image", (n, d)) for n, d in batch],
                            data={"top_k": 10}, timeout=300)
        resp.raise_for_status()
        assert len(resp.json()["queries"]) == size
        return time.perf_counter() - t

    def singles() -> float:
        t = time.perf_counter()
        for name, data in batch:
            session.post(search_url + "/v1/search", files={"image": (name, data)}, data={"top_k": 10},
                         timeout=120).raise_for_status()
        return time.perf_counter() - t

    one_request(), singles()  # warm up both paths
    batched, single = [], []
    for _ in range(repeats):  # alternate, so drift on a shared machine weighs on both alike
        batched.append(one_request())
        single.append(singles())
    result(f"search_batch_{size}_images", float(np.median(batched)) * 1000, float(np.median(single)) * 1000, "ms",
           higher_is_better=False)


def planted_duplicates(vectors: np.ndarray, rng: np.random.Generator, share: float = 0.01,
                       noise: float = 0.01) -> np.ndarray:
    """A copy of `vectors` where `share` of the rows are re-drawn as near-copies (groups of 2-3) of others."""
    v = vectors.copy()
    n = len(v)
    sources = rng.choice(n, size=int(n * share / 2.5), replace=False)
    free = np.setdiff1d(np.arange(n), sources)
    rng.shuffle(free)
    used = 0
    for s in sources:
        for _ in range(int(rng.integers(1, 3))):
            j = free[used]
            used += 1
            copy = v[s] * (1 + noise * rng.standard_normal(v.shape[1]))
            v[j] = np.abs(copy) / np.linalg.norm(copy)
    return v


def bench_duplicates(cat: Catalog, vectors: np.ndarray, tag: str, threshold: float = 0.95) -> None:
    """find_groups through the index against the brute-force scan: seconds and whether the groups agree."""
    names = [f"img_{i:07d}.jpg" for i in range(len(vectors))]
    t = time.perf_counter()
    ours = [g.names for g in find_groups(cat, threshold)]
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    exact = brute_force_groups(names, vectors, threshold)
    exact_s = time.perf_counter() - t
    same = ours == exact
    found = {tuple(g) for g in ours}
    agree = sum(tuple(g) in found for g in exact) / max(len(exact), 1)
    print(f"INFO duplicates {tag}: {len(exact)} groups by the scan, {len(ours)} through the index; "
          f"{agree:.4f} of the scan's groups found exactly", flush=True)
    result(f"duplicates_{tag}", ours_s, exact_s, "s", higher_is_better=False)
    value(f"duplicates_same_groups_{tag}", int(same))
    value(f"duplicates_groups_found_{tag}", agree)
