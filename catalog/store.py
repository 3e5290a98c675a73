"""`Catalog`: the few Milvus calls the loader and the search service make, in MilvusClient style.

Collection name first, then data; plain dicts and lists in and out. The client is created on first use
and re-created after a connection failure, so a service started before Milvus recovers by itself.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from catalog import schema as S
from catalog.binary_codes import Projection
from catalog.filters import names_after, names_filter
from catalog.modes import CompactModes
from catalog.errors import CatalogError, DimensionMismatch, FingerprintMismatch, MilvusUnavailable, NotLoaded, classify

log = logging.getLogger(__name__)

CREATE_TIMEOUT_S = 60.0


class Catalog(CompactModes):
    """One Milvus collection of image vectors keyed by image name (compact modes' searches and binary-code
    collections' other collections: catalog.modes)."""

    def __init__(self, uri: str, token: str = "", collection: str = "images", timeout: float = 10.0):
        self.uri = uri
        self.token = token
        self.collection = collection
        self.timeout = timeout
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()
        self._props: dict[str, str] | None = None
        self._projection: Projection | None = None

    # -- connection -------------------------------------------------------------------------------
    @property
    def client(self) -> MilvusClient:
        """The MilvusClient, connected on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = MilvusClient(uri=self.uri, token=self.token, timeout=self.timeout)
                except Exception as exc:  # pymilvus raises several types for "cannot connect"
                    raise MilvusUnavailable(
                        f"cannot reach Milvus at {self.uri}: {exc}. Start it (make run, or docker compose up) "
                        "or set MILVUS_URI.", "connect", str(exc)
                    ) from exc
            return self._client

    def reset(self) -> None:
        """Drop the connection so the next call reconnects (after Milvus restarted)."""
        with self._lock:
            client, self._client = self._client, None
            self._props = None
            self._projection = None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead channel may raise; nothing to keep
                pass

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a MilvusClient method; failures become typed CatalogErrors (catalog.errors), and a lost
        connection is dropped so the next call reconnects."""
        kwargs.setdefault("timeout", self.timeout)
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except CatalogError:
            raise
        except Exception as exc:
            err = classify(exc, method, self.uri)
            if isinstance(err, MilvusUnavailable):
                self.reset()
            raise err from exc

    def _read(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A query or search; when the collection is not loaded (a restarted Milvus reloads in the
        background), ask for the load, wait for it, and try once more."""
        try:
            return self._call(method, *args, **kwargs)
        except NotLoaded:
            self.load()
            return self._call(method, *args, **kwargs)

    def close(self) -> None:
        """Close the connection."""
        self.reset()

    # -- collection -------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(self._call("has_collection", self.collection))

    def properties(self, refresh: bool = False) -> dict[str, str]:
        """The collection's properties (fingerprint, dim, schema version); cached unless `refresh`."""
        if self._props is None or refresh:
            desc = self._call("describe_collection", self.collection)
            self._props = {str(k): str(v) for k, v in (desc.get("properties") or {}).items()}
        return self._props

    def collection_id(self) -> Any:
        """Milvus's id of the collection: a dropped and re-created collection has another one."""
        return self._call("describe_collection", self.collection).get("collection_id")

    def fingerprint(self) -> str | None:
        """The feature fingerprint recorded with the collection, or None when it has none."""
        return self.properties().get(S.PROP_FINGERPRINT) or None

    def dim(self) -> int | None:
        """The vector dimension of the collection."""
        if self.code_bits():
            return int(self.properties()[S.PROP_DIM])
        desc = self._call("describe_collection", self.collection)
        for f in desc["fields"]:
            if f["name"] == S.VECTOR_FIELD:
                return int(f["params"]["dim"])
        return None

    def scalar_fields(self) -> dict[str, str]:
        """The scalar fields declared when the collection was created ({} for none)."""
        raw = self.properties().get(S.PROP_SCALAR_FIELDS)
        return dict(json.loads(raw)) if raw else {}

    def create(self, dim: int, fingerprint: str, index: S.IndexSpec | None = S.DEFAULT_INDEX,
               scalar_fields: dict[str, str] | None = None, projection: Projection | None = None,
               floats_encoding: str = "int8") -> None:
        """Create the collection; with `index`, also build the (empty) index and load it. Scalar fields
        (name -> "str" | "int" | "float" | "bool") get their scalar indexes at once. With `projection`, a
        binary-code collection: the projection and floats collections are made first, the vectors for
        re-ranking stored as `floats_encoding` ("int8" or "float32"; catalog.modes)."""
        props = {S.PROP_FINGERPRINT: fingerprint, S.PROP_DIM: str(dim), S.PROP_SCHEMA_VERSION: S.SCHEMA_VERSION,
                 S.PROP_SCALAR_FIELDS: S.scalar_fields_property(scalar_fields)}
        bits = None
        if projection is not None:
            props.update(self._create_binary(dim, projection, max(self.timeout, CREATE_TIMEOUT_S), floats_encoding))
            bits = projection.bits
            if index is not None and index.code_bits != bits:
                index = S.binary_spec(bits)
        # With a vector index, MilvusClient also loads the new collection (and waits for it): a one-off
        # admin step that can take several seconds on a busy machine, unlike request-time calls. Without
        # one (an import builds it after the data lands), scalar indexes are created on their own: loading
        # a collection whose vectors have no index fails.
        self._call(
            "create_collection",
            self.collection,
            schema=S.build_schema(dim, scalar_fields, bits),
            index_params=S.build_index_params(index, scalar_fields, dim) if index else None,
            consistency_level="Bounded",
            properties=props,
            timeout=max(self.timeout, CREATE_TIMEOUT_S),
        )
        if scalar_fields and not index:
            self._call("create_index", self.collection, S.build_index_params(None, scalar_fields),
                       timeout=max(self.timeout, CREATE_TIMEOUT_S))
        self._props, self._projection = None, projection
        log.info("created collection %s (dim=%d, fingerprint=%s%s)", self.collection, dim, fingerprint,
                 f", {bits}-bit codes" if bits else "")

    def ensure(
        self,
        dim: int,
        fingerprint: str,
        index: S.IndexSpec | None = S.DEFAULT_INDEX,
        force: bool = False,
        scalar_fields: dict[str, str] | None = None,
        projection: Projection | None = None,
        floats_encoding: str = "int8",
    ) -> bool:
        """Create the collection when missing, else check it fits; returns True when it was created.

        Raises FingerprintMismatch (unless `force`), DimensionMismatch, or CatalogError when `scalar_fields`
        asks for fields the existing collection was not created with (they are fixed at creation).
        `projection` makes a new collection a binary-code one (an existing one keeps its own), with its
        vectors for re-ranking stored as `floats_encoding`.
        """
        if not self.exists():
            self.create(dim, fingerprint, index, scalar_fields, projection, floats_encoding)
            return True
        if scalar_fields:
            have = self.scalar_fields()
            missing = {k: v for k, v in scalar_fields.items() if have.get(k) != v}
            if missing:
                raise CatalogError(
                    f"collection {self.collection!r} was created with scalar fields {have or 'none'}; "
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
        """Drop the collection and a binary-code collection's floats and projection (tests and benchmarks)."""
        if self.exists():
            self._call("drop_collection", self.collection)
        self._drop_binary()
        self._props, self._projection = None, None

    # -- index and loading ------------------------------------------------------------------------
    def has_index(self) -> bool:
        """Whether the vector field (the code field in binary mode) has an index."""
        field = S.vector_field(self.code_bits())
        return bool(self._call("list_indexes", self.collection, field_name=field))

    def index_progress(self) -> tuple[int, int, int]:
        """(rows indexed, rows waiting for the index builder, rows in all) of the vector index, as Milvus says."""
        d = self._call("describe_index", self.collection, index_name=S.vector_field(self.code_bits()))
        return int(d.get("indexed_rows", 0)), int(d.get("pending_index_rows", 0)), int(d.get("total_rows", 0))

    def index_spec(self) -> S.IndexSpec | None:
        """The IndexSpec of the existing vector index, or None (binary modes by their own name)."""
        if not self.has_index():
            return None
        bits = self.code_bits()
        desc = self._call("describe_index", self.collection, index_name=S.vector_field(bits))
        kind = desc.get("index_type", "HNSW")
        params = {k: int(v) for k, v in desc.items() if k in ("M", "efConstruction", "nlist", "m", "nbits")}
        return S.binary_spec(bits, params) if bits else S.IndexSpec(kind, build_params=params)

    def build_index(self, index: S.IndexSpec = S.DEFAULT_INDEX) -> None:
        """Build the vector index (no-op when one exists); waits until it is built. A binary-code collection
        always gets its binary mode's index, a float one never does."""
        if self.has_index():
            return
        bits = self.code_bits()
        if bits and index.code_bits != bits:
            index = S.binary_spec(bits, {k: v for k, v in index.build_params.items() if k == "nlist"})
        elif not bits and index.code_bits:
            raise CatalogError(f"collection {self.collection!r} stores float vectors; {index.index_type} needs a "
                               "binary-code collection: import into a new collection (--collection)")
        params = S.build_index_params(index, dim=int(self.properties().get(S.PROP_DIM) or 0) or self.dim())
        self._call("create_index", self.collection, params, timeout=None)

    def load(self) -> None:
        """Load the collection (and a binary-code one's floats) into query nodes (idempotent)."""
        self._call("load_collection", self.collection, timeout=None)
        if self.code_bits():
            self._call("load_collection", self.floats().name, timeout=None)

    def release(self) -> None:
        """Release the collection (and a binary-code one's floats) from the query nodes (idempotent): rows
        written to a released collection go to storage only, not into the query node's growing segments."""
        self._call("release_collection", self.collection, timeout=None)
        if self.code_bits():
            self._call("release_collection", self.floats().name, timeout=None)

    def is_loaded(self) -> bool:
        """Whether the collection is loaded and can be searched."""
        state = self._call("get_load_state", self.collection)
        return str(state.get("state")).endswith("Loaded") and "NotLoad" not in str(state.get("state"))

    def flush(self) -> None:
        """Seal growing segments and persist them."""
        if self.code_bits():
            self._call("flush", self.floats().name, timeout=None)
        self._call("flush", self.collection, timeout=None)

    # -- rows -------------------------------------------------------------------------------------
    def upsert(self, names: Sequence[str], vectors: np.ndarray, metas: Sequence[dict] | None = None) -> int:
        """Insert or replace rows by name; returns the number written."""
        return self._write("upsert", names, vectors, metas)

    def insert(self, names: Sequence[str], vectors: np.ndarray, metas: Sequence[dict] | None = None) -> int:
        """Add rows whose names are not stored yet; returns the number written. Less work for Milvus than
        `upsert`: 2.3's upsert is a delete and an insert, and the deletes make Milvus compact the segments
        and rebuild their indexes in the background after a bulk load. But Milvus does not enforce unique
        keys: a name written twice this way is stored twice. For writers that know the names are new (the loader in a collection
        it created); everyone else upserts."""
        return self._write("insert", names, vectors, metas)

    def _write(self, call: str, names: Sequence[str], vectors: np.ndarray, metas: Sequence[dict] | None) -> int:
        if len(names) == 0:
            return 0
        # numpy rows: pymilvus packs them straight into the request; .tolist() would make a Python float of
        # every value (slower, and many times the memory, on bulk loads).
        scalars = self.scalar_fields()
        vectors = np.asarray(vectors, dtype=np.float32)
        columns = self.vector_columns(names, vectors)  # binary mode: writes the floats collection first
        rows = []
        for i, n in enumerate(names):
            meta = (metas[i] if metas else {}) or {}
            row = {S.NAME_FIELD: n, **{k: col[i] for k, col in columns.items()}, S.META_FIELD: meta}
            for field, kind in scalars.items():  # declared fields are copies of meta's keys
                row[field] = S.scalar_value(kind, meta.get(field))
            rows.append(row)
        res = self._call(call, self.collection, rows)
        return int(res.get(f"{call}_count", len(rows)))

    def _vector_output(self) -> list[str]:
        """The vector field a query returns ([] in binary mode: the floats come from their collection)."""
        return [] if self.code_bits() else [S.VECTOR_FIELD]

    def delete(self, names: Sequence[str]) -> None:
        """Delete rows by name (binary mode: the codes, then the floats; catalog.modes)."""
        if names:
            self._call("delete", self.collection, filter=names_filter(names))
            if self.code_bits():
                self.floats().delete(names)

    def get(self, names: Sequence[str], with_vectors: bool = False) -> list[dict]:
        """Rows for `names` (those that exist), with meta and optionally vectors."""
        if not names:
            return []
        fields = [S.NAME_FIELD, S.META_FIELD] + (self._vector_output() if with_vectors else [])
        rows = list(
            self._read(
                "query",
                self.collection,
                filter=names_filter(names),
                output_fields=fields,
                consistency_level="Strong",
            )
        )
        return self._with_floats(rows) if with_vectors else rows

    def existing(self, names: Sequence[str]) -> set[str]:
        """The subset of `names` already stored (Strong consistency)."""
        if not names:
            return set()
        rows = self._read(
            "query", self.collection, filter=names_filter(names), output_fields=[S.NAME_FIELD],
            consistency_level="Strong",
        )
        return {r[S.NAME_FIELD] for r in rows}

    def count(self) -> int:
        """Exact number of live rows (Strong consistency: counts every acknowledged write)."""
        rows = self._read(
            "query", self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])

    def search(
        self,
        vectors: np.ndarray,
        top_k: int = 10,
        index: S.IndexSpec | None = None,
        params: dict[str, Any] | None = None,
        with_meta: bool = True,
        consistency_level: str | None = None,
        filter: str = "",
        offset: int = 0,
        min_score: float | None = None,
    ) -> list[list[dict]]:
        """ANN search; returns per query a list of {"name", "score", "meta"} best first.

        The score is the cosine similarity (Milvus's COSINE "distance" is a similarity). `filter` is a
        Milvus boolean expression (build it with catalog.filters, never from user text), `offset` skips
        that many best hits (paging), `min_score` makes it a range search: only hits scoring at least
        that count towards `top_k`. A binary-code collection is searched by Hamming distance for
        candidates, which are re-ranked by exact cosine (catalog.rerank); its spec comes from the collection.
        """
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, np.shape(vectors)[-1])
        if self.code_bits():
            spec = index if index is not None and index.code_bits else S.binary_spec(self.code_bits())
            return self._search_codes(queries, top_k, spec, params, with_meta, consistency_level, filter, offset,
                                      min_score)
        spec = index or S.DEFAULT_INDEX
        if float({**spec.search_params, **(params or {})}.get("candidates") or 0) > 0:
            return self._search_refined(queries, top_k, spec, params, with_meta, consistency_level, filter,
                                        offset, min_score)
        kwargs: dict[str, Any] = {}
        if consistency_level:
            kwargs["consistency_level"] = consistency_level
        if filter:
            kwargs["filter"] = filter
        if offset:
            kwargs["offset"] = int(offset)
        res = self._read(
            "search",
            self.collection,
            data=queries.tolist(),
            limit=top_k,
            anns_field=S.VECTOR_FIELD,
            search_params=S.search_params(spec, params, depth=top_k + offset, min_score=min_score,
                                          filtered=bool(filter)),
            output_fields=[S.META_FIELD] if with_meta else [],
            **kwargs,
        )
        out = []
        for hits in res:
            found = [{"name": h["id"], "score": float(h["distance"]),
                      "meta": (h.get("entity") or {}).get(S.META_FIELD) or {}} for h in hits]
            if min_score is not None:  # the range's radius sits a rounding error below the threshold
                found = [h for h in found if h["score"] >= min_score]
            out.append(found)
        return out

    def iter_rows(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[dict]]:
        """Every row `{"name"[, "vector"]}`, in name order, `batch_size` at a time.

        Pages by a name cursor (`name > "<last>"`, quoted like every value we put in an expression) with
        the query options Milvus's own iterator uses, so each page holds the next names in order.
        pymilvus's `query_iterator` pastes the cursor between quotes unescaped and fails on a name with a
        quote in it, which our catalogues may hold.
        """
        fields = [S.NAME_FIELD] + (self._vector_output() if with_vectors else [])
        last: str | None = None
        while True:
            rows = list(self._read("query", self.collection, filter=names_after(last), output_fields=fields,
                                   limit=batch_size, consistency_level="Strong", iterator="True",
                                   reduce_stop_for_best="True"))
            if not rows:
                return
            rows.sort(key=lambda r: r[S.NAME_FIELD])
            yield self._with_floats(rows) if with_vectors else rows
            if len(rows) < batch_size:
                return
            last = rows[-1][S.NAME_FIELD]
