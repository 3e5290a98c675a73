"""The vectors bench/search.py searches: clustered, non-negative, unit vectors shaped like real CNN
features (VGG16 max pooling, EfficientNet-Lite0 average pooling), and i.i.d. Gaussian ones (the worst case).

`FeatureLikeVectors` draws them reproducibly:

    profile  ~ Gamma(0.6, 1)^dim                          per-channel typical activation (some channels quiet)
    centre_c = profile * Gamma(a, 1/a)^dim * Bernoulli(1-s)^dim   one cluster per ~100 vectors
    x        = centre_c * Gamma(b, 1/b)^dim, L2-normalised       multiplicative jitter keeps x >= 0

Clusters are picked with Zipf-like weights; queries are fresh draws from the same clusters. Presets:
- `calibrated` (512-d, a=20, b=60): matched to hed-vgg16 features of the sample photos (random-pair cosine
  ~0.94, nearest ~0.99): what the offline VGG16 gives.
- `broad` (512-d, a=1, b=4, s=0.2): ImageNet-VGG16-like spread (random-pair ~0.34, nearest ~0.91).
- `effnet` (1280-d): calibrated at the start of each run to EfficientNet-Lite0 features (ImageNet weights)
  of the sample photos and crops of them (`calibrate_effnet`), the default offline model.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PRESETS = {
    "calibrated": {"dim": 512, "cluster_shape": 20.0, "point_shape": 60.0, "silent": 0.0},
    "broad": {"dim": 512, "cluster_shape": 1.0, "point_shape": 4.0, "silent": 0.2},
}


class FeatureLikeVectors:
    """Clustered, non-negative, L2-normalised vectors (see module doc)."""

    def __init__(self, n_clusters: int, dim: int = 512, seed: int = 0, cluster_shape: float = 1.0,
                 point_shape: float = 4.0, silent: float = 0.2):
        rng = np.random.default_rng(seed)
        profile = rng.gamma(0.6, 1.0, dim)
        self.centres = (profile * rng.gamma(cluster_shape, 1 / cluster_shape, (n_clusters, dim))
                        * (rng.random((n_clusters, dim)) > silent)).astype(np.float32)
        weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
        self.weights = weights / weights.sum()
        self.point_shape = point_shape

    @classmethod
    def preset(cls, name: str, n: int, seed: int, presets: dict | None = None) -> "FeatureLikeVectors":
        """A generator of `n` vectors' clusters (one per ~100) with a preset's shape."""
        return cls(n_clusters=max(100, n // 100), seed=seed, **(presets or PRESETS)[name])

    @property
    def dim(self) -> int:
        return self.centres.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` vectors, float32, rows of unit length."""
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, 50_000):
            m = min(50_000, n - start)
            idx = rng.choice(len(self.centres), size=m, p=self.weights)
            jitter = rng.gamma(self.point_shape, 1 / self.point_shape, (m, self.dim)).astype(np.float32)
            x = self.centres[idx] * jitter
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start:start + m] = x
        return out


def gaussian_vectors(n: int, rng: np.random.Generator, dim: int = 512) -> np.ndarray:
    """i.i.d. Gaussian, L2-normalised: no structure (the worst case)."""
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def stats(x: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """(mean cosine of random pairs, mean cosine of each query's nearest neighbour), from samples."""
    s = q[:100] @ x[:50_000].T
    return float(s.mean()), float(s.max(axis=1).mean())


def describe(x: np.ndarray, q: np.ndarray) -> str:
    pair, nearest = stats(x, q)
    return f"random-pair cosine {pair:.3f}, nearest-neighbour cosine {nearest:.3f}"


def effnet_features(photos: int | None = None) -> np.ndarray:
    """EfficientNet-Lite0 vectors of the sample photos (the first `photos`) and 8 crops/flips of each (what
    a catalogue of related photos looks like to the offline default model)."""
    from PIL import Image

    from devstack.sample_images import skimage_photos
    from extractor_service.backbones import resolve_model
    from extractor_service.model import FeatureModel
    from extractor_service.preprocessing import load_image

    model = resolve_model("efficientnet-lite0", "imagenet")
    fm = FeatureModel(model.backbone, model.weights, 224)
    prep = model.backbone.preprocessing
    images = []
    for path in skimage_photos()[:photos]:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        variants = [img, img.transpose(Image.FLIP_LEFT_RIGHT)]
        for f in (0.9, 0.75, 0.6):
            cw, ch = int(w * f), int(h * f)
            for dx, dy in ((0, 0), (w - cw, h - ch)):
                variants.append(img.crop((dx, dy, dx + cw, dy + ch)))
        for v in variants:
            buf = io.BytesIO()
            v.save(buf, format="PNG")
            images.append(load_image(buf.getvalue(), 224, resample=prep.resample, normalization=prep.normalization))
    return np.concatenate([fm(np.stack(images[i:i + 16])) for i in range(0, len(images), 16)])


def calibrate_effnet(features: np.ndarray, seed: int = 0, sample: int = 5_000) -> dict:
    """The `effnet` preset: generator shapes whose random-pair and nearest-neighbour cosines come closest
    to those of real EfficientNet-Lite0 features (nearest measured among other photos' variants excluded:
    each photo's own crops are its near neighbours, as in a catalogue of related shots)."""
    sims = features @ features.T
    np.fill_diagonal(sims, -1)
    target = (float(sims[sims > -1].mean()), float(sims.max(axis=1).mean()))
    rng = np.random.default_rng(seed)
    best, best_err = None, float("inf")
    for a in (0.5, 1.0, 2.0, 4.0, 8.0):
        for b in (2.0, 4.0, 8.0, 16.0, 32.0):
            for s in (0.0, 0.2, 0.5):
                gen = FeatureLikeVectors(200, features.shape[1], seed, a, b, s)
                x, q = gen.sample(sample, rng), gen.sample(100, rng)
                got = stats(x, q)
                err = abs(got[0] - target[0]) + abs(got[1] - target[1])
                if err < best_err:
                    best, best_err = {"dim": features.shape[1], "cluster_shape": a, "point_shape": b, "silent": s}, err
    print(f"INFO EfficientNet-Lite0 features of {len(features)} photos and crops: random-pair cosine "
          f"{target[0]:.3f}, nearest {target[1]:.3f}; effnet preset {best} (error {best_err:.3f})", flush=True)
    return best


def write_h5(path: Path, vectors: np.ndarray) -> None:
    """The classic layout: dataset_1 vectors, dataset_2 names as fixed-length bytes."""
    import h5py

    names = np.array([f"img_{i:07d}.jpg".encode() for i in range(len(vectors))], dtype="S16")
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset_1", data=vectors)
        f.create_dataset("dataset_2", data=names)
