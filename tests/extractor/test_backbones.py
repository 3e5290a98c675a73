"""Backbones: EfficientNet-Lite0 fidelity to its PyTorch reference, the safe .pth reader, the registry and
`auto`, ResNet50/DenseNet121 from weights files, preprocessing per backbone, start-up errors."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from extractor_service import backbones as B
from extractor_service.backbones import efficientnet_lite0 as E
from extractor_service.backbones.base import WeightsError
from extractor_service.backbones.torch_legacy import TorchFileError, read_state_dict
from extractor_service.preprocessing import decode_image, load_image, normalize
from tests.extractor.torch_files import write_legacy_pth

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "efficientnet_lite0.npz"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def lite0_weights():
    return E.EFFICIENTNET_LITE0.resolve_weights("imagenet")


# -- EfficientNet-Lite0 against the PyTorch reference ----------------------------------------------------

def test_lite0_vectors_logits_and_top1_match_the_pytorch_reference(reference, lite0_weights):
    model = E.build_efficientnet_lite0(224, include_top=True)
    E.set_weights(model, lite0_weights.arrays)
    x = normalize(reference["images_uint8"], "lite")
    pooled, logits = (np.asarray(a) for a in model.predict(x, verbose=0))
    vectors = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    assert np.abs(vectors - reference["vectors"]).max() <= 1e-4
    assert np.abs(pooled - reference["pooled"]).max() <= 1e-3
    np.testing.assert_array_equal(logits.argmax(axis=1), reference["top5"][:, 0])
    # The sample photos are what they are: chelsea -> Egyptian cat, coffee -> espresso, camera -> tripod.
    top1 = dict(zip(reference["names"], logits.argmax(axis=1)))
    assert (top1["chelsea.png"], top1["coffee.png"], top1["camera.png"]) == (285, 967, 872)


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_the_service_model_gives_the_reference_vectors(reference, lite0_weights, runtime):
    """The extractor's own path (either runtime, batches of any size) equals the reference within 1e-4."""
    from extractor_service.model import load_feature_model

    model = load_feature_model(E.EFFICIENTNET_LITE0, lite0_weights, 224, runtime=runtime)
    assert model.dim == 1280 and model.runtime == runtime
    x = normalize(reference["images_uint8"], "lite")
    vectors = np.concatenate([model(x[:7]), model(x[7:8]), model(x[8:])])
    assert vectors.shape == (20, 1280) and vectors.dtype == np.float32
    assert np.abs(vectors - reference["vectors"]).max() <= 1e-4


def test_lite0_decoding_is_pil_bilinear_like_the_reference(reference):
    """Bytes of a photo at its own size, decoded for Lite0, equal the reference's PIL bilinear resize."""
    import io

    from PIL import Image

    from devstack.sample_images import skimage_photos

    photo = next(p for p in skimage_photos() if p.name == reference["names"][4])
    img = Image.open(photo).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    ours = decode_image(buf.getvalue(), 224, E.EFFICIENTNET_LITE0.preprocessing.resample)
    np.testing.assert_array_equal(ours, reference["images_uint8"][4])


# -- the legacy .pth reader ------------------------------------------------------------------------------

def test_reader_round_trips_a_legacy_file(tmp_path):
    state = {"conv.weight": np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32),
             "bn.num_batches_tracked": np.array(7, dtype=np.int64),
             "strided": np.arange(12, dtype=np.float32)[::3]}
    out = read_state_dict(write_legacy_pth(tmp_path / "m.pth", state))
    assert list(out) == list(state)
    for k in state:
        np.testing.assert_array_equal(out[k], state[k])
        assert out[k].shape == state[k].shape


def test_package_weights_read_as_a_plain_state_dict(lite0_weights):
    state = read_state_dict(lite0_weights.path)
    assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert all(isinstance(v, np.ndarray) for v in state.values())


