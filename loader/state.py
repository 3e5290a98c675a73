"""Resume state: a small JSON file per (file, Milvus, collection, mode) recording what already landed.

Written atomically (temp file + rename) after every acknowledged batch or completed import job, so a
SIGKILL at any moment leaves either the old or the new state, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def default_state_dir() -> Path:
    """LOADER_STATE_DIR, else ~/.cache/image-search/loader."""
    env = os.environ.get("LOADER_STATE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "image-search" / "loader"


class ImportState:
    """The resume record of one import; `data` is a plain dict saved as JSON."""

    def __init__(self, state_dir: str | Path | None, h5_path: Path, uri: str, collection: str, mode: str,
                 datasets: tuple[str, str]):
        st = h5_path.stat()
        identity = "|".join(
            [str(h5_path.resolve()), str(st.st_size), str(st.st_mtime_ns), uri, collection, mode, *datasets]
        )
        key = hashlib.sha1(identity.encode()).hexdigest()[:16]
        self.path = Path(state_dir or default_state_dir()) / f"{collection}-{mode}-{key}.json"
        self.data: dict[str, Any] = {}

    def load(self, collection_id: Any) -> dict[str, Any]:
        """The saved record when it belongs to this very collection (same id), else a fresh one."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("collection_id") != collection_id:
            data = {"collection_id": collection_id}
        self.data = data
        return data

    def save(self) -> None:
        """Write atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """Forget the record (the import finished)."""
        self.path.unlink(missing_ok=True)
