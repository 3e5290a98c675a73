"""Search service configuration: environment variables with documented defaults.

| variable | default | meaning |
|---|---|---|
| `MILVUS_URI` | `http://127.0.0.1:19530` | Milvus endpoint |
| `MILVUS_TOKEN` | empty | Milvus credentials `user:password` or token |
| `MILVUS_TIMEOUT` | `10` | seconds per Milvus call |
| `COLLECTION` | `images` | collection name |
| `EXTRACTOR_URL` | `http://127.0.0.1:8001` | extractor; a comma-separated list means replicas |
| `EXTRACTOR_CONNECT_TIMEOUT` | `2` | seconds to connect to the extractor |
| `EXTRACTOR_READ_TIMEOUT` | `30` | seconds to wait for an extraction |
| `EXTRACTOR_RETRIES` | `1` | extra attempts (on the next replica) when one fails |
| `IMAGE_ROOT` | `./data/images` | where catalogue files live; the only place files are served from |
| `API_TOKEN` | empty | when set, writes need `Authorization: Bearer <token>` |
| `MAX_UPLOAD_BYTES` | `20971520` | largest request body (20 MiB); larger gets 413 |
| `SEARCH_PARAMS` | empty | JSON overriding the index's search parameters, e.g. `{"ef": 128}` |
| `SEARCH_CONSISTENCY` | `Session` | Milvus consistency level of searches; Session sees this service's own writes |
| `GUARD_TTL` | `5` | seconds the fingerprint check is cached (refreshed at once after a failure) |
| `SEARCH_THREADS` | `8` | gunicorn threads (one worker process, so metrics need no multiprocess mode) |
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Config:
    """Everything the app factory needs; build it with `Config.from_env()` or pass values in tests."""

    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str = ""
    milvus_timeout: float = 10.0
    collection: str = "images"
    extractor_url: str = "http://127.0.0.1:8001"
    extractor_connect_timeout: float = 2.0
    extractor_read_timeout: float = 30.0
    extractor_retries: int = 1
    image_root: str = "./data/images"
    api_token: str = ""
    max_upload_bytes: int = 20 * 1024 * 1024
    search_params: dict[str, Any] = field(default_factory=dict)
    search_consistency: str = "Session"
    guard_ttl: float = 5.0
    threads: int = 8
    retry_after_s: int = 5  # what 503 answers tell clients to wait

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Config":
        """Read the variables in the module docstring; unset or empty ones keep their defaults."""
        env = os.environ if environ is None else environ
        names = {
            "milvus_uri": "MILVUS_URI",
            "milvus_token": "MILVUS_TOKEN",
            "milvus_timeout": "MILVUS_TIMEOUT",
            "collection": "COLLECTION",
            "extractor_url": "EXTRACTOR_URL",
            "extractor_connect_timeout": "EXTRACTOR_CONNECT_TIMEOUT",
            "extractor_read_timeout": "EXTRACTOR_READ_TIMEOUT",
            "extractor_retries": "EXTRACTOR_RETRIES",
            "image_root": "IMAGE_ROOT",
            "api_token": "API_TOKEN",
            "max_upload_bytes": "MAX_UPLOAD_BYTES",
            "search_params": "SEARCH_PARAMS",
            "search_consistency": "SEARCH_CONSISTENCY",
            "guard_ttl": "GUARD_TTL",
            "threads": "SEARCH_THREADS",
        }
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for attr, var in names.items():
            raw = env.get(var, "")
            if raw == "":
                continue
            values[attr] = _parse(var, raw, types[attr])
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some values changed (tests)."""
        return type(self)(**{**self.__dict__, **changes})


def _parse(var: str, raw: str, kind: str) -> Any:
    """Parse one variable by its field type; the error names the variable and the bad value."""
    try:
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind.startswith("dict"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
        return raw
    except ValueError as exc:
        raise ValueError(f"{var}={raw!r} is not a valid {kind.split('[')[0]}: {exc}") from None
