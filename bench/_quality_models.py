"""The models of bench/quality.py: the candidates (every backbone x weights that resolves here, raw pixels,
untrained VGG16), their stable labels, and the Embedder that turns encoded images into unit vectors through
the service's own `load_image` and `FeatureModel`, timing the seconds spent in the model.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extractor_service.backbones import BACKBONES, Backbone, Weights, WeightsError
from extractor_service.preprocessing import decode_image, load_image

BATCH = 16
RAW_SIZE = 32
UNTRAINED_SEED = 1234
OFFLINE_DEFAULT, RAW, HED, UNTRAINED = "efficientnet-lite0", "raw-pixels", "vgg16-hed", "vgg16-untrained"


def raw_pixel_vectors(pixels: np.ndarray) -> np.ndarray:
    """(N, h, w, c) uint8 -> (N, h*w*c) float32: flattened, minus each vector's mean, L2-normalised."""
    x = pixels.reshape(len(pixels), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)  # brightness offsets alone should not make images similar
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass
class Candidate:
    """One row of the table: a backbone with weights, or a reference point."""

    label: str
    backbone: Backbone | None = None  # None: raw pixels
    weights: Weights | None = None


def model_label(backbone: str, weights: str) -> str:
    """Stable names for RESULT lines: the backbone, with the weights where a backbone has several."""
    if backbone == "vgg16":
        return {"hed-vgg16": HED}.get(weights, f"vgg16-{weights}")
    return backbone if weights == "imagenet" else f"{backbone}-{weights}"


def untrained_vgg16_weights() -> Weights:
    """VGG16 conv kernels and biases from Keras's default initialisers, seeded: a fixed random network."""
    import keras

    from extractor_service.backbones.vgg16 import VGG16_CONV_LAYERS, weights_digest

    keras.utils.set_random_seed(UNTRAINED_SEED)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    arrays = {n: tuple(np.asarray(a, np.float32) for a in model.get_layer(n).get_weights())
              for n in VGG16_CONV_LAYERS}
    del model
    keras.backend.clear_session()
    return Weights(name="untrained", path=Path(f"<keras default init, seed {UNTRAINED_SEED}>"), arrays=arrays,
                   digest=weights_digest(arrays), layout="random")


def candidates(wanted: set[str] | None) -> list[Candidate]:
    """Raw pixels, then every backbone x weights that resolves here, then untrained VGG16; skips printed."""
    out = [Candidate(RAW)]
    for backbone in BACKBONES.values():
        for spec in backbone.weights_choices:
            label = model_label(backbone.name, spec)
            if wanted is not None and label not in wanted:
                continue
            try:
                out.append(Candidate(label, backbone, backbone.resolve_weights(spec)))
            except WeightsError as exc:
                print(f"skipped {label}: {exc}", flush=True)
    if wanted is None or UNTRAINED in wanted:
        out.append(Candidate(UNTRAINED, BACKBONES["vgg16"], None))  # weights made once TensorFlow is needed
    return [c for c in out if wanted is None or c.label in wanted]


class Embedder:
    """Encoded images -> unit vectors for one candidate, counting the seconds spent in the model."""

    def __init__(self, cand: Candidate, size: int):
        self.cand, self.size, self.model_s, self.model_images = cand, size, 0.0, 0
        self.model = None
        if cand.backbone is not None:
            from extractor_service.model import FeatureModel

            weights = cand.weights if cand.weights is not None else untrained_vgg16_weights()
            self.model = FeatureModel(cand.backbone, weights, size, precision="fp32")
            self.model.warm_up(BATCH)  # first-call tracing must not count as throughput

    def __call__(self, images: Sequence[bytes], timed: bool = False) -> np.ndarray:
        if self.model is None:
            return raw_pixel_vectors(np.stack([decode_image(b, RAW_SIZE, "bilinear") for b in images]))
        prep = self.cand.backbone.preprocessing
        out = []
        for i in range(0, len(images), BATCH):
            x = np.stack([load_image(b, self.size, resample=prep.resample, normalization=prep.normalization)
                          for b in images[i:i + BATCH]])
            start = time.perf_counter()
            out.append(self.model(x))
            if timed:
                self.model_s += time.perf_counter() - start
                self.model_images += len(x)
        return np.concatenate(out)

    def close(self) -> None:
        if self.model is not None:
            import keras

            self.model = None
            keras.backend.clear_session()  # one model at a time: VGG16 weights are 0.5 GB with its graph
            gc.collect()
