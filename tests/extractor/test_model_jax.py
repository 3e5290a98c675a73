"""FeatureModel's JAX path (KERAS_BACKEND=jax, for GPU machines with JAX but no TensorFlow) vs TensorFlow's vectors.

bench/data/gpu_extract_reference.npz holds VGG16 vectors of 8 JPEGs computed by the TensorFlow path on a CPU
with seeded random weights (`.venv/bin/python bench/_gpu_extract.py --make-reference`); the JAX path must give
the same vectors within 1e-4. The project's .venv has no jax, so there this module is skipped; run it in an
environment that has jax and keras:

    KERAS_BACKEND=jax python -m pytest tests/extractor/test_model_jax.py
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("jax") is None:
    pytest.skip("jax is not installed in this interpreter (the project's .venv runs TensorFlow): run this module "
                "with KERAS_BACKEND=jax where jax and keras are installed", allow_module_level=True)
if "keras" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "jax")  # keras would otherwise try TensorFlow, its default
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip(f"keras runs its {keras.backend.backend()} backend in this process: run this module with "
                "KERAS_BACKEND=jax", allow_module_level=True)

REFERENCE = Path(__file__).resolve().parents[2] / "bench" / "data" / "gpu_extract_reference.npz"
SIZE = 64


def seeded_vgg16_file(path: Path, seed: int = 16) -> Path:
    """VGG16 conv weights from `numpy.random.default_rng(seed)`, as bench/_gpu_weights.py writes them."""
    import h5py

    from extractor_service.backbones.vgg16 import EXPECTED_SHAPES, VGG16_CONV_LAYERS

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for i, layer in enumerate(VGG16_CONV_LAYERS):
            cin, cout = EXPECTED_SHAPES[layer]
            limit = math.sqrt(6.0 / (9 * cin))
            group = f.create_group(f"layers/{'conv2d' if i == 0 else f'conv2d_{i}'}/vars")
            group["0"] = ((rng.random((3, 3, cin, cout)) * 2.0 - 1.0) * limit).astype(np.float32)
            group["1"] = ((rng.random(cout) * 2.0 - 1.0) * 0.1).astype(np.float32)
    return path


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as z:
        raw, offsets = z["jpeg_bytes"].tobytes(), z["jpeg_offsets"]
        return {"blobs": [raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)],
                "vectors": z[f"vec__vgg16__{SIZE}"], "meta": json.loads(str(z["meta"]))}


def test_jax_vectors_equal_tensorflow_reference(tmp_path, reference):
    import jax.numpy as jnp

    from extractor_service.backbones.vgg16 import VGG16
    from extractor_service.model import FeatureModel
    from extractor_service.preprocessing import load_image

    weights = VGG16.resolve_weights(str(seeded_vgg16_file(tmp_path / "vgg16.weights.h5")))
    assert weights.digest == reference["meta"]["weights"]["vgg16"], \
        "seeded weights differ from the reference's: regenerate it (bench/_gpu_extract.py --make-reference)"
    batch = np.stack([load_image(b, SIZE) for b in reference["blobs"]])
    model = FeatureModel(VGG16, weights, SIZE, "fp32")
    assert model.backend == "jax" and model.pad_batches

    vectors = model(batch)
    assert vectors.shape == (8, 512) and vectors.dtype == np.float32
    assert np.abs(vectors - reference["vectors"]).max() <= 1e-4
    # A batch already on the device (as from GPU decoding) runs the same compiled function, padded there.
    on_device = model(jnp.asarray(batch[:5]))
    assert on_device.shape == (5, 512)
    assert np.abs(on_device - vectors[:5]).max() <= 1e-5


def test_fp32_compiles_with_highest_matmul_precision(monkeypatch):
    from extractor_service.model import JAX_MATMUL_PRECISION_ENV, jax_matmul_precision

    monkeypatch.delenv(JAX_MATMUL_PRECISION_ENV, raising=False)
    assert jax_matmul_precision("fp32") == "highest"  # not TF32: fp32 vectors stay within 1e-4 on GPUs
    assert jax_matmul_precision("bf16") is None
    monkeypatch.setenv(JAX_MATMUL_PRECISION_ENV, "default")
    assert jax_matmul_precision("fp32") is None
