"""VGG16 feature model: Keras's VGG16 (include_top=False, pooling='max') with our resolved weights.

One compiled `tf.function` with a fixed input signature (any batch of size x size x 3 float32) is traced
once at warm-up and reused for every batch, so requests never retrace. GPUs are used when present, with
memory growth; bf16/fp16 use Keras mixed precision (their own fingerprint).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from extractor_service.weights import VGG16_CONV_LAYERS, ResolvedWeights

log = logging.getLogger(__name__)

KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def configure_devices() -> list[str]:
    """Enable memory growth on every GPU (so one process does not grab all memory); returns GPU names."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised (e.g. a second model in tests)
            log.debug("memory growth not set on %s: %s", gpu.name, exc)
    return [g.name for g in gpus]


def build_vgg16(input_size: int, precision: str = "fp32"):
    """Keras VGG16 without its top, global max pooling, no weights loaded (we load ours)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        return keras.applications.VGG16(
            include_top=False, weights=None, pooling="max", input_shape=(input_size, input_size, 3)
        )
    finally:
        keras.config.set_dtype_policy(previous)


def set_vgg16_weights(model, weights: ResolvedWeights | dict) -> None:
    """Copy kernels and biases into the model's 13 convolution layers, by Keras layer name."""
    arrays = weights.arrays if isinstance(weights, ResolvedWeights) else weights
    for name in VGG16_CONV_LAYERS:
        model.get_layer(name).set_weights(list(arrays[name]))


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Row-wise `feat / np.linalg.norm(feat)` in float32, as the classic code; zero rows stay zero."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0).astype(np.float32)


class FeatureModel:
    """Batches of preprocessed (N, size, size, 3) float32 images -> (N, 512) L2-normalised float32 vectors."""

    def __init__(self, weights: ResolvedWeights, input_size: int = 224, precision: str = "fp32",
                 jit_compile: bool | None = None):
        import tensorflow as tf

        self.gpus = configure_devices()
        self.input_size = input_size
        self.precision = precision
        self.dim = 512
        self.model = build_vgg16(input_size, precision)
        set_vgg16_weights(self.model, weights)
        if jit_compile is None:
            jit_compile = bool(self.gpus)  # XLA pays off on GPUs; on CPU oneDNN is as fast without it
        spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name="images")
        model = self.model

        @tf.function(input_signature=[spec], jit_compile=jit_compile, reduce_retracing=True)
        def infer(images):
            return tf.cast(model(images, training=False), tf.float32)

        self._infer = infer
        # XLA compiles one program per input shape: pad batches up to a power of two so a handful of
        # shapes, all compiled at warm-up, serve every batch size. Without XLA (CPU) padding only costs.
        self.pad_batches = jit_compile
        self.device = "GPU" if self.gpus else "CPU"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns unit-length float32 vectors, one row per input row."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n = len(batch)
        if self.pad_batches and n & (n - 1):
            padded = np.zeros((1 << n.bit_length(),) + batch.shape[1:], np.float32)
            padded[:n] = batch
            batch = padded
        return l2_normalize(self._infer(batch).numpy()[:n])

    def warm_up(self, max_batch_size: int = 1) -> float:
        """Trace once and run each batch shape that will be used; returns the seconds it took."""
        start = time.perf_counter()
        sizes = [1 << i for i in range(max_batch_size.bit_length()) if 1 << i <= max_batch_size]
        if not self.pad_batches:
            sizes = sorted({1, max_batch_size})  # oneDNN caches primitives per shape; warm the common ones
        elif sizes[-1] != max_batch_size:
            sizes.append(1 << max_batch_size.bit_length())
        for n in sizes:
            self(np.zeros((n, self.input_size, self.input_size, 3), np.float32))
        return time.perf_counter() - start


class OpenVINOFeatureModel:
    """The same Keras VGG16, converted to OpenVINO and run by its CPU plugin in float32 (optional runtime).

    Needs `pip install openvino`. Precision is pinned to f32 (OpenVINO would otherwise pick bf16 on CPUs
    that have it), so vectors stay within 1e-4 of the classic code and keep the fp32 fingerprint.
    """

    def __init__(self, weights: ResolvedWeights, input_size: int = 224, precision: str = "fp32"):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeError("EXTRACTOR_RUNTIME=openvino needs the openvino package: pip install openvino") from None
        if precision != "fp32":
            raise RuntimeError(f"EXTRACTOR_RUNTIME=openvino runs fp32 only. Received: precision={precision}")
        keras_model = FeatureModel(weights, input_size, "fp32")
        converted = ov.convert_model(keras_model.model, input=[(-1, input_size, input_size, 3)])
        self._compiled = ov.Core().compile_model(
            converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        self.input_size, self.precision, self.dim = input_size, precision, 512
        self.device, self.gpus, self.pad_batches = "CPU (OpenVINO)", [], False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns unit-length float32 vectors, one row per input row."""
        out = self._compiled(np.ascontiguousarray(batch, dtype=np.float32))[0]
        return l2_normalize(out)

    warm_up = FeatureModel.warm_up
