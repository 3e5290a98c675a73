"""Near-duplicate groups of a catalogue, found with the index (never an N^2 scan).

Every stored vector is searched against the collection for its `neighbours` best hits, in batches, and the
hits at least `threshold` similar are kept; each such pair joins one group (union-find, so chains A~B~C
make one group). A plain top-k search and a client-side threshold give the same pairs as a Milvus range
search, and far cheaper per query with HNSW on Milvus 2.3 (bench/search.py compares them). Each group is
reported once, its members sorted by name, groups sorted by their first member. Shared by `python -m loader duplicates` and `GET /v1/duplicates`.

Cost: one query per image through the ANN index (several hundred images/s on 2 cores with HNSW at 100k).
An image whose `neighbours` hits are all above the threshold may have more: it is searched again with
WIDEN_FACTOR times the limit, until a hit falls below the threshold or Milvus's largest limit is reached,
so dense regions (hundreds of images chained above the threshold) link as the N^2 scan links them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from catalog import schema as S
from catalog.store import Catalog

DEFAULT_THRESHOLD = 0.95
DEFAULT_NEIGHBOURS = 16
SCAN_BATCH = 256
WIDEN_FACTOR = 8  # a capped image's next search asks for 8x the hits


@dataclass
class Group:
    """Images at least `threshold` similar to another member; `score` is the group's best pair score."""

    names: list[str]
    score: float = 0.0
    pairs: int = 0

    def to_dict(self) -> dict:
        return {"names": self.names, "size": len(self.names), "best_score": round(self.score, 6),
                "pairs": self.pairs}


@dataclass
class _UnionFind:
    parent: dict[str, str] = field(default_factory=dict)

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_groups(catalog: Catalog, threshold: float = DEFAULT_THRESHOLD, neighbours: int = DEFAULT_NEIGHBOURS,
                progress: Callable[[int], None] | None = None, index: S.IndexSpec | None = None,
                params: dict | None = None) -> list[Group]:
    """Every group of at least two images that are `threshold` similar; `progress(n)` after each batch."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity from -1 to 1, not {threshold}")
    uf = _UnionFind()
    best: dict[tuple[str, str], float] = {}
    spec = index or catalog.index_spec()
    for rows in catalog.iter_rows(SCAN_BATCH, with_vectors=True):
        names = [r[S.NAME_FIELD] for r in rows]
        vectors = np.asarray([r[S.VECTOR_FIELD] for r in rows], dtype=np.float32)
        limit = neighbours + 1  # +1: each image finds itself first
        todo = list(range(len(names)))
        while todo:
            hits = catalog.search(vectors[todo], top_k=limit, index=spec, params=params, with_meta=False,
                                  consistency_level="Strong")
            capped = []
            for i, found in zip(todo, hits):
                name = names[i]
                for h in found:
                    other = h["name"]
                    if other == name or h["score"] < threshold:
                        continue
                    pair = (min(name, other), max(name, other))
                    best[pair] = max(best.get(pair, -2.0), h["score"])
                    uf.union(name, other)
                if len(found) == limit and found[-1]["score"] >= threshold:
                    capped.append(i)  # every hit above the threshold: there may be more
            todo = capped if limit < S.MAX_CANDIDATES else []
            limit = min(limit * WIDEN_FACTOR, S.MAX_CANDIDATES)
        if progress:
            progress(len(rows))
    members: dict[str, set[str]] = {}
    for pair in best:
        for n in pair:
            members.setdefault(uf.find(n), set()).add(n)
    groups: dict[str, Group] = {root: Group(sorted(names)) for root, names in members.items()}
    for (a, _b), score in best.items():
        g = groups[uf.find(a)]
        g.pairs += 1
        g.score = max(g.score, score)
    return sorted(groups.values(), key=lambda g: g.names[0])


def brute_force_groups(names: list[str], vectors: np.ndarray, threshold: float) -> list[list[str]]:
    """The same groups by the N^2 scan (tests and the benchmark's baseline): exact, slow."""
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    uf = _UnionFind()
    linked: set[str] = set()
    for start in range(0, len(v), 256):  # 256 x N scores at a time: 100 MB at N = 100k
        sims = v[start:start + 256] @ v.T
        for i, j in zip(*np.nonzero(sims >= threshold)):
            a, b = names[start + i], names[j]
            if a != b:
                uf.union(a, b)
                linked.update((a, b))
    out: dict[str, list[str]] = {}
    for n in linked:
        out.setdefault(uf.find(n), []).append(n)
    return sorted(sorted(g) for g in out.values())


def page_after(groups: list[Group], after: str | None, limit: int) -> tuple[list[Group], str | None]:
    """The `limit` groups whose first member sorts after `after` (groups sorted by first member, as
    `find_groups` returns them); (page, cursor of the next page or None)."""
    firsts = [g.names[0] for g in groups]
    start = bisect.bisect_right(firsts, after) if after else 0
    page = groups[start:start + limit]
    return page, (page[-1].names[0] if page and start + limit < len(groups) else None)
