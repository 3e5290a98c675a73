"""Binary codes of feature vectors, learned without labels: ITQ (Gong & Lazebnik, "Iterative Quantization",
CVPR 2011), the unsupervised cousin of the hash codes in Lin et al. (CVPR workshops 2015).

    x  (dim floats, L2-normalised) -> (x - mean) @ W (dim x bits: PCA to `bits` dimensions, then the ITQ
    rotation) -> sign -> `bits` bits, packed 8 to a byte, most significant bit first

which is the byte layout of Milvus's BINARY_VECTOR (numpy.packbits' default order). Hamming distance
between codes then ranks candidates roughly as cosine does between the vectors; the catalogue re-ranks
them exactly with the floats (catalog.rerank).

A `Projection` (mean and W) is learned once per collection from a sample of its own vectors and stored
with it (catalog.codes_store); every insert and every query goes through the same one. numpy only.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

CODE_BITS = (256, 512)  # what the loader offers: 1/64 and 1/32 of a 512-d float32 vector
ITQ_ITERATIONS = 50  # Gong & Lazebnik: the objective has flattened out by 50
_CHUNK = 8192  # rows per step of training: bounds its temporaries to a few MB


@dataclass(frozen=True)
class Projection:
    """The learned map from a vector to its code: `bits` = W.shape[1] bits, packed into bits // 8 bytes."""

    mean: np.ndarray  # (dim,) float32
    matrix: np.ndarray  # (dim, bits) float32: PCA components times the ITQ rotation

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def bits(self) -> int:
        return int(self.matrix.shape[1])

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """The real-valued codes (n, bits) whose signs are the bits."""
        x = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        return (x - self.mean) @ self.matrix

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Packed codes, (n, bits // 8) uint8, Milvus's BINARY_VECTOR layout (bit 1 = positive)."""
        return np.packbits(self.project(vectors) > 0, axis=1)

    def to_bytes(self) -> bytes:
        """The projection as an .npz file's bytes (what catalog.codes_store keeps)."""
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean.astype("<f4"), matrix=self.matrix.astype("<f4"))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Projection":
        """The projection `to_bytes` wrote; ValueError when the bytes are not one."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                mean, matrix = z["mean"].astype(np.float32), z["matrix"].astype(np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"not a stored projection: {exc}") from exc
        if matrix.ndim != 2 or mean.shape != (matrix.shape[0],) or matrix.shape[1] % 8:
            raise ValueError(f"bad projection shapes: mean {mean.shape}, matrix {matrix.shape}")
        return cls(mean, matrix)

    def digest(self) -> str:
        """sha256 of `to_bytes()`: recorded with the collection so a reader knows it has the right one."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def check_bits(bits: int, dim: int) -> None:
    """ValueError unless `bits` is a positive multiple of 8 no larger than `dim` (PCA keeps at most dim)."""
    if bits <= 0 or bits % 8:
        raise ValueError(f"code bits must be a positive multiple of 8, got {bits}")
    if bits > dim:
        raise ValueError(f"{bits}-bit codes need vectors of at least {bits} dimensions; these have {dim}")


def train_itq(sample: np.ndarray, bits: int, iterations: int = ITQ_ITERATIONS, seed: int = 0) -> Projection:
    """Learn an ITQ projection from `sample` (n x dim vectors, n >= bits is sensible; 100k is plenty).

    PCA keeps the `bits` directions of most variance; ITQ then rotates them so that the signs lose as
    little as possible (alternating: codes B = sign(V R), then R from the SVD of B^T V, the orthogonal
    Procrustes solution). Deterministic for a given sample and seed (the initial rotation is random).
    Memory: the PCA-projected sample (n x bits float32) besides the sample itself; everything else is
    done _CHUNK rows at a time, so the loader learns 512-bit codes from 100k vectors in well under 1 GB.
    """
    x = np.asarray(sample, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"ITQ needs a 2-d sample of at least 2 vectors, got shape {x.shape}")
    check_bits(bits, x.shape[1])
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    cov = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for start in range(0, len(x), _CHUNK):
        c = x[start:start + _CHUNK] - mean
        cov += c.T @ c
    eigenvalues, eigenvectors = np.linalg.eigh(cov / len(x))  # ascending
    pca = eigenvectors[:, np.argsort(eigenvalues)[::-1][:bits]].astype(np.float32)
    v = np.empty((len(x), bits), dtype=np.float32)
    for start in range(0, len(x), _CHUNK):
        v[start:start + _CHUNK] = (x[start:start + _CHUNK] - mean) @ pca
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
    rotation = rotation.astype(np.float32)
    for _ in range(iterations):
        btv = np.zeros((bits, bits), dtype=np.float64)
        for start in range(0, len(v), _CHUNK):
            part = v[start:start + _CHUNK]
            btv += np.where(part @ rotation >= 0, np.float32(1), np.float32(-1)).T @ part
        u, _, wt = np.linalg.svd(btv)
        rotation = (u @ wt).T.astype(np.float32)
    return Projection(mean, (pca.astype(np.float64) @ rotation).astype(np.float32))


def random_rotation(sample: np.ndarray, bits: int, seed: int = 0) -> Projection:
    """PCA then a random rotation, no ITQ: the baseline ITQ must beat (tests and benchmarks)."""
    return train_itq(sample, bits, iterations=0, seed=seed)


def hamming(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances of packed `codes` (n, bytes) to one packed `query` (bytes,)."""
    return np.unpackbits(np.bitwise_xor(codes, query[None, :]), axis=1).sum(axis=1)
