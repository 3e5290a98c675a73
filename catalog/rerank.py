"""The second stage of compact modes: a coarse search's candidates re-ranked by exact cosine with their
floats (binary codes' Hamming search; IVF_SQ8 / IVF_PQ, whose quantised distances misorder close
neighbours: 0.90 and 0.52-0.81 recall@10 without it on 20k feature-like 256-d vectors, any nprobe).

A binary-code collection keeps each float32 vector as base64 text (catalog.schema.FLOATS_FIELD), returned
with the coarse search's hits, so one Milvus call gives candidates and their floats. Scores are the cosine
of the stored (L2-normalised) vectors with the normalised query: the same scores a float collection gives.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from catalog import schema as S


def floats_to_text(vectors: np.ndarray) -> list[str]:
    """Each row as base64 of its little-endian float32 bytes (FLOATS_FIELD's values)."""
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    return [base64.b64encode(r.tobytes()).decode("ascii") for r in rows]


def text_to_floats(texts: list[str], dim: int) -> np.ndarray:
    """The inverse of floats_to_text: (len(texts), dim) float32."""
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    raw = b"".join(base64.b64decode(t) for t in texts)
    return np.frombuffer(raw, dtype="<f4").reshape(len(texts), dim).astype(np.float32)


def candidates(spec: S.IndexSpec, params: dict[str, Any] | None, depth: int) -> int:
    """How many Hamming hits to fetch for `depth` (top_k + offset) results: `candidates` per result, at
    least 100 (short lists lose the most to ties in Hamming distance), at most Milvus's limit."""
    per = float({**spec.search_params, **(params or {})}.get("candidates", 20))
    return int(min(S.MAX_CANDIDATES, max(depth, 100, round(per * depth))))


def rerank(query: np.ndarray, hits: list[dict], dim: int, top_k: int, offset: int = 0,
           min_score: float | None = None) -> list[dict]:
    """Milvus hits (with their floats, FLOATS_FIELD text or the VECTOR_FIELD itself, and META_FIELD in their
    entity) as `{"name", "score", "meta"}` by exact cosine, best first, after `offset`, at most `top_k`,
    scoring at least `min_score`."""
    if not hits:
        return []
    entities = [h.get("entity") or {} for h in hits]
    if S.FLOATS_FIELD in entities[0]:
        floats = text_to_floats([e[S.FLOATS_FIELD] for e in entities], dim)
    else:
        floats = np.asarray([e[S.VECTOR_FIELD] for e in entities], dtype=np.float32)
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    q = q / (np.linalg.norm(q) or 1.0)
    scores = floats @ q
    order = np.argsort(-scores, kind="stable")
    out = []
    for i in order[offset:offset + top_k]:
        if min_score is not None and scores[i] < min_score:
            break
        out.append({"name": hits[i]["id"], "score": float(scores[i]), "meta": entities[i].get(S.META_FIELD) or {}})
    return out
