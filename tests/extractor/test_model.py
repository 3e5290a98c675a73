"""The feature models against Keras's VGG16 predict: TensorFlow's compiled function (batch padding, no
retracing, mixed precision) and the OpenVINO runtime the extractor runs on CPUs by default."""

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


@pytest.fixture(scope="module")
def tf_model(hed):
    """The TensorFlow runtime's model (the in-process extractor runs OpenVINO on this CPU)."""
    return FeatureModel(VGG16, hed, SMALL)


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_batched_model_equals_classic_predict(tf_model, small_extractor, batch, runtime):
    model = tf_model if runtime == "tensorflow" else small_extractor.model
    assert model.runtime == runtime  # the in-process extractor: EXTRACTOR_RUNTIME=auto on a CPU
    classic = ClassicPipeline(SMALL)
    expected = l2_normalize(classic.model.predict(batch, verbose=0))
    ours = model(batch)
    assert ours.shape == (6, 512) and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-6)
    # One image alone gives the same vector as in a batch: batching never changes results.
    assert np.abs(model(batch[2:3])[0] - ours[2]).max() <= 1e-5


def test_padding_to_a_power_of_two_does_not_change_vectors(tf_model, batch):
    model = tf_model
    plain = model(batch[:5])
    model.pad_batches = True
    try:
        padded = model(batch[:5])
    finally:
        model.pad_batches = False
    assert padded.shape == (5, 512)
    assert np.abs(padded - plain).max() <= 1e-5


def test_no_retracing_across_batch_sizes(tf_model, batch):
    model = tf_model
    for n in (1, 3, 6, 2):
        model(batch[:n])
    assert model._infer.experimental_get_tracing_count() == 1


def test_bf16_is_close_but_not_identical(hed, tf_model, batch):
    bf16 = FeatureModel(VGG16, hed, SMALL, "bf16")
    vectors = bf16(batch)
    assert vectors.dtype == np.float32
    cosine = (vectors * tf_model(batch)).sum(axis=1)
    assert cosine.min() > 0.98
    assert bf16.model.get_layer("block1_conv1").compute_dtype == "bfloat16"


def test_l2_normalize_keeps_zero_rows_finite():
    out = l2_normalize(np.array([[3, 4], [0, 0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0, 0]])


def test_openvino_refuses_other_precisions(hed):
    from extractor_service.model import OpenVINOFeatureModel

    with pytest.raises(RuntimeError, match="fp32 only"):
        OpenVINOFeatureModel(VGG16, hed, SMALL, "bf16")