def _legacy_prefix() -> bytes:
    return b"".join(pickle.dumps(h, protocol=2) for h in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


def test_reader_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    # A pickle that calls os.system when unpickled naively.
    evil.write_bytes(_legacy_prefix() + b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(TorchFileError, match="refusing to load os.system"):
        read_state_dict(evil)
    assert not marker.exists()
    header_evil = tmp_path / "header.pth"
    header_evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(TorchFileError, match="refusing"):
        read_state_dict(header_evil)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["not-pickle", "zip", "truncated", "huge-storage", "wrong-magic"])
def test_reader_rejects_files_that_are_not_what_they_claim(tmp_path, lite0_weights, case):
    path = tmp_path / f"{case}.pth"
    if case == "not-pickle":
        path.write_bytes(b"this is a text file, not weights\n")
    elif case == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"")
    elif case == "truncated":
        path.write_bytes(lite0_weights.path.read_bytes()[:-1000])
    elif case == "huge-storage":
        good = write_legacy_pth(tmp_path / "g.pth", {"w": np.zeros(4, np.float32)}).read_bytes()
        path.write_bytes(good.replace(struct.pack("<q", 4), struct.pack("<q", 1 << 40)))
    else:
        path.write_bytes(pickle.dumps(12345, protocol=2) + b"rest")
    with pytest.raises(TorchFileError) as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def test_a_pth_of_another_model_is_a_clear_weights_error(tmp_path):
    other = write_legacy_pth(tmp_path / "resnet.pth", {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})
    with pytest.raises(WeightsError, match="not usable EfficientNet-Lite0 weights: no _conv_stem.weight"):
        E.EFFICIENTNET_LITE0.resolve_weights(str(other))
    state = read_state_dict(E.package_weights_path())
    state["_conv_head.weight"] = state["_conv_head.weight"][:640]
    wrong = write_legacy_pth(tmp_path / "narrow.pth", state)
    with pytest.raises(WeightsError, match=r"_conv_head.weight has shape \(640, 320, 1, 1\)"):
        E.EFFICIENTNET_LITE0.resolve_weights(str(wrong))


def test_a_pth_path_with_the_same_numbers_has_the_same_digest(tmp_path, lite0_weights):
    copy = write_legacy_pth(tmp_path / "copy.pth", read_state_dict(lite0_weights.path))
    resolved = E.EFFICIENTNET_LITE0.resolve_weights(str(copy))
    assert (resolved.name, resolved.digest) == ("path", lite0_weights.digest)


# -- registry, auto, fingerprints --------------------------------------------------------------------------

def test_registry_dims_and_fingerprints_name_the_architecture():
    assert {n: b.dim for n, b in B.BACKBONES.items()} == {
        "vgg16": 512, "resnet50": 2048, "densenet121": 1024, "efficientnet-lite0": 1280}
    prints = {b.fingerprint("0" * 64, 224, "fp32") for b in B.BACKBONES.values()}
    assert len(prints) == 4
    assert all(fp.startswith(name + "-") for fp, name in zip(sorted(prints), sorted(B.BACKBONES)))


def test_vgg16_fingerprint_is_unchanged_from_the_vgg16_only_releases():
    """Collections and HDF5 files made before backbones became a choice stay searchable."""
    hed = B.VGG16.resolve_weights("hed-vgg16")
    assert B.VGG16.fingerprint(hed.digest, 224, "fp32") == "vgg16-67449ef037a7d847"


def test_auto_serves_lite0_offline_and_vgg16_when_its_imagenet_file_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    backbone, why = B.pick_backbone("auto", "auto")
    assert backbone.name == "efficientnet-lite0" and "no VGG16 ImageNet weights" in why
    assert B.pick_backbone("auto", "hed-vgg16")[0].name == "vgg16"
    assert B.pick_backbone("auto", "/x/mine.h5")[0].name == "vgg16"
    assert B.pick_backbone("auto", "/x/mine.pth")[0].name == "efficientnet-lite0"
    assert B.pick_backbone("DenseNet121", "auto")[0].name == "densenet121"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    backbone, why = B.pick_backbone("auto", "auto")
    assert backbone.name == "vgg16" and "in the Keras cache" in why


