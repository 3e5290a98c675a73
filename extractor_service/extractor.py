"""The extractor: image bytes in, vectors (or one error per bad image) out.

Owns the three heavy parts, created once and handed to the web app: a thread pool that decodes and
resizes images, the dynamic batcher, and the model. `load_extractor(config)` builds it all and warms it up.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from extractor_service.backbones import Backbone, ResolvedModel, resolve_model
from extractor_service.batching import DynamicBatcher
from extractor_service.config import ExtractorConfig
from extractor_service.metrics import ExtractorMetrics
from extractor_service.preprocessing import ImageError, load_image

log = logging.getLogger(__name__)


class Extractor:
    """Decode pool + dynamic batcher around a model callable `(N, s, s, 3) float32 -> (N, dim) float32`."""

    def __init__(self, config: ExtractorConfig, model: Callable[[np.ndarray], np.ndarray], *,
                 backbone: Backbone, fingerprint: str, weights_name: str, device: str = "CPU",
                 metrics: ExtractorMetrics | None = None, model_reason: str = ""):
        self.config = config
        self.model = model
        self.backbone = backbone
        self.fingerprint = fingerprint
        self.weights_name = weights_name
        self.model_reason = model_reason
        self.dim = backbone.dim
        self.device = device
        self.metrics = metrics or ExtractorMetrics()
        self.runtime = getattr(model, "runtime", "tensorflow")  # what runs the model (a test's fake: tensorflow)
        self.runtime_why = getattr(model, "runtime_why", "")
        self.decode_pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode")
        self.batcher = DynamicBatcher(
            self._run_model, max_batch_size=config.batch_size_for(device), max_wait_s=config.max_wait_ms / 1000.0,
            max_queue=config.max_queue, on_batch=self.metrics.observe_batch, name="model-batcher",
            workers=config.model_streams_for(device, self.runtime),
        )

    def _run_model(self, images: list[np.ndarray]) -> np.ndarray:
        vectors = self.model(np.stack(images))
        return list(vectors)

    def info(self) -> dict:
        """What /v1/info serves."""
        return {
            "model": self.backbone.name,
            "weights": self.weights_name,
            "dim": self.dim,
            "input_size": self.config.input_size,
            "pooling": self.backbone.pooling,
            "normalized": True,
            "precision": self.config.precision,
            "device": self.device,
            "runtime": self.runtime,
            "fingerprint": self.fingerprint,
            "preprocessing": self.backbone.preprocessing.version,
            "why": self.model_reason,
        }

    def decode(self, data: bytes) -> np.ndarray:
        """One image's bytes -> model input (runs on the decode pool); raises ImageError."""
        start = time.perf_counter()
        try:
            prep = self.backbone.preprocessing
            return load_image(data, self.config.input_size, self.config.max_file_bytes, self.config.max_pixels,
                              resample=prep.resample, normalization=prep.normalization)
        finally:
            self.metrics.stage_seconds.labels("decode").observe(time.perf_counter() - start)

    def extract(self, blobs: Sequence[bytes]) -> list[np.ndarray | ImageError]:
        """Vectors for image bytes, in order; a bad image gives its ImageError in its place.

        Raises BatcherOverloaded when too many images wait, TimeoutError past the request timeout.
        """
        decoded = list(self.decode_pool.map(_capture(self.decode), blobs))
        good = [i for i, d in enumerate(decoded) if not isinstance(d, ImageError)]
        results: list = list(decoded)
        if good:
            self.metrics.queue_depth.set(self.batcher.queued)
            vectors = self.batcher([decoded[i] for i in good], timeout=self.config.request_timeout_s)
            for i, v in zip(good, vectors):
                results[i] = v
        for r in results:
            self.metrics.images.labels(r.code if isinstance(r, ImageError) else "ok").inc()
        return results

    def close(self) -> None:
        """Stop the batcher and the decode pool."""
        self.batcher.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)


def _capture(fn):
    """Wrap fn so an ImageError is returned instead of raised (pool.map would stop at the first)."""

    def wrapped(arg):
        try:
            return fn(arg)
        except ImageError as exc:
            return exc

    return wrapped


def load_extractor(config: ExtractorConfig, model: ResolvedModel | None = None,
                   metrics: ExtractorMetrics | None = None) -> Extractor:
    """Pick the backbone, read its weights, build and warm the model, wrap it in an Extractor (takes seconds).

    `model` is already resolved where the caller did it first (the server resolves before it forks, so a
    wrong file fails at once); by default it comes from `config.model` and `config.weights`.
    """
    from extractor_service.model import load_feature_model

    start = time.perf_counter()
    model = model or resolve_model(config.model, config.weights)
    backbone, weights = model.backbone, model.weights
    fp = model.fingerprint(config.input_size, config.precision)
    feature_model = load_feature_model(backbone, weights, config.input_size, config.precision, config.runtime)
    warm = feature_model.warm_up(config.batch_size_for(feature_model.device))
    log.info(
        "model ready: %s weights=%s (%s, %s layout) dim=%d input=%d precision=%s device=%s runtime=%s (%s) "
        "fingerprint=%s (load %.1fs, warm-up %.1fs)", backbone.name, weights.name, weights.path, weights.layout,
        backbone.dim, config.input_size, config.precision, feature_model.device, feature_model.runtime,
        feature_model.runtime_why, fp, time.perf_counter() - start - warm, warm,
    )
    return Extractor(config, feature_model, backbone=backbone, fingerprint=fp, weights_name=weights.name,
                     device=feature_model.device, metrics=metrics, model_reason=model.why)
