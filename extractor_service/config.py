"""Extractor settings from environment variables, each with a documented default.

| variable                        | default     | meaning                                                   |
|---------------------------------|-------------|-----------------------------------------------------------|
| EXTRACTOR_MODEL                 | auto        | vgg16, resnet50, densenet121, efficientnet-lite0, or auto |
|                                 |             | (vgg16 when its ImageNet weights are cached, else         |
|                                 |             | efficientnet-lite0; see backbones/__init__.py)             |
| EXTRACTOR_WEIGHTS               | auto        | imagenet, hed-vgg16 (vgg16 only), a weights file, or auto |
| EXTRACTOR_INPUT_SIZE            | 224         | square model input side in pixels                         |
| EXTRACTOR_PRECISION             | fp32        | fp32, bf16 or fp16 (mixed precision; own fingerprint)     |
| EXTRACTOR_MAX_BATCH_SIZE        | 0 (auto)    | most images in one model call; auto: 8 on CPU, 64 on GPU  |
| EXTRACTOR_MAX_WAIT_MS           | 5           | how long a batch waits for more images before it runs     |
| EXTRACTOR_MODEL_STREAMS         | 0 (auto)    | TensorFlow model calls that may run at once; auto: 2 on   |
|                                 |             | CPU, 1 on GPU; always 1 under OpenVINO (one call at a     |
|                                 |             | time, each on every core)                                 |
| EXTRACTOR_MAX_QUEUE             | 512         | images waiting for the model before requests get 503      |
| EXTRACTOR_MAX_FILE_BYTES        | 20000000    | largest accepted image file (20 MB)                       |
| EXTRACTOR_MAX_PIXELS            | 40000000    | largest accepted image (40 megapixels; decompression bombs)|
| EXTRACTOR_MAX_PARTS             | 64          | most `image` parts in one request                         |
| EXTRACTOR_MAX_REQUEST_BYTES     | 100000000   | largest accepted request body                             |
| EXTRACTOR_DECODE_THREADS        | CPU count   | threads that decode and resize images                     |
| EXTRACTOR_HTTP_THREADS          | 32          | gunicorn gthread threads (concurrent requests)            |
| EXTRACTOR_REQUEST_TIMEOUT_S     | 120         | how long one request waits for its vectors                |
| EXTRACTOR_RUNTIME               | auto        | auto (OpenVINO on CPUs in fp32 when installed, else       |
|                                 |             | TensorFlow), tensorflow, or openvino (CPU, fp32 only)     |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from service_common.settings import COMMON, EnvSettings, load_settings


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ExtractorConfig(EnvSettings):
    """Everything the extractor reads from its environment (EXTRACTOR_<FIELD>); see the module docstring."""

    model_config = SettingsConfigDict(**COMMON, env_prefix="EXTRACTOR_")

    model: str = "auto"
    weights: str = "auto"
    input_size: int = 224
    precision: str = "fp32"
    max_batch_size: int = 0  # 0: auto, see batch_size_for()
    max_wait_ms: float = 5.0
    model_streams: int = 0  # 0: auto, see model_streams_for()
    max_queue: int = 512
    max_file_bytes: int = 20_000_000
    max_pixels: int = 40_000_000
    max_parts: int = 64
    max_request_bytes: int = 100_000_000
    decode_threads: int = Field(default_factory=_cpu_count)
    http_threads: int = 32
    request_timeout_s: float = 120.0
    runtime: str = "auto"  # see extractor_service.model.choose_runtime

    @field_validator("model", "weights", "precision", "runtime", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from extractor_service.backbones import MODEL_CHOICES

        value = value.lower()
        if value not in MODEL_CHOICES:
            raise ValueError(f"EXTRACTOR_MODEL must be one of {', '.join(MODEL_CHOICES)}. Received: {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> "ExtractorConfig":
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"EXTRACTOR_PRECISION must be fp32, bf16 or fp16. Received: {self.precision!r}")
        if self.runtime not in ("auto", "tensorflow", "openvino"):
            raise ValueError(f"EXTRACTOR_RUNTIME must be auto, tensorflow or openvino. Received: {self.runtime!r}")
        if self.input_size < 32:
            raise ValueError(f"EXTRACTOR_INPUT_SIZE must be at least 32. Received: {self.input_size}")
        if self.model_streams < 0:
            raise ValueError(f"EXTRACTOR_MODEL_STREAMS must be >= 0 (0: auto). Received: {self.model_streams}")
        if self.max_batch_size < 0:
            raise ValueError(f"EXTRACTOR_MAX_BATCH_SIZE must be >= 0 (0: auto). Received: {self.max_batch_size}")
        for name in ("max_queue", "max_file_bytes", "max_pixels", "max_parts",
                     "max_request_bytes", "decode_threads", "http_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"EXTRACTOR_{name.upper()} must be at least 1. Received: {getattr(self, name)}")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "ExtractorConfig":
        """Read EXTRACTOR_* variables of `environ` (default os.environ; see the module docstring);
        `overrides` win over the environment."""
        return load_settings(cls, environ, **overrides)

    def batch_size_for(self, device: str) -> int:
        """The max batch size: as configured, else 8 on CPU (bigger batches only spill the caches) and 64 on GPU."""
        return self.max_batch_size or (64 if device == "GPU" else 8)

    def model_streams_for(self, device: str, runtime: str = "tensorflow") -> int:
        """Model calls at once on `runtime` (the one the model runs on): as configured, else 2 on CPU (one
        TensorFlow call's serial stretches leave cores idle that a second fills: 130 against 102 images/s for
        EfficientNet-Lite0 at batches of 8 on 2 cores, bench/extract.py) and 1 on GPU; always 1 under
        OpenVINO (its compiled model's call is not re-entrant, and each call already uses every core)."""
        if runtime == "openvino":
            return 1
        return self.model_streams or (1 if device == "GPU" else 2)

    def with_(self, **changes: Any) -> "ExtractorConfig":
        """A copy with some fields changed (tests, benchmarks), validated like the original."""
        return type(self)(**{**self.model_dump(), **changes})
