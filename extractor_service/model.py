"""The feature model: a backbone's Keras model behind one compiled function, batches in, unit vectors out.

One compiled function with a fixed input signature (any batch of size x size x 3 float32) is traced once
at warm-up and reused for every batch, so requests never retrace. It runs on the Keras backend in use:
TensorFlow (the default; `tf.function`, XLA on GPUs) or JAX (`KERAS_BACKEND=jax`, `jax.jit` of the
model's stateless call), for GPU machines that have JAX but no TensorFlow GPU build. GPUs are used when
present (TensorFlow with memory growth; JAX without preallocating most of the GPU); bf16/fp16 use Keras
mixed precision (their own fingerprint). On JAX, fp32 compiles with matmul precision `highest` (true float32
convolutions, not TF32), so its vectors stay within 1e-4 of the CPU's under the same fingerprint; the JAX
path also takes batches that are already on the device (`jax.Array`, e.g. images decoded on the GPU).

On CPUs in fp32 the same Keras model is handed to OpenVINO's CPU plugin when it is installed (the
extractor's requirements include it): `load_feature_model` picks the runtime (`EXTRACTOR_RUNTIME`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time

import numpy as np

from extractor_service.backbones import Backbone, Weights
from extractor_service.backbones.base import KERAS_POLICY

log = logging.getLogger(__name__)


def configure_devices() -> list[str]:
    """The GPUs the Keras backend will use (TensorFlow: memory growth on each, so one process does not take all)."""
    import keras

    if keras.backend.backend() == "jax":
        # JAX would otherwise reserve 75% of each GPU's memory when it first touches it (only then is this
        # variable read): like memory growth under TensorFlow, so another process (a benchmark's service, a
        # second replica) can share the GPU. XLA_PYTHON_CLIENT_PREALLOCATE=true keeps JAX's default.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised (e.g. a second model in tests)
            log.debug("memory growth not set on %s: %s", gpu.name, exc)
    return [g.name for g in gpus]


def build_model(backbone: Backbone, weights: Weights, input_size: int, precision: str = "fp32"):
    """The backbone's Keras model with its weights, built under the precision's Keras dtype policy."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        return backbone.build(input_size, weights)
    finally:
        keras.config.set_dtype_policy(previous)


JAX_MATMUL_PRECISION_ENV = "EXTRACTOR_JAX_MATMUL_PRECISION"


def jax_matmul_precision(precision: str) -> str | None:
    """The matmul/convolution precision the JAX path compiles with: `highest` for fp32, JAX's default otherwise.

    JAX's default lets XLA run float32 convolutions on GPUs in TF32 (a 10-bit mantissa), which moves vectors
    by more than the 1e-4 that the fp32 fingerprint promises on every device; `highest` keeps them float32.
    `EXTRACTOR_JAX_MATMUL_PRECISION` overrides it (`default`: JAX's own choice; or `high`, `highest`,
    `tensorfloat32`, ...), e.g. to measure what TF32 would gain. bf16/fp16 compute in their own dtype anyway.
    """
    value = os.environ.get(JAX_MATMUL_PRECISION_ENV, "").strip().lower()
    if value:
        return None if value == "default" else value
    return "highest" if precision == "fp32" else None


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Row-wise `feat / np.linalg.norm(feat)` in float32, as the classic code; zero rows stay zero."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0).astype(np.float32)


