"""What every backbone provides, and the pieces they share (weights record, Keras cache, fingerprint).

A backbone is a feature model the extractor can serve: its name (`EXTRACTOR_MODEL`), vector size, how
images are prepared for it, where its weights come from, and how its Keras model is built. Vectors from
two backbones (or two weights of one) are never comparable; the fingerprint says which made a vector.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class WeightsError(RuntimeError):
    """The selected weights cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Preprocessing:
    """How image bytes become model input: resize filter, pixel normalisation, and their version.

    `normalization` is one of `preprocessing.NORMALIZATIONS` (Keras's caffe and torch modes, or
    `lite`: (x - 127) / 128, the EfficientNet-Lite reference's). `version` goes into the fingerprint:
    bump it when either changes what the model sees.
    """

    resample: str  # "nearest" (the classic Keras load_img) or "bilinear" (PIL's, antialiased when shrinking)
    normalization: str
    version: str


@dataclass(frozen=True)
class Weights:
    """A backbone's weights, resolved and read: where from, a digest of the numbers, and the numbers."""

    name: str  # imagenet | hed-vgg16 | path
    path: Path
    digest: str  # sha256 of the arrays (or of the file, where the file is loaded by Keras itself)
    arrays: Any = field(repr=False, default=None)  # backbone-specific: what `build` needs
    layout: str = ""


class Backbone(ABC):
    """A feature model: `build(input_size, weights)` gives a Keras model (N, s, s, 3) -> (N, dim)."""

    name: str
    dim: int
    pooling: str  # "max" or "avg": global pooling over the feature layer
    feature_layer: str
    preprocessing: Preprocessing
    gflops_224: float  # multiply-adds x 2 per 224x224 image, for roofline figures
    weights_choices: tuple[str, ...]  # named weights it accepts besides a file path and `auto`

    @abstractmethod
    def imagenet_cached(self) -> bool:
        """Whether ImageNet weights are on this machine without any download."""

    @abstractmethod
    def resolve_weights(self, spec: str) -> Weights:
        """`EXTRACTOR_WEIGHTS` (a name from `weights_choices`, a path, or `auto`) -> Weights, or WeightsError."""

    @abstractmethod
    def build(self, input_size: int, weights: Weights):
        """The Keras model with `weights` loaded, under the current Keras dtype policy."""

    def fingerprint(self, weights_digest: str, input_size: int, precision: str) -> str:
        """Short stable id of everything that changes the vectors; vectors with another id are not comparable."""
        parts = {
            "architecture": self.name,
            "weights": weights_digest,
            "layer": self.feature_layer,
            "pooling": self.pooling,
            "input_size": int(input_size),
            "preprocessing": self.preprocessing.version,
            "precision": precision,
            "normalized": "l2",
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:16]}"


def pooled_model(base, feature_layer: str, pooling: str, name: str):
    """`base` cut at `feature_layer`, globally max- or average-pooled: the model a fingerprint describes.

    The same two constants (`Backbone.feature_layer`, `Backbone.pooling`) build the model and go into the
    fingerprint, so the fingerprint cannot say one thing while the model does another.
    """
    import keras

    pools = {"max": keras.layers.GlobalMaxPooling2D, "avg": keras.layers.GlobalAveragePooling2D}
    if pooling not in pools:
        raise ValueError(f"pooling must be max or avg, not {pooling!r}")
    features = base.get_layer(feature_layer).output
    return keras.Model(base.inputs, pools[pooling](name=f"global_{pooling}_pool")(features), name=name)


def keras_cache_dir() -> Path:
    """Keras's cache directory, computed as Keras does ($KERAS_HOME, else ~/.keras, else /tmp/.keras)."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


def keras_cached_file(file_name: str) -> Path:
    """Where Keras's `get_file(..., cache_subdir='models')` keeps `file_name`."""
    return keras_cache_dir() / "models" / file_name


def file_md5(path: Path) -> str:
    """md5 of a file, as Keras's `file_hash` for its application weights."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def arrays_digest(arrays: list[tuple[str, Any]]) -> str:
    """sha256 of named arrays (name, shape, float32 bytes) in the given order: same numbers, same digest."""
    import numpy as np

    h = hashlib.sha256()
    for name, a in arrays:
        h.update(name.encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()


def cached_imagenet_file(model: str, file_name: str, md5: str) -> Path:
    """The Keras-cached ImageNet file of `model`, hash-checked; WeightsError says how to get it."""
    path = keras_cached_file(file_name)
    if not path.is_file():
        raise WeightsError(
            f"EXTRACTOR_MODEL={model} with ImageNet weights needs {path}. On a machine with internet run "
            f"`make weights` (or `python -m extractor_service fetch-weights {model}`) and copy the file there, "
            "or set EXTRACTOR_WEIGHTS to its path."
        )
    if file_md5(path) != md5:
        raise WeightsError(f"{path} does not match Keras's md5 {md5}: delete it and fetch it again")
    return path
