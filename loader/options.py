"""`ImportOptions`: everything an import can be told (the CLI maps its flags and environment onto these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from catalog.milvus23 import RESTART_GRACE_S
from catalog.schema import DEFAULT_INDEX, IndexSpec
from loader.object_store import S3Target


@dataclass
class ImportOptions:
    """Everything `import_h5` can be told; the CLI maps its flags onto these."""

    vectors: str | None = None  # dataset names; None = classic layout or auto-detect
    names: str | None = None
    fingerprint: str | None = None  # overrides the file's `fingerprint` attribute
    force: bool = False  # accept a fingerprint that differs from the collection's
    index: IndexSpec = DEFAULT_INDEX
    batch_size: int = 10_000  # rows per upsert call (and per chunk read from the file)
    in_flight: int = 4  # write calls outstanding, so reading overlaps with Milvus's work
    dry_run: bool = False
    quiet: bool = False
    mode: str = "insert"  # or "bulk"
    state_dir: str | Path | None = None
    retry_seconds: float = 60.0  # how long a lost Milvus is waited for before giving up
    bulk_dir: str | Path | None = None  # bulk mode: where the server can read the staged files
    bulk_rows: int = 1_000_000  # bulk mode: rows per import job
    bulk_format: str = "npy"  # bulk mode: "npy" column files or "parquet"
    bulk_s3: S3Target | None = None  # bulk mode: Milvus's bucket to upload into, instead of a shared folder
    # bulk mode: seconds before a job failed by a Milvus restart is submitted again (env LOADER_RESTART_GRACE;
    # Milvus 2.3 may send it to the dead data node for one session TTL: catalog.milvus23)
    restart_grace: float = RESTART_GRACE_S
    scalar_fields: dict[str, str] = field(default_factory=dict)  # declared when the import creates the collection
    meta: str | Path | None = None  # a JSON lines or CSV file of per-name meta (loader/meta.py)
    code_sample: int = 100_000  # binary modes: rows the codes are learned from (--code-sample; loader/codes.py)
    floats_encoding: str = "int8"  # binary modes: how the re-ranking vectors are stored (--rerank-floats)