@pytest.mark.parametrize("model, weights, message", [
    ("vgg19", "auto", "EXTRACTOR_MODEL='vgg19' is not one of auto, vgg16, resnet50, densenet121, efficientnet-lite0"),
    ("resnet50", "auto", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("densenet121", "imagenet", "make weights"),
    ("efficientnet-lite0", "hed-vgg16", "hed-vgg16 is a VGG16 backbone"),
    ("resnet50", "hed-vgg16", "hed-vgg16 is a VGG16 backbone"),
    ("efficientnet-lite0", "/no/such.pth", "is not imagenet, auto, or an existing file"),
])
def test_start_up_errors_say_what_to_fix(tmp_path, monkeypatch, model, weights, message):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        B.resolve_model(model, weights)
    assert message in str(info.value)


def test_config_refuses_an_unknown_model():
    from extractor_service.config import ExtractorConfig

    with pytest.raises(ValueError, match="EXTRACTOR_MODEL must be one of auto, vgg16"):
        ExtractorConfig.from_env({"EXTRACTOR_MODEL": "inception"})
    assert ExtractorConfig.from_env({"EXTRACTOR_MODEL": "ResNet50"}).model == "resnet50"


# -- ResNet50 / DenseNet121 (weights files of their architecture; ImageNet files need `make weights`) -------

def _keras_weights_file(tmp_path, constructor: str) -> Path:
    """A legacy-h5 no-top weights file of the architecture, as Keras's own ImageNet files are laid out."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    model = getattr(keras.applications, constructor)(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / f"{constructor}.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


@pytest.mark.parametrize("name, constructor, module", [("resnet50", "ResNet50", "resnet50"),
                                                        ("densenet121", "DenseNet121", "densenet")])
def test_keras_application_backbones_serve_their_own_preprocessing(tmp_path, varied, name, constructor, module):
    import importlib

    import keras

    from extractor_service.model import FeatureModel

    backbone = B.get_backbone(name)
    weights = backbone.resolve_weights(str(_keras_weights_file(tmp_path, constructor)))
    model = FeatureModel(backbone, weights, 32)
    prep = backbone.preprocessing
    batch = np.stack([load_image(d, 32, resample=prep.resample, normalization=prep.normalization)
                      for d in list(varied.values())[:3]])
    vectors = model(batch)
    assert vectors.shape == (3, backbone.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # Normalisation equals Keras's own preprocess_input for this application, bit for bit.
    pixels = np.stack([decode_image(d, 32, prep.resample) for d in list(varied.values())[:3]]).astype(np.float32)
    keras_app = importlib.import_module(f"keras.applications.{module}")
    np.testing.assert_array_equal(normalize(pixels, prep.normalization), keras_app.preprocess_input(pixels.copy()))
    # And the file's weights are what the model computes with (a plain Keras model from the file agrees).
    plain = getattr(keras.applications, constructor)(include_top=False, weights=str(weights.path),
                                                      pooling="avg", input_shape=(32, 32, 3))
    expected = plain.predict(batch, verbose=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(vectors - expected).max() <= 1e-5
    # OpenVINO, the CPU runtime by default, runs the same model to the same vectors.
    from extractor_service.model import OpenVINOFeatureModel

    assert np.abs(OpenVINOFeatureModel(backbone, weights, 32)(batch) - expected).max() <= 1e-5


def test_a_weights_file_of_another_architecture_is_refused(tmp_path):
    vgg = _keras_weights_file(tmp_path, "VGG16")
    with pytest.raises(WeightsError, match="holds no layer 'conv5_block3_out'"):
        B.get_backbone("resnet50").resolve_weights(str(vgg))
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"nope")
    with pytest.raises(WeightsError, match="is not an HDF5 weights file"):
        B.get_backbone("densenet121").resolve_weights(str(not_h5))
