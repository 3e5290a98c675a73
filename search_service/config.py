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
| `SEARCH_PARAMS` | empty | JSON overriding the index's search parameters, e.g. `{"ef": 128}`; compact modes (IVF_SQ8, IVF_PQ, BIN_ITQ*) also take `candidates`: coarse hits re-ranked per result (docs/SCALING.md) |
| `SEARCH_CONSISTENCY` | `Session` | Milvus consistency level of searches; Session sees this service's own writes |
| `GUARD_TTL` | `5` | seconds the fingerprint check is cached (refreshed at once after a failure) |
| `SEARCH_WORKERS` | `2` | gunicorn worker processes; Python runs one thread at a time in each, so one worker's request handling tops out near one core (~900 vector searches/s on the benchmark machine): give it about one worker per core the service may use |
| `SEARCH_THREADS` | `16` | gunicorn threads per worker; more threads let more concurrent searches share Milvus calls |
| `SEARCH_STATE_DIR` | a new temporary directory | where the workers share locks, the write counter and near-duplicate results (search_service/shared_state.py); also the Prometheus multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, unless set) |
| `SEARCH_RETRY_AFTER_S` | `5` | what 503 answers tell clients to wait (`Retry-After`) |
| `SEARCH_MILVUS_CALLS` | `1` | most Milvus searches each worker runs at once; more concurrent single searches wait and then share one call (search_service/coalescing.py). With 2 workers, 2 calls at once: under 16 clients 1 per worker left Milvus ~20% less work per query than 2 (larger shared calls) |
| `SEARCH_MAX_BATCH` | `32` | most queries (image parts, vectors or names) in one search request |
| `DUPLICATES_NEIGHBOURS` | `16` | hits per image in the first search when finding groups (more where all are above the threshold) |
| `DUPLICATES_TTL_S` | `600` | how long found groups are served before the next request finds them again |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from service_common.settings import COMMON, EnvSettings, load_settings


class Config(EnvSettings):
    """Everything the app factory needs; build it with `Config.from_env()` or pass values in tests.

    Each field is read from the variable of its upper-case name, or the one its alias names.
    """

    model_config = SettingsConfigDict(**COMMON)

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
    search_params: dict[str, Any] = Field(default_factory=dict)
    search_consistency: str = "Session"
    guard_ttl: float = 5.0
    workers: int = Field(2, alias="SEARCH_WORKERS", ge=1, le=64)
    threads: int = Field(16, alias="SEARCH_THREADS", ge=1)
    state_dir: str = Field("", alias="SEARCH_STATE_DIR")
    retry_after_s: int = Field(5, alias="SEARCH_RETRY_AFTER_S")
    milvus_searches: int = Field(1, alias="SEARCH_MILVUS_CALLS", ge=1, le=64)
    max_batch: int = Field(32, alias="SEARCH_MAX_BATCH", ge=1, le=256)
    duplicates_neighbours: int = Field(16, ge=1, le=1000)
    duplicates_ttl_s: float = Field(600.0, ge=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Config":
        """Read the variables in the module docstring (from `environ`, default os.environ); unset or empty
        ones keep their defaults."""
        return load_settings(cls, environ)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some values changed (tests), validated like the original."""
        return type(self)(**{**self.model_dump(), **changes})
