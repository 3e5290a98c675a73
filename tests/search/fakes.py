"""In-memory stand-ins for the search service's two dependencies (see search_service/ports.py).

`FakeCatalog` behaves like `catalog.Catalog` on one collection, and `FakeExtractor` like an
`ExtractorClient` in front of a tiny model, so the app's validation and API tests run in milliseconds
without Milvus or TensorFlow. tests/search/test_fake_catalog.py runs one scenario against `FakeCatalog` and
the real `Catalog` on Milvus, so the fake cannot drift from the real one unnoticed.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from catalog import schema as S
from catalog.errors import (COLLECTION_NOT_FOUND, CallFailed, CatalogError, DimensionMismatch,
                            FingerprintMismatch, MilvusUnavailable)
from extractor_client import ExtractBatch, Extraction, ExtractorRejected, ExtractorUnavailable

FAKE_FP = "fake-model-v1"
FAKE_DIM = 12


class FakeCatalog:
    """`catalog.Catalog` in memory: rows in a dict, exact cosine search with numpy.

    Like the real one it records the fingerprint, dimension and index of the collection it creates,
    refuses another model's or dimension's vectors in `ensure`, answers a missing collection with
    `CallFailed`, and returns rows and hits in the same shapes. `down = True` makes every call raise
    `MilvusUnavailable`, as when Milvus is unreachable; `calls` counts calls by method name.
    """

    def __init__(self, collection: str = "images", uri: str = "memory://fake-milvus"):
        self.collection = collection
        self.uri = uri
        self.down = False
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._props: dict[str, str] | None = None  # None: the collection does not exist
        self._index: S.IndexSpec | None = None
        self._loaded = False
        self._rows: dict[str, tuple[np.ndarray, dict]] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, call: str, needs_collection: bool = True) -> None:
        """Count the call; raise what the real Catalog raises when Milvus is away or the collection missing."""
        self.calls[call] += 1
        if self.down:
            raise MilvusUnavailable(f"cannot reach Milvus at {self.uri} ({call}: connection refused)", call,
                                    "connection refused")
        if needs_collection and self._props is None:
            detail = f"collection not found[collection={self.collection}]"
            raise CallFailed(f"Milvus {call} failed: {detail}", call, detail, COLLECTION_NOT_FOUND, retriable=False)

    def reset(self) -> None:
        """Drop the connection (nothing to drop)."""
        self.calls["reset"] += 1

    def close(self) -> None:
        """Close the connection (nothing to close)."""
        self.calls["close"] += 1

    # -- collection -------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists."""
        self._call("exists", needs_collection=False)
        return self._props is not None

    def properties(self, refresh: bool = False) -> dict[str, str]:
        """The collection's properties: fingerprint, dim, schema_version."""
        self._call("properties")
        return dict(self._props or {})

    def fingerprint(self) -> str | None:
        """The feature fingerprint recorded with the collection."""
        return self.properties().get(S.PROP_FINGERPRINT) or None

    def dim(self) -> int | None:
        """The vector dimension of the collection."""
        self._call("dim")
        return int(self._props[S.PROP_DIM]) if self._props else None

    def scalar_fields(self) -> dict[str, str]:
        """The scalar fields declared at creation."""
        return dict(json.loads(self.properties().get(S.PROP_SCALAR_FIELDS) or "{}"))

    def create(self, dim: int, fingerprint: str, index: S.IndexSpec | None = S.DEFAULT_INDEX,
               scalar_fields: dict[str, str] | None = None) -> None:
        """Create the collection; with `index`, it is indexed and loaded at once (as MilvusClient does)."""
        self._call("create", needs_collection=False)
        with self._lock:
            if self._props is not None:
                raise CallFailed(f"Milvus create_collection failed: collection {self.collection} already exists",
                                 "create_collection", "already exists", retriable=False)
            self._props = {S.PROP_FINGERPRINT: fingerprint, S.PROP_DIM: str(dim),
                           S.PROP_SCHEMA_VERSION: S.SCHEMA_VERSION,
                           S.PROP_SCALAR_FIELDS: S.scalar_fields_property(scalar_fields)}
            self._index = index
            self._loaded = index is not None
            self._rows = {}

    def ensure(self, dim: int, fingerprint: str, index: S.IndexSpec | None = S.DEFAULT_INDEX,
               force: bool = False, scalar_fields: dict[str, str] | None = None) -> bool:
        """Create the collection when missing (True), else check it fits: Dimension/FingerprintMismatch."""
        if not self.exists():
            self.create(dim, fingerprint, index, scalar_fields)
            return True
        if scalar_fields:
            have = self.scalar_fields()
            missing = {k: v for k, v in scalar_fields.items() if have.get(k) != v}
            if missing:
                raise CatalogError(f"collection {self.collection!r} was created with scalar fields {have or 'none'}; "
                                   f"{missing} cannot be added later: import into a new collection (--collection)")
        have_dim = self.dim()
        if have_dim != dim:
            raise DimensionMismatch(self.collection, have_dim, dim)
        self.check_fingerprint(fingerprint, force=force)
        return False

    def check_fingerprint(self, fingerprint: str | None, force: bool = False) -> None:
        """Raise FingerprintMismatch when `fingerprint` differs from the collection's."""
        have = self.fingerprint()
        if have and fingerprint and have != fingerprint and not force:
            raise FingerprintMismatch(self.collection, have, fingerprint)

    def drop(self) -> None:
        """Drop the collection and its rows."""
        self._call("drop", needs_collection=False)
        with self._lock:
            self._props, self._index, self._loaded, self._rows = None, None, False, {}

    # -- index and loading ------------------------------------------------------------------------
    def has_index(self) -> bool:
        """Whether the vector field has an index."""
        self._call("has_index")
        return self._index is not None

    def index_spec(self) -> S.IndexSpec | None:
        """The index as Milvus describes it: type and build parameters (search parameters are defaults)."""
        if not self.has_index():
            return None
        return S.IndexSpec(self._index.index_type, build_params=dict(self._index.build_params))

    def build_index(self, index: S.IndexSpec = S.DEFAULT_INDEX) -> None:
        """Build the vector index (no-op when one exists)."""
        if not self.has_index():
            self._index = index

    def load(self) -> None:
        """Load the collection (needs an index, as in Milvus)."""
        self._call("load")
        if self._index is None:
            raise CallFailed("Milvus load_collection failed: index not found", "load_collection", "index not found")
        self._loaded = True

    def is_loaded(self) -> bool:
        """Whether the collection is loaded and can be searched."""
        self._call("is_loaded")
        return self._loaded

    def flush(self) -> None:
        """Persist growing segments (nothing to do in memory)."""
        self._call("flush")

    # -- rows -------------------------------------------------------------------------------------
    def upsert(self, names: Sequence[str], vectors: np.ndarray, metas: Sequence[dict] | None = None) -> int:
        """Insert or replace rows by name; returns the number written."""
        if len(names) == 0:
            return 0
        self._call("upsert")
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(names), -1)
        dim = int(self._props[S.PROP_DIM])
        if matrix.shape[1] != dim:
            detail = f"the dim ({matrix.shape[1]}) of field data(vector) is not equal to schema dim ({dim})"
            raise CallFailed(f"Milvus upsert failed: {detail}", "upsert", detail, retriable=False)
        with self._lock:
            for i, name in enumerate(names):
                meta = (metas[i] if metas else {}) or {}
                self._rows[name] = (matrix[i].copy(), json.loads(json.dumps(meta)))  # stored as JSON
        return len(names)

    def delete(self, names: Sequence[str]) -> None:
        """Delete rows by name (missing names are ignored)."""
        if names:
            self._call("delete")
            with self._lock:
                for name in names:
                    self._rows.pop(name, None)

    def _read(self, call: str) -> None:
        self._call(call)
        if not self._loaded:
            self.load()  # as Catalog._read: a not-loaded collection is loaded, then read

    def get(self, names: Sequence[str], with_vectors: bool = False) -> list[dict]:
        """Rows `{"name", "meta"[, "vector"]}` for those of `names` that exist."""
        if not names:
            return []
        self._read("get")
        out = []
        with self._lock:
            for name in dict.fromkeys(names):
                if name in self._rows:
                    vector, meta = self._rows[name]
                    row: dict[str, Any] = {S.NAME_FIELD: name, S.META_FIELD: json.loads(json.dumps(meta))}
                    if with_vectors:
                        row[S.VECTOR_FIELD] = [float(x) for x in vector]
                    out.append(row)
        return out

    def existing(self, names: Sequence[str]) -> set[str]:
        """The subset of `names` already stored."""
        if not names:
            return set()
        self._read("existing")
        with self._lock:
            return {n for n in names if n in self._rows}

    def count(self) -> int:
        """The number of rows."""
        self._read("count")
        return len(self._rows)

    def search(self, vectors: np.ndarray, top_k: int = 10, index: S.IndexSpec | None = None,
               params: dict[str, Any] | None = None, with_meta: bool = True,
               consistency_level: str | None = None, filter: str = "", offset: int = 0,
               min_score: float | None = None) -> list[list[dict]]:
        """Exact cosine search: per query, hits `{"name", "score", "meta"}` best first, after `offset`,
        at least `min_score`, matching `filter` (an expression from catalog.filters), at most `top_k`."""
        self._read("search")
        queries = np.asarray(vectors, dtype=np.float32)
        queries = queries.reshape(-1, queries.shape[-1])
        dim = int(self._props[S.PROP_DIM])
        if queries.shape[1] != dim:
            detail = f"vector dimension mismatch, expected vector size(byte) {dim * 4}, actual {queries.shape[1] * 4}"
            raise CallFailed(f"Milvus search failed: {detail}", "search", detail, retriable=False)
        scalars = self.scalar_fields()
        with self._lock:
            names = [n for n in self._rows if _matches(filter, self._rows[n][1], scalars)]
            stored = np.stack([self._rows[n][0] for n in names]) if names else np.zeros((0, dim), np.float32)
            metas = [self._rows[n][1] for n in names]
        out = []
        for q in queries:
            scores = _unit(stored) @ _unit(q[None, :])[0]
            order = sorted(range(len(names)), key=lambda i: -scores[i])
            if min_score is not None:
                order = [i for i in order if scores[i] >= min_score]
            order = order[offset:offset + top_k]
            out.append([{"name": names[i], "score": float(scores[i]),
                         "meta": json.loads(json.dumps(metas[i])) if with_meta else {}} for i in order])
        return out

    def iter_rows(self, batch_size: int = 1000, with_vectors: bool = True):
        """Every row `{"name"[, "vector"]}` in batches, in name order."""
        self._read("iter_rows")
        with self._lock:
            rows = [{S.NAME_FIELD: n, **({S.VECTOR_FIELD: [float(x) for x in v]} if with_vectors else {})}
                    for n, (v, _m) in sorted(self._rows.items())]
        for i in range(0, len(rows), batch_size):
            yield rows[i:i + batch_size]


