"""VGG16 weights resolution (imagenet / hed-vgg16 / path / auto), file layouts, digest and fingerprint."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from extractor_service.backbones import vgg16 as W
from extractor_service.backbones.base import WeightsError
from tests.extractor.conftest import hed_arrays_independently


@pytest.fixture(scope="module")
def hed():
    return W.VGG16.resolve_weights("hed-vgg16")


def test_hed_backbone_maps_onto_vgg16_layers(hed):
    assert hed.name == "hed-vgg16" and hed.layout == "hed"
    expected = hed_arrays_independently()
    assert list(hed.arrays) == list(W.VGG16_CONV_LAYERS)
    for layer, (kernel, bias) in hed.arrays.items():
        np.testing.assert_array_equal(kernel, expected[layer][0])
        np.testing.assert_array_equal(bias, expected[layer][1])
    assert hed.arrays["block5_conv3"][0].shape == (3, 3, 512, 512)


def test_digest_is_stable_and_content_sensitive(hed):
    assert W.weights_digest(hed.arrays) == hed.digest
    changed = dict(hed.arrays)
    k, b = changed["block3_conv2"]
    k = k.copy()
    k[0, 0, 0, 0] += 1e-3
    changed["block3_conv2"] = (k, b)
    assert W.weights_digest(changed) != hed.digest


def test_fingerprint_changes_with_everything_that_changes_vectors(hed):
    base = W.VGG16.fingerprint(hed.digest, 224, "fp32")
    assert base == W.VGG16.fingerprint(hed.digest, 224, "fp32")
    assert base.startswith("vgg16-") and len(base) < 32
    others = {W.VGG16.fingerprint(hed.digest, 64, "fp32"), W.VGG16.fingerprint(hed.digest, 224, "bf16"),
              W.VGG16.fingerprint(hed.digest, 224, "fp16"), W.VGG16.fingerprint("0" * 64, 224, "fp32")}
    assert base not in others and len(others) == 4


def _write_keras_files(tmp_path, arrays):
    """The same arrays saved by Keras in its legacy h5 layout and its Keras 3 .weights.h5 layout."""
    from keras.applications import VGG16
    from keras.src.legacy.saving import legacy_h5_format

    model = VGG16(weights=None, include_top=False, pooling="max", input_shape=(32, 32, 3))
    for name, (kernel, bias) in arrays.items():
        model.get_layer(name).set_weights([kernel, bias])
    keras3 = tmp_path / "vgg.weights.h5"
    model.save_weights(keras3)
    legacy = tmp_path / "vgg_legacy.h5"
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return keras3, legacy


def test_weights_file_paths_in_keras_layouts_give_the_same_digest(tmp_path, hed):
    keras3, legacy = _write_keras_files(tmp_path, hed.arrays)
    for path, layout in ((keras3, "keras3"), (legacy, "keras-legacy")):
        resolved = W.VGG16.resolve_weights(str(path))
        assert (resolved.name, resolved.layout) == ("path", layout)
        assert resolved.digest == hed.digest  # same numbers, same fingerprint, whatever the file layout


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not imagenet, hed-vgg16, auto, or an existing file"):
        W.VGG16.resolve_weights(str(tmp_path / "nope.h5"))


def test_not_hdf5_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="not a VGG16 weights file"):
        W.VGG16.resolve_weights(str(bad))


def test_other_model_is_a_clear_error(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("dense/kernel", data=np.zeros((3, 3)))
    with pytest.raises(WeightsError, match="unrecognised layout"):
        W.VGG16.resolve_weights(str(other))


def test_wrong_shapes_are_a_clear_error(tmp_path, hed):
    path = tmp_path / "wrong.h5"
    with h5py.File(path, "w") as f:
        for layer, (kernel, bias) in hed.arrays.items():
            b, k = layer.split("_")
            idx = int(k[4:]) - 1
            g = f.create_group(f"{b}/layers/conv2d{'' if idx == 0 else f'_{idx}'}/vars")
            g["0"], g["1"] = (kernel[:, :, :, :8], bias[:8]) if layer == "block2_conv1" else (kernel, bias)
    with pytest.raises(WeightsError, match=r"block2_conv1 has kernel \(3, 3, 64, 8\)"):
        W.VGG16.resolve_weights(str(path))


def test_imagenet_missing_explains_offline_install(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        W.VGG16.resolve_weights("imagenet")
    msg = str(info.value)
    assert W.IMAGENET_NOTOP_FILE in msg and str(tmp_path / "models") in msg and "hed-vgg16" in msg


def test_auto_falls_back_to_hed_when_imagenet_is_not_cached(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with caplog.at_level("WARNING"):
        assert W.VGG16.resolve_weights("auto").name == "hed-vgg16"
    assert "using hed-vgg16" in caplog.text


def test_auto_picks_cached_imagenet_and_checks_its_hash(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / W.IMAGENET_NOTOP_FILE).write_bytes(b"a damaged download")
    with caplog.at_level("WARNING"), pytest.raises(WeightsError, match="does not match Keras's md5"):
        W.VGG16.resolve_weights("auto")
    assert "using imagenet" in caplog.text
