"""The baselines of bench/extract.py: the users' own Keras code, one image at a time and in batches.

Both decode every JPEG file with `keras.utils.load_img` (the backbone's resize filter: nearest for VGG16,
as the classic tutorial), preprocess, run the model in this process and L2-normalise; images/s are end to
end from JPEG files on disk, decoding included.

- `classic_loop`: the tutorial verbatim, `model.predict` on one image at a time.
- `batched_loop`: what a user processing a folder writes: `np.stack` batches of 8, 16 or 32 decoded images,
  one model call per batch. The model call is the fastest of the variants a competent user would write
  (`pick_variant` measures them on this machine): `model.predict(batch, verbose=0)`,
  `model.predict_on_batch(batch)` or calling the model, `model(batch, training=False)`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

# The model calls a user could write for a stacked batch, each returning a numpy (N, dim) array.
VARIANTS: dict[str, Callable] = {
    "predict": lambda model, x: model.predict(x, verbose=0),
    "predict_on_batch": lambda model, x: np.asarray(model.predict_on_batch(x)),
    "call": lambda model, x: np.asarray(model(x, training=False)),
}


def build_classic_model(model_name: str, weights_spec: str, size: int):
    """The backbone's Keras model as users build it, with the same weights the service resolves."""
    from extractor_service.backbones import resolve_model

    resolved = resolve_model(model_name, weights_spec)
    if resolved.backbone.name == "vgg16":  # the tutorial's own constructor, weights set by layer name
        from keras.applications import VGG16

        model = VGG16(weights=None, include_top=False, pooling="max", input_shape=(size, size, 3))
        for name, (kernel, bias) in resolved.weights.arrays.items():
            model.get_layer(name).set_weights([kernel, bias])
    else:
        model = resolved.backbone.build(size, resolved.weights)
    return model, resolved


def _preprocess(x: np.ndarray, backbone) -> np.ndarray:
    """Keras's vgg16.preprocess_input for VGG16; the backbone's own normalisation for the others (equal
    to Keras's preprocess_input for ResNet50 and DenseNet121, tested in tests/extractor/test_backbones.py)."""
    if backbone.name == "vgg16":
        from keras.applications.vgg16 import preprocess_input

        return preprocess_input(x)
    from extractor_service.preprocessing import normalize

    return normalize(x, backbone.preprocessing.normalization)


def _load(path: Path, size: int, backbone) -> np.ndarray:
    import keras

    img = keras.utils.load_img(path, target_size=(size, size), interpolation=backbone.preprocessing.resample)
    return keras.utils.img_to_array(img)


def classic_loop(model, paths: list[Path], size: int,
                 backbone) -> tuple[float, list[float], list[np.ndarray]]:
    """The users' code, one image at a time: (images/s, per-image seconds, vectors)."""
    latencies, vectors = [], []
    start = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        x = _preprocess(np.expand_dims(_load(path, size, backbone), 0), backbone)
        feat = model.predict(x, verbose=0)[0]
        vectors.append(feat / np.linalg.norm(feat))
        latencies.append(time.perf_counter() - t0)
    return len(paths) / (time.perf_counter() - start), latencies, vectors


def batched_loop(model, paths: list[Path], size: int, backbone, batch_size: int,
                 variant: str = "predict_on_batch") -> tuple[float, float, list[np.ndarray], float]:
    """The users' folder code: decode `batch_size` files, stack, one model call, normalise each row.

    Returns (images/s, seconds, vectors, CPU seconds of this process: all its threads, TensorFlow's too)."""
    call = VARIANTS[variant]
    vectors: list[np.ndarray] = []
    cpu, start = time.process_time(), time.perf_counter()
    for i in range(0, len(paths), batch_size):
        batch = _preprocess(np.stack([_load(p, size, backbone) for p in paths[i:i + batch_size]]), backbone)
        feats = call(model, batch)
        vectors.extend(feats / np.linalg.norm(feats, axis=1, keepdims=True))
    seconds = time.perf_counter() - start
    return len(paths) / seconds, seconds, vectors, time.process_time() - cpu


def pick_variant(model, size: int, batch_size: int, reps: int = 2) -> tuple[str, dict[str, float]]:
    """The fastest model call on this machine for a stack of `batch_size` images, and each one's images/s
    (model call only: decoding is the same code for all). Best of `reps` timed calls after one warm-up."""
    rng = np.random.default_rng(0)
    x = (rng.random((batch_size, size, size, 3), dtype=np.float32) * 255 - 120).astype(np.float32)
    speeds = {}
    with warnings.catch_warnings():  # model(x): Keras warns that the input is not named like the model's
        warnings.simplefilter("ignore", UserWarning)
        for name, call in VARIANTS.items():
            call(model, x)  # traces / builds what the variant caches
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                call(model, x)
                best = min(best, time.perf_counter() - t0)
            speeds[name] = batch_size / best
    return max(speeds, key=speeds.get), speeds
