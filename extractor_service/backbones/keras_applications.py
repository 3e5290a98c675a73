"""ResNet50 and DenseNet121 from Keras applications, as the classic tutorial suggests for better features.

Both without their classifier, global average pooling (Keras's `pooling='avg'`), their own Keras
`preprocess_input` (ResNet50: caffe; DenseNet121: torch), ImageNet weights from the Keras cache (fetched by
`make weights` / the Docker build, never at run time) or from an HDF5 file of the same architecture.
Keras loads the file itself (`load_weights`), so the weights digest is the file's sha256.
"""

from __future__ import annotations

from pathlib import Path

from extractor_service.backbones.base import (
    Backbone, Preprocessing, Weights, WeightsError, cached_imagenet_file, file_sha256, keras_cached_file,
    pooled_model,
)


class KerasApplicationBackbone(Backbone):
    """One `keras.applications` constructor with its no-top ImageNet file and a layer that proves the layout."""

    weights_choices = ("imagenet",)
    pooling = "avg"

    def __init__(self, name: str, constructor: str, dim: int, feature_layer: str, normalization: str,
                 imagenet_file: str, imagenet_md5: str, imagenet_url: str, gflops_224: float):
        self.name = name
        self.constructor = constructor
        self.dim = dim
        self.feature_layer = feature_layer
        # Bilinear (antialiased) resize: these backbones have no legacy vectors to stay equal to.
        self.preprocessing = Preprocessing("bilinear", normalization, f"pil-bilinear-{normalization}-v1")
        self.imagenet_file = imagenet_file
        self.imagenet_md5 = imagenet_md5
        self.imagenet_url = imagenet_url
        self.gflops_224 = gflops_224

    def imagenet_cached(self) -> bool:
        return keras_cached_file(self.imagenet_file).is_file()

    def resolve_weights(self, spec: str) -> Weights:
        spec = (spec or "auto").strip()
        if spec in ("auto", "imagenet"):
            path, name = cached_imagenet_file(self.name, self.imagenet_file, self.imagenet_md5), "imagenet"
        elif spec == "hed-vgg16":
            raise WeightsError(f"EXTRACTOR_WEIGHTS=hed-vgg16 is a VGG16 backbone; EXTRACTOR_MODEL={self.name} "
                               "takes imagenet, auto, or a weights file of its architecture")
        else:
            path, name = Path(spec).expanduser(), "path"
            if not path.is_file():
                raise WeightsError(f"EXTRACTOR_WEIGHTS={spec!r} is not imagenet, auto, or an existing file")
            _check_h5_has_layer(path, self.feature_layer, self.name)
        return Weights(name=name, path=path, digest=file_sha256(path), layout="keras-h5")

    def build(self, input_size: int, weights: Weights):
        import keras

        constructor = getattr(keras.applications, self.constructor)
        base = constructor(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
        try:
            base.load_weights(str(weights.path))
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, KeyError, OSError ... for a bad file
            raise WeightsError(f"{weights.path} does not fit {self.name} without its top: {exc}") from None
        return pooled_model(base, self.feature_layer, self.pooling, self.name)


def _check_h5_has_layer(path: Path, layer: str, model: str) -> None:
    """Fail at start-up, before TensorFlow loads, when the file is not HDF5 or not this architecture."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            names = set(root.keys()) | {n.decode() if isinstance(n, bytes) else str(n)
                                        for n in root.attrs.get("layer_names", [])}
            if "layers" in f:  # Keras 3 .weights.h5: layer groups are named by class, not by layer name
                return
    except OSError as exc:
        raise WeightsError(f"{path} is not an HDF5 weights file: {exc}") from None
    if layer.split("/")[0] not in names:
        raise WeightsError(f"{path} holds no layer {layer!r}: it is not {model} weights")


RESNET50 = KerasApplicationBackbone(
    "resnet50", "ResNet50", 2048, "conv5_block3_out", "caffe",
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "4d473c1dd8becc155b73f8504c6f6626",
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    gflops_224=7.7,
)
DENSENET121 = KerasApplicationBackbone(
    "densenet121", "DenseNet121", 1024, "relu", "torch",
    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "30ee3e1110167f948a6b9946edeeb738",
    "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    gflops_224=5.7,
)
