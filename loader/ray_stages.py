"""The stages of `extract --engine ray` that run on Ray's workers: read bytes, decode, run the model.

Each works on a batch (a dict of numpy columns, Ray Data's "numpy" batch format) and never raises for
one bad image: a row that fails gets a `reason` and a `message`, is carried through the later stages
untouched, and ends in the rejects file. The image code is the extractor service's own, imported here
inside the workers (so the loader's CLI never imports TensorFlow):

- decode: `extractor_service.preprocessing.decode_image` (limits, allow-listed formats, the backbone's
  resize) in CPU tasks; images travel to the model as uint8, a quarter of the bytes of float32;
- model: `preprocessing.normalize` and `extractor_service.model.load_feature_model` (the backbone registry,
  the weights resolution and the fingerprint) in `ModelActor`, one per GPU or per CPU slot.

`normalize(decode_image(...))` is exactly `load_image(...)`, what the service runs, so the vectors match.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from loader.sources import Source

log = logging.getLogger(__name__)

OK = ""  # the reason of a row that went through


def _column(values: list, dtype=object) -> np.ndarray:
    out = np.empty(len(values), dtype=dtype)
    out[:] = values
    return out


def read_batch(batch: dict[str, np.ndarray], source: Source) -> dict[str, np.ndarray]:
    """Add `data` (the file's bytes); a file that cannot be read gets reason `unreadable`."""
    data, reasons, messages = [], [], []
    for name in batch["name"]:
        try:
            data.append(source.read(str(name)))
            reasons.append(OK)
            messages.append("")
        except Exception as exc:  # noqa: BLE001 - missing file, permission, S3 error: one reject, not a failed job
            data.append(b"")
            reasons.append("unreadable")
            messages.append(f"{type(exc).__name__}: {exc}")
    return {"name": batch["name"], "shard": batch["shard"], "data": _column(data),
            "reason": _column(reasons), "message": _column(messages)}


def decode_batch(batch: dict[str, np.ndarray], input_size: int, resample: str, max_bytes: int,
                 max_pixels: int) -> dict[str, np.ndarray]:
    """Replace `data` by `image` ((N, s, s, 3) uint8, zeros for rejects); an ImageError is a reject."""
    from extractor_service.preprocessing import ImageError, decode_image

    images = np.zeros((len(batch["name"]), input_size, input_size, 3), np.uint8)
    reasons, messages = list(batch["reason"]), list(batch["message"])
    for i, blob in enumerate(batch["data"]):
        if reasons[i] != OK:
            continue
        try:
            images[i] = decode_image(blob, input_size, resample, max_bytes, max_pixels)
        except ImageError as exc:
            reasons[i], messages[i] = exc.code, exc.message
    return {"name": batch["name"], "shard": batch["shard"], "image": images, "reason": _column(reasons),
            "message": _column(messages)}


class ModelActor:
    """Holds one backbone's model (built and warmed once per actor) and turns image batches into vectors.

    Built from names, not objects (`model`, `weights` as EXTRACTOR_MODEL / EXTRACTOR_WEIGHTS), so each
    worker resolves the weights where it runs; the fingerprint it computes travels with every row and the
    driver refuses rows whose fingerprint is not the job's (a node with other weights).
    """

    def __init__(self, model: str, weights: str, input_size: int, precision: str, batch_size: int,
                 runtime: str = "auto"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from extractor_service.backbones import resolve_model
        from extractor_service.model import load_feature_model

        resolved = resolve_model(model, weights)
        self.normalization = resolved.backbone.preprocessing.normalization
        self.fingerprint = resolved.fingerprint(input_size, precision)
        # the runtime the extractor service would pick here (EXTRACTOR_RUNTIME): the same vectors either way
        self.model = load_feature_model(resolved.backbone, resolved.weights, input_size, precision, runtime)
        self.model.warm_up(batch_size)
        self.dim = resolved.backbone.dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add `vector` ((N, dim) float32, zeros for rejects) and `fingerprint`; drop the images."""
        from extractor_service.preprocessing import normalize

        good = np.array([r == OK for r in batch["reason"]], dtype=bool)
        vectors = np.zeros((len(good), self.dim), np.float32)
        if good.any():
            vectors[good] = self.model(normalize(batch["image"][good], self.normalization))
        return {"name": batch["name"], "shard": batch["shard"], "vector": vectors, "reason": batch["reason"],
                "message": batch["message"], "fingerprint": _column([self.fingerprint] * len(good))}