class FeatureModel:
    """Batches of preprocessed (N, size, size, 3) float32 images -> (N, dim) L2-normalised float32 vectors."""

    def __init__(self, backbone: Backbone, weights: Weights, input_size: int = 224, precision: str = "fp32",
                 jit_compile: bool | None = None):
        import keras

        self.backend = keras.backend.backend()
        self.gpus = configure_devices()
        self.backbone = backbone
        self.input_size = input_size
        self.precision = precision
        self.dim = backbone.dim
        self.model = build_model(backbone, weights, input_size, precision)
        if jit_compile is None:
            jit_compile = bool(self.gpus)  # XLA pays off on GPUs; on CPU oneDNN is as fast without it
        self._device_array = None  # the JAX array type: batches of it stay on the device
        if self.backend == "jax":
            import jax

            self.matmul_precision = jax_matmul_precision(precision)
            self._infer = _jax_function(self.model, self.matmul_precision)
            self._device_array = jax.Array
            jit_compile = True  # jax.jit compiles one program per input shape, like XLA under TensorFlow
        else:
            self._infer = _tf_function(self.model, input_size, jit_compile)
        # XLA compiles one program per input shape: pad batches up to a power of two so a handful of
        # shapes, all compiled at warm-up, serve every batch size. Without XLA (CPU) padding only costs.
        self.pad_batches = jit_compile
        self.device = "GPU" if self.gpus else "CPU"
        self.runtime = self.backend  # "tensorflow" or "jax": what runs the compiled function

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns unit-length float32 vectors, one row per input row."""
        if self._device_array is not None and isinstance(batch, self._device_array):
            return self._call_on_device(batch)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n = len(batch)
        if self.pad_batches and n & (n - 1):
            padded = np.zeros((1 << n.bit_length(),) + batch.shape[1:], np.float32)
            padded[:n] = batch
            batch = padded
        return l2_normalize(np.asarray(self._infer(batch))[:n])

    def _call_on_device(self, batch) -> np.ndarray:
        """JAX: a batch already on the device (e.g. decoded there) is padded there; only vectors come back."""
        import jax.numpy as jnp

        batch = batch.astype(jnp.float32)
        n = batch.shape[0]
        if self.pad_batches and n & (n - 1):
            batch = jnp.pad(batch, ((0, (1 << n.bit_length()) - n), (0, 0), (0, 0), (0, 0)))
        return l2_normalize(np.asarray(self._infer(batch))[:n])

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


def _tf_function(model, input_size: int, jit_compile: bool):
    import tensorflow as tf

    spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name="images")

    @tf.function(input_signature=[spec], jit_compile=jit_compile, reduce_retracing=True)
    def infer(images):
        return tf.cast(model(images, training=False), tf.float32)

    return infer


def _jax_function(model, matmul_precision: str | None = None):
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def infer(trainable, non_trainable, images):
        outputs, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        return outputs.astype(jnp.float32)

    def call(images):
        # The precision is read when a shape is traced and is part of jit's cache key. The setting is
        # thread-local, so every call sets it: warm-up threads and the batcher run the same programs.
        scope = jax.default_matmul_precision(matmul_precision) if matmul_precision else contextlib.nullcontext()
        with scope:
            return infer(trainable, non_trainable, images)

    return call


class OpenVINOFeatureModel:
    """The same Keras model, converted to OpenVINO and run by its CPU plugin in float32.

    Precision is pinned to f32 (OpenVINO would otherwise pick bf16 on CPUs that have it), so vectors stay
    within 1e-4 of TensorFlow's and keep the fp32 fingerprint (measured: under 1e-6). One stream with the
    LATENCY hint: every call uses all cores, so one image alone is as fast as it can be; calls are serialised
    (the compiled model's call is not re-entrant; the extractor runs one at a time under OpenVINO).
    """

    runtime = "openvino"

    def __init__(self, backbone: Backbone, weights: Weights, input_size: int = 224, precision: str = "fp32"):
        ov = import_openvino()
        if precision != "fp32":
            raise RuntimeError(f"EXTRACTOR_RUNTIME=openvino runs fp32 only. Received: precision={precision}")
        keras_model = FeatureModel(backbone, weights, input_size, "fp32")
        converted = ov.convert_model(keras_model.model, input=[(-1, input_size, input_size, 3)])
        self._compiled = ov.Core().compile_model(
            converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        self.backbone, self.input_size, self.precision, self.dim = backbone, input_size, precision, backbone.dim
        self.device, self.gpus, self.pad_batches = "CPU", [], False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns unit-length float32 vectors, one row per input row."""
        out = self._compiled(np.ascontiguousarray(batch, dtype=np.float32))[0]
        return l2_normalize(out)

    warm_up = FeatureModel.warm_up


# OpenVINO's model converter's modules that report usage (each binds `tm` at import).
_OVC_TELEMETRY_USERS = ("convert_impl", "telemetry_utils", "utils", "main")


def import_openvino():
    """The openvino module, with its model converter's usage reporting off.

    `openvino.convert_model` sends usage events to Intel's analytics (and writes a client id under ~/intel)
    unless a consent file in the home folder says no; a service must not call out on its own. The
    converter falls back to its own no-op stub where the openvino_telemetry package cannot be imported, so
    that package is hidden before openvino first loads, and the stub is put in place where it already had.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # None: `import openvino_telemetry` fails
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeError("EXTRACTOR_RUNTIME=openvino needs the openvino package: pip install openvino") from None
    stub = importlib.import_module("openvino.tools.ovc.telemetry_stub")
    for name in _OVC_TELEMETRY_USERS:
        module = sys.modules.get(f"openvino.tools.ovc.{name}")
        if module is not None and hasattr(module, "tm"):
            module.tm = stub
    return ov


RUNTIMES = ("auto", "tensorflow", "openvino")


def choose_runtime(runtime: str, precision: str, gpus: list[str]) -> tuple[str, str]:
    """The runtime that will run the model ("tensorflow", meaning the Keras backend, or "openvino"), and why.

    `auto`: OpenVINO on CPUs in fp32 when it is installed, the Keras backend otherwise (GPUs, bf16/fp16,
    KERAS_BACKEND=jax). Same model, same weights, vectors within 1e-6 of TensorFlow's; OpenVINO's CPU
    plugin is the faster CPU runtime: model calls of 8 images on a 2-core AVX2 EPYC (2026-12-06), OpenVINO
    against two TensorFlow calls at once, images/s: VGG16 6.1 / 5.0, ResNet50 23.9 / 17.4, DenseNet121
    28.1 / 19.9, EfficientNet-Lite0 124 / 66 (the service end to end: bench/extract.py, README).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"EXTRACTOR_RUNTIME must be auto, tensorflow or openvino. Received: {runtime!r}")
    if runtime != "auto":
        return runtime, f"EXTRACTOR_RUNTIME={runtime}"
    import keras

    if keras.backend.backend() != "tensorflow":
        return "tensorflow", f"auto: KERAS_BACKEND={keras.backend.backend()} runs the model itself"
    if gpus:
        return "tensorflow", "auto: a GPU is present (TensorFlow with XLA)"
    if precision != "fp32":
        return "tensorflow", f"auto: precision {precision} (OpenVINO is used for fp32 only)"
    if importlib.util.find_spec("openvino") is None:
        return "tensorflow", "auto: openvino is not installed (pip install openvino: faster on CPUs)"
    return "openvino", "auto: CPU, fp32, openvino installed"


def load_feature_model(backbone: Backbone, weights: Weights, input_size: int = 224, precision: str = "fp32",
                       runtime: str = "auto") -> "FeatureModel | OpenVINOFeatureModel":
    """The backbone's feature model on the runtime `choose_runtime` picks (not warmed up yet); its
    `runtime` and `runtime_why` attributes say which and why."""
    chosen, why = choose_runtime(runtime, precision, configure_devices())
    model = OpenVINOFeatureModel if chosen == "openvino" else FeatureModel
    feature_model = model(backbone, weights, input_size, precision)
    feature_model.runtime_why = why
    return feature_model