class _Missing:
    """A meta key a row lacks, as Milvus's JSON paths treat it: equal to nothing, unequal to everything,
    ordered against nothing (so `!=` and `not in` match a row without the key; `==`, `<` and `in` do not)."""

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __lt__ = __le__ = __gt__ = __ge__ = __eq__

    def __hash__(self):
        return 0


class _Meta(dict):
    def __getitem__(self, key):
        return dict.get(self, key, _Missing())


def _matches(expr: str, meta: dict, scalars: dict[str, str]) -> bool:
    """Whether a row passes a filter expression made by catalog.filters (never user text: evaluated as
    Python, whose literals, `in`, `not in`, `and`, `or` and `not` read the same)."""
    if not expr:
        return True
    scope = {"meta": _Meta(meta), "true": True, "false": False}
    scope.update({f: S.scalar_value(kind, meta.get(f)) for f, kind in scalars.items()})
    return bool(eval(expr, {"__builtins__": {}}, scope))  # noqa: S307 - our own generated expressions


def _unit(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as Milvus's COSINE metric does."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)


class FakeExtractor:
    """Stands in for ExtractorClient in unit tests: a 12-d vector from a 2x2 thumbnail of the picture.

    The same picture always gives the same vector (score 1.0 against itself); undecodable bytes are
    refused with 422 like the real extractor; `down = True` makes it unavailable.
    """

    def __init__(self, fingerprint: str = FAKE_FP):
        self.fingerprint = fingerprint
        self.down = False
        self.calls = 0
        self.batches: list[int] = []  # images per extract() call

    def info(self) -> dict:
        if self.down:
            raise ExtractorUnavailable("extractor unavailable at fake: connection refused")
        return {"fingerprint": self.fingerprint, "dim": FAKE_DIM}

    def ready(self) -> bool:
        return not self.down

    def extract_one(self, name: str, data: bytes):
        self.calls += 1
        if self.down:
            raise ExtractorUnavailable("extractor unavailable at fake: connection refused")
        return self._vector(name, data), self.fingerprint

    def extract(self, images: Sequence[tuple[str, bytes]]) -> ExtractBatch:
        """One request for several images: a vector or an error per image, as the real client returns."""
        self.calls += 1
        self.batches.append(len(images))
        if self.down:
            raise ExtractorUnavailable("extractor unavailable at fake: connection refused")
        items = []
        for name, data in images:
            try:
                items.append(Extraction(vector=self._vector(name, data)))
            except ExtractorRejected as exc:
                items.append(Extraction(error_code=exc.code, error_message=exc.message, error_status=exc.status))
        return ExtractBatch(fingerprint=self.fingerprint, dim=FAKE_DIM, items=items)

    @staticmethod
    def _vector(name: str, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(data)).convert("RGB").resize((2, 2))
        except (UnidentifiedImageError, OSError):
            raise ExtractorRejected(422, "undecodable_image", f"{name}: cannot decode the image") from None
        v = np.asarray(img, dtype=np.float32).reshape(-1) + 1.0
        return v / np.linalg.norm(v)

    def close(self) -> None:
        pass
