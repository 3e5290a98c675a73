"""Row checks: which rows of a file are stored, which are skipped, and why.

Reasons (the keys of the summary's "skipped" counts):

    wrong_dim       the vector has another length than the collection's dimension (vlen files)
    nan_or_inf      the vector holds NaN or +-Inf
    zero_vector     the vector is all zeros (it has no direction, so no cosine similarity)
    bad_name        the name is empty, not UTF-8, holds a NUL, or is longer than the schema allows
    duplicate_name  the name already appeared on an earlier row of the file: the first row wins

Valid vectors are L2-normalised (float32) before they are stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from catalog.schema import NAME_MAX_LENGTH

REASONS = ("wrong_dim", "nan_or_inf", "zero_vector", "bad_name", "duplicate_name")
CODES = {reason: code for code, reason in enumerate(REASONS, start=1)}  # 0 = valid


@dataclass
class CheckedChunk:
    """The rows of one chunk that passed, normalised, with their file row numbers, and the skip counts."""

    rows: np.ndarray  # int64 file row numbers of the valid rows
    names: list[str]
    vectors: np.ndarray  # float32, L2-normalised, len(names) x dim
    skipped: Counter


def decode_name(raw: bytes) -> str | None:
    """The name as text, or None when it is not a usable primary key."""
    if not raw or len(raw) > NAME_MAX_LENGTH or b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_names(raw: list[bytes]) -> list[str | None]:
    """`decode_name` of every name; one decode call for a chunk whose names are all usable (the usual case).

    Joined with NUL, which no usable name holds and which never completes a UTF-8 sequence, the chunk decodes
    and splits back into exactly its names if and only if each name decodes on its own.
    """
    if raw and min(map(len, raw)) > 0 and max(map(len, raw)) <= NAME_MAX_LENGTH:
        try:
            parts = b"\x00".join(raw).decode("utf-8").split("\x00")
        except UnicodeDecodeError:
            parts = []
        if len(parts) == len(raw):
            return parts  # type: ignore[return-value]
    return [decode_name(b) for b in raw]


def suspect_rows(name_chunks: Iterable[tuple[int, list[bytes]]]) -> np.ndarray:
    """Row numbers whose name hash occurs more than once (every occurrence, first ones included).

    Memory is 8 bytes per row (one hash per name), never the names themselves.
    """
    hashes = [np.fromiter((hash(n) for n in names), dtype=np.int64, count=len(names)) for _, names in name_chunks]
    if not hashes:
        return np.zeros(0, dtype=np.int64)
    all_hashes = np.concatenate(hashes)
    uniq, counts = np.unique(all_hashes, return_counts=True)
    repeated = uniq[counts > 1]
    if repeated.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.nonzero(np.isin(all_hashes, repeated))[0]


def duplicate_rows(layout_names: Iterable[tuple[int, list[bytes]]], reread) -> set[int]:
    """Rows to skip as duplicate_name (first occurrence wins).

    A hash pass over `layout_names` finds the few suspect rows; `reread(rows)` returns their real names,
    compared exactly, so a hash collision never drops a row.
    """
    rows = [int(r) for r in suspect_rows(layout_names)]
    if not rows:
        return set()
    seen: set[bytes] = set()
    dups: set[int] = set()
    for row, name in zip(rows, reread(rows)):
        if name in seen:
            dups.add(row)
        else:
            seen.add(name)
    return dups


SMALL_SUMSQ = 1e-30  # far above float32's subnormals (1.2e-38), where squares lose precision


def row_norms(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(finite, L2 norm) of each row of a float32 matrix; a norm is 0 only for an all-zero row.

    One fused pass (einsum: no n x dim temporaries) serves every row whose float32 sum of squares is finite
    and at least 1e-30, i.e. nearly all of them; the rest, holding NaN/Inf or values so large or small that
    their squares leave float32's range or precision (subnormals), are looked at again on their own, in
    float64.
    """
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        sumsq = np.einsum("ij,ij->i", mat, mat)
    finite = np.ones(len(mat), dtype=bool)
    odd = np.nonzero(~np.isfinite(sumsq) | (sumsq < SMALL_SUMSQ))[0]
    if odd.size:
        rows = mat[odd].astype(np.float64)
        finite[odd] = np.isfinite(rows).all(axis=1)
        scale = np.where(finite[odd], np.abs(rows).max(axis=1, initial=0.0), 0.0)  # 0 for all-zero rows
        safe = np.where(scale > 0, scale, 1.0)
        sumsq = sumsq.astype(np.float64)
        sumsq[odd] = np.einsum("ij,ij->i", rows / safe[:, None], rows / safe[:, None]) * safe**2
        sumsq[odd[~finite[odd]]] = np.nan
    return finite, np.sqrt(sumsq)


def normalised(mat: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Rows divided by their norms, in float32; rows whose norm is near float32's limits in float64."""
    with np.errstate(over="ignore"):  # a norm beyond float32's range: that row is redone below
        out = mat / norms[:, None].astype(np.float32)
    edge = np.nonzero((norms > 1e30) | (norms < 1e-15))[0]
    if edge.size:
        out[edge] = mat[edge].astype(np.float64) / np.asarray(norms[edge], dtype=np.float64)[:, None]
    return out


def check_chunk(
    start: int,
    names: list[bytes],
    vectors: np.ndarray | list[np.ndarray],
    dim: int,
    duplicates: set[int],
) -> CheckedChunk:
    """Check every row of a chunk (see the module doc for the reasons) and normalise the valid vectors."""
    n = len(names)
    skipped: Counter = Counter()
    reason: list[str | None] = [None] * n
    decoded = decode_names(names)
    for i, text in enumerate(decoded):
        if text is None:
            reason[i] = "bad_name"
        elif start + i in duplicates:
            reason[i] = "duplicate_name"

    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        if vectors.shape[1] != dim:
            mat = np.zeros((n, dim), dtype=np.float32)
            wrong = np.ones(n, dtype=bool)
        else:
            mat = np.asarray(vectors, dtype=np.float32)
            wrong = np.zeros(n, dtype=bool)
    else:  # variable-length rows: check each length
        mat = np.zeros((n, dim), dtype=np.float32)
        wrong = np.zeros(n, dtype=bool)
        for i, v in enumerate(vectors):
            if len(v) == dim:
                mat[i] = v
            else:
                wrong[i] = True
    finite, norms = row_norms(mat)
    # One reason per row, by priority (the first that applies wins), without a per-row Python loop:
    # assigned from the lowest priority up, so a higher one overwrites.
    code = np.zeros(n, dtype=np.int8)
    code[~(norms > 0)] = CODES["zero_vector"]
    code[~finite] = CODES["nan_or_inf"]
    code[wrong] = CODES["wrong_dim"]
    for i, r in enumerate(reason):
        if r is not None:
            code[i] = CODES[r]
    counts = np.bincount(code, minlength=len(REASONS) + 1)
    skipped.update({r: int(counts[c]) for r, c in CODES.items() if counts[c]})
    idx = np.nonzero(code == 0)[0]
    if idx.size == n:  # the usual case: no copy of the chunk before dividing
        out, kept_names = normalised(mat, norms), decoded
    else:
        out, kept_names = normalised(mat[idx], norms[idx]), [decoded[i] for i in idx]
    return CheckedChunk(
        rows=idx.astype(np.int64) + start,
        names=kept_names,  # type: ignore[arg-type]
        vectors=out.astype(np.float32, copy=False),
        skipped=skipped,
    )
