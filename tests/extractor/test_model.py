"""FeatureModel (the compiled function) against Keras's VGG16 predict; batch padding; mixed precision."""

from __future__ import annotations

import numpy as np
import pytest

from extractor_service.model import FeatureModel, l2_normalize
from extractor_service.preprocessing import load_image
from extractor_service.backbones.vgg16 import VGG16
from tests.extractor.conftest import SMALL, ClassicPipeline


@pytest.fixture(scope="module")
def hed():
    return VGG16.resolve_weights("hed-vgg16")


@pytest.fixture(scope="module")
def batch(varied):
    return np.stack([load_image(d, SMALL) for d in list(varied.values())[:6]])


def test_batched_compiled_function_equals_classic_predict(small_extractor, batch):
    classic = ClassicPipeline(SMALL)
    expected = l2_normalize(classic.model.predict(batch, verbose=0))
    ours = small_extractor.model(batch)
    assert ours.shape == (6, 512) and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-6)
    # One image alone gives the same vector as in a batch: batching never changes results.
    assert np.abs(small_extractor.model(batch[2:3])[0] - ours[2]).max() <= 1e-5


def test_padding_to_a_power_of_two_does_not_change_vectors(small_extractor, batch):
    model = small_extractor.model
    plain = model(batch[:5])
    model.pad_batches = True
    try:
        padded = model(batch[:5])
    finally:
        model.pad_batches = False
    assert padded.shape == (5, 512)
    assert np.abs(padded - plain).max() <= 1e-5


def test_no_retracing_across_batch_sizes(small_extractor, batch):
    model = small_extractor.model
    for n in (1, 3, 6, 2):
        model(batch[:n])
    assert model._infer.experimental_get_tracing_count() == 1


def test_bf16_is_close_but_not_identical(hed, small_extractor, batch):
    bf16 = FeatureModel(VGG16, hed, SMALL, "bf16")
    vectors = bf16(batch)
    assert vectors.dtype == np.float32
    cosine = (vectors * small_extractor.model(batch)).sum(axis=1)
    assert cosine.min() > 0.98
    assert bf16.model.get_layer("block1_conv1").compute_dtype == "bfloat16"


def test_l2_normalize_keeps_zero_rows_finite():
    out = l2_normalize(np.array([[3, 4], [0, 0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0, 0]])


def test_openvino_runtime_stays_within_1e4_of_tensorflow(hed, small_extractor, batch):
    pytest.importorskip("openvino", reason="optional CPU runtime: pip install openvino")
    from extractor_service.model import OpenVINOFeatureModel

    ov_model = OpenVINOFeatureModel(VGG16, hed, SMALL)
    vectors = ov_model(batch)
    assert vectors.shape == (6, 512)
    assert np.abs(vectors - small_extractor.model(batch)).max() <= 1e-4
    with pytest.raises(RuntimeError, match="fp32 only"):
        OpenVINOFeatureModel(VGG16, hed, SMALL, "bf16")
