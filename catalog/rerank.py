"""The second stage of compact modes: a coarse search's candidates re-ranked by exact cosine with their
floats (binary codes' Hamming search; IVF_SQ8 / IVF_PQ, whose quantised distances misorder close
neighbours: 0.90 and 0.52-0.81 recall@10 without it on 20k feature-like 256-d vectors, any nprobe).

The floats come with the hits (IVF_SQ8 / IVF_PQ return their `vector` field) or, in binary mode, from the
floats collection (catalog.modes). Scores are the cosine of the stored (L2-normalised)
vectors with the normalised query: the same scores a float collection gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from catalog import schema as S


# Binary codes fetch at least this many candidates: short Hamming lists lose the most to ties in distance.
MIN_CODE_CANDIDATES = 100


def candidates(spec: S.IndexSpec, params: dict[str, Any] | None, depth: int) -> int:
    """How many coarse hits to fetch for `depth` (top_k + offset) results: `candidates` per result (binary
    codes: at least MIN_CODE_CANDIDATES), at most Milvus's limit. Quantised float distances have no ties,
    and each candidate's floats cost a read (the chunk cache's, where the index holds no raw vectors:
    ~0.6 ms each at 10M), so IVF_SQ8 / IVF_PQ fetch exactly `candidates` x depth."""
    per = float({**spec.search_params, **(params or {})}.get("candidates", 20))
    floor = MIN_CODE_CANDIDATES if spec.code_bits else 0
    return int(min(S.MAX_CANDIDATES, max(depth, floor, round(per * depth))))


def rerank(query: np.ndarray, hits: list[dict], floats: np.ndarray, top_k: int, offset: int = 0,
           min_score: float | None = None) -> list[dict]:
    """Milvus hits (META_FIELD in their entity) with their float vectors (`floats`, one row per hit) as
    `{"name", "score", "meta"}` by exact cosine, best first, after `offset`, at most `top_k`, scoring at
    least `min_score`."""
    if not hits:
        return []
    entities = [h.get("entity") or {} for h in hits]
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    q = q / (np.linalg.norm(q) or 1.0)
    scores = np.asarray(floats, dtype=np.float32) @ q
    order = np.argsort(-scores, kind="stable")
    out = []
    for i in order[offset:offset + top_k]:
        if min_score is not None and scores[i] < min_score:
            break
        out.append({"name": hits[i]["id"], "score": float(scores[i]), "meta": entities[i].get(S.META_FIELD) or {}})
    return out
