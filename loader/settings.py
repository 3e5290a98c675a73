"""The loader's environment, read the way every component reads it (service_common/settings.py).

| variable | default | meaning |
|---|---|---|
| `MILVUS_URI` | `http://127.0.0.1:19530` | Milvus endpoint (`--milvus-uri`) |
| `MILVUS_TOKEN` | empty | Milvus credentials (`--token`) |
| `COLLECTION` | `images` | collection name (`--collection`) |
| `EXTRACTOR_URL` | `http://127.0.0.1:8001` | extractor replica(s), comma-separated (`--extractor-url`) |
| `LOADER_STATE_DIR` | `~/.cache/image-search/loader` | resume records (`--state-dir`) |
| `LOADER_RESTART_GRACE` | `40` | seconds before a bulk job failed by a Milvus restart is submitted again |
| `S3_ENDPOINT`, `S3_BUCKET`, `S3_PREFIX`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`, `S3_SECURE` | unset, `a-bucket`, `bulk-import`, `minioadmin`, `minioadmin`, off | bulk mode on object storage (`--s3-*`) |

Flags win over variables; the CLI's option defaults come from here (`env()`).
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from catalog.milvus23 import RESTART_GRACE_S
from service_common.settings import COMMON, EnvSettings, load_settings

DEFAULT_STATE_DIR = Path.home() / ".cache" / "image-search" / "loader"


class LoaderSettings(EnvSettings):
    """The loader's environment variables (module docstring)."""

    model_config = SettingsConfigDict(**COMMON)

    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str = ""
    collection: str = "images"
    extractor_url: str = "http://127.0.0.1:8001"
    state_dir: Path | None = Field(None, alias="LOADER_STATE_DIR")
    restart_grace: float = Field(RESTART_GRACE_S, alias="LOADER_RESTART_GRACE")
    s3_endpoint: str | None = None
    s3_bucket: str = "a-bucket"
    s3_prefix: str = "bulk-import"
    s3_access_key: str = "minioadmin"
    s3_secret_key: str = "minioadmin"
    s3_secure: bool = False

    @field_validator("restart_grace")
    @classmethod
    def _seconds(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"LOADER_RESTART_GRACE must be a number of seconds, at least 0 (default "
                             f"{RESTART_GRACE_S:.0f}). Received: {value!r}")
        return value


def env() -> LoaderSettings:
    """The loader's settings from the environment (read when asked: cheap, and tests change it);
    ValueError names a bad variable."""
    return load_settings(LoaderSettings)


def state_dir() -> Path:
    """Where resume records live: LOADER_STATE_DIR, else ~/.cache/image-search/loader."""
    return env().state_dir or DEFAULT_STATE_DIR
