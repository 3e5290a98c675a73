"""Compact modes: what `Catalog` does differently for binary-code collections (BIN_ITQ256 / BIN_ITQ512)
and for the re-ranked quantised float indexes (IVF_SQ8 / IVF_PQ: catalog.rerank).

A binary-code catalogue is three Milvus collections:

    <collection>              name, code (BINARY_VECTOR, BIN_IVF_FLAT, Hamming), meta, scalar fields
    <collection>__floats      key, vector: the vectors for re-ranking, read only for that
    <collection>__projection  the learned projection (catalog.codes_store)

Milvus 2.3 allows one vector field per collection, so the vectors for re-ranking live in a collection of
their own, fetched for the K candidates of a Hamming search. New floats collections are keyed by
`name_key(name)`, a 64-bit hash of the name (INT64 primary key), not by the name itself: the names live
once, in the codes collection, instead of twice with a VARCHAR primary-key index each (older floats
collections, `floats_key` absent, are keyed by name and read as before). Two names with the same key would
share one vector (the later write wins, and deleting one deletes the other's, which then drops out of
results): at 10M rows the chance that any pair collides is ~3e-6. Milvus keeps a loaded collection
resident (on 2.3.5 mmap makes lookups by name miss rows, so the product keeps it off: docs/SCALING.md), so
what the floats collection holds per row is what the mode costs: new collections store each vector as one
signed byte a dimension (`int8`: a BINARY_VECTOR of 8 x dim bits under BIN_FLAT, the cheapest index that
keeps the raw bytes: 1/4 of float32), older ones float32 (FLOAT_VECTOR, FLAT). Re-ranking by cosine is
scale-free, so a vector is stored as round(127 v / max|v|) and read back normalised: its cosine to a
query moves by ~1e-3 (tests/catalog/test_binary_codes.py), well under the gaps re-ranking decides.

Write order: an upsert writes the floats first, then the codes; a delete removes the codes first, then the
floats. A crash between the two leaves at worst floats nobody can find (no code points at them), never a
searchable code without its floats; rerunning the upsert or delete (the loader resumes so) repairs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import hashlib

import numpy as np
from pymilvus import DataType, MilvusClient

from catalog import milvus23, rerank
from catalog import schema as S
from catalog.binary_codes import Projection
from catalog.codes_store import ProjectionStore, sidecar_name
from catalog.errors import CatalogError
from catalog.filters import keys_filter, names_filter

FLOATS_SUFFIX = "__floats"
FETCH_CHUNK = 4096  # names per query fetching floats (Milvus's query window is 16,384 rows)


def floats_name(collection: str) -> str:
    """The floats collection of a binary-code `collection`."""
    return collection + FLOATS_SUFFIX


FLOATS_ENCODINGS = ("int8", "float32")
FLOATS_KEYS = ("hash64", "name")  # new collections: a hash of the name; older ones: the name
KEY_FIELD = "key"
NEW_FLOATS_KEY = "hash64"  # how new floats collections are keyed


def name_key(name: str) -> int:
    """The floats collection's key of an image name: its BLAKE2b-64 digest as a signed 64-bit integer
    (stable across processes and machines, unlike Python's hash())."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def to_int8(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled so its largest magnitude is 127 and rounded: (n, d) int8 (cosine is scale-free)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1, keepdims=True, initial=0.0)
    return np.rint(vectors * (127.0 / np.maximum(peak, np.float32(1e-30)))).astype(np.int8)


def from_int8(codes: np.ndarray) -> np.ndarray:
    """int8 rows back to L2-normalised float32 vectors (an all-zero row stays zero)."""
    vectors = np.asarray(codes, dtype=np.int8).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class FloatsStore:
    """A binary-code collection's vectors for re-ranking, by image name, through the Catalog's `call` /
    `read`; stored as `encoding` ("int8" or "float32", see the module docstring), always read as float32;
    keyed by `key` ("hash64": name_key(name), or "name" in older collections)."""

    def __init__(self, call: Callable[..., Any], read: Callable[..., Any], name: str, encoding: str = "float32",
                 key: str = "name"):
        if encoding not in FLOATS_ENCODINGS:
            raise CatalogError(f"unknown floats encoding {encoding!r} (one of {', '.join(FLOATS_ENCODINGS)})")
        if key not in FLOATS_KEYS:
            raise CatalogError(f"unknown floats key {key!r} (one of {', '.join(FLOATS_KEYS)})")
        self.call, self.read, self.name, self.encoding, self.key = call, read, name, encoding, key

    def create(self, dim: int, timeout: float) -> None:
        """Create (replacing any leftover), index and load the floats collection."""
        self.drop()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        if self.key == "hash64":
            schema.add_field(KEY_FIELD, DataType.INT64, is_primary=True)
        else:
            schema.add_field(S.NAME_FIELD, DataType.VARCHAR, is_primary=True, max_length=S.NAME_MAX_LENGTH)
        index = MilvusClient.prepare_index_params()
        if self.encoding == "int8":
            schema.add_field(S.VECTOR_FIELD, DataType.BINARY_VECTOR, dim=8 * dim)
            index.add_index(field_name=S.VECTOR_FIELD, index_type="BIN_FLAT", metric_type="HAMMING",
                            index_name=S.VECTOR_FIELD)
        else:
            schema.add_field(S.VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
            index.add_index(field_name=S.VECTOR_FIELD, index_type="FLAT", metric_type=S.METRIC,
                            index_name=S.VECTOR_FIELD)
        self.call("create_collection", self.name, schema=schema, index_params=index, consistency_level="Bounded",
                  timeout=timeout)

    def upsert(self, names: Sequence[str], vectors: np.ndarray) -> None:
        """Write the vectors of `names` (replacing what they had)."""
        values = [c.tobytes() for c in to_int8(vectors)] if self.encoding == "int8" else vectors
        if self.key == "hash64":
            rows = [{KEY_FIELD: name_key(n), S.VECTOR_FIELD: v} for n, v in zip(names, values)]
        else:
            rows = [{S.NAME_FIELD: n, S.VECTOR_FIELD: v} for n, v in zip(names, values)]
        self.call("upsert", self.name, rows)

    def delete(self, names: Sequence[str]) -> None:
        """Delete the vectors of `names`."""
        if self.key == "hash64":
            self.call("delete", self.name, filter=keys_filter(KEY_FIELD, map(name_key, names)))
        else:
            self.call("delete", self.name, filter=names_filter(names))

    def fetch(self, names: Sequence[str], consistency_level: str | None = None) -> dict[str, np.ndarray]:
        """{name: float32 vector} for those of `names` stored. Read at `consistency_level` (default
        Bounded) first; names not seen then (written a moment ago) are read again with Strong consistency."""
        out: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(names))
        # Strong waits for the server's time tick (~200 ms on 2.3); Bounded does not, and only rows written
        # in the last few seconds can be missing from it.
        field = KEY_FIELD if self.key == "hash64" else S.NAME_FIELD
        for level in ([consistency_level or "Bounded"] if consistency_level != "Strong" else []) + ["Strong"]:
            for at in range(0, len(wanted), FETCH_CHUNK):
                chunk = wanted[at:at + FETCH_CHUNK]
                if self.key == "hash64":
                    rows = self.read("query", self.name, filter=keys_filter(KEY_FIELD, map(name_key, chunk)),
                                     output_fields=[field, S.VECTOR_FIELD], consistency_level=level)
                else:
                    rows = self.read("query", self.name, filter=names_filter(chunk),
                                     output_fields=[field, S.VECTOR_FIELD], consistency_level=level)
                if rows:
                    vectors = self._vectors([r[S.VECTOR_FIELD] for r in rows])
                    if self.key == "hash64":
                        by_key = dict(zip((r[KEY_FIELD] for r in rows), vectors))
                        out.update((n, by_key[k]) for n, k in zip(chunk, map(name_key, chunk)) if k in by_key)
                    else:
                        out.update(zip((r[S.NAME_FIELD] for r in rows), vectors))
            wanted = [n for n in wanted if n not in out]
            if not wanted:
                break
        return out

    def _vectors(self, values: list[Any]) -> np.ndarray:
        """Stored values (float lists, or int8 bytes: pymilvus gives a binary vector as [bytes]) as float32 rows."""
        if self.encoding == "float32":
            return np.asarray(values, dtype=np.float32)
        raw = b"".join(v[0] if isinstance(v, list) else v for v in values)
        return from_int8(np.frombuffer(raw, dtype=np.int8).reshape(len(values), -1))

    def drop(self) -> None:
        if self.call("has_collection", self.name):
            self.call("drop_collection", self.name)


class CompactModes:
    """The compact modes' half of `Catalog` (catalog.store), mixed in: the projection, the floats collection,
    writes to both collections, the Hamming search with exact re-ranking, and IVF_SQ8 / IVF_PQ re-ranking. Uses the Catalog's
    `collection`, `timeout`, `_call`, `_read`, `properties`, `_projection`."""

    collection: str
    timeout: float
    _projection: Projection | None

    def code_bits(self) -> int | None:
        """Bits per code in a binary-code collection, None in a float one."""
        props = self.properties()
        return int(props[S.PROP_CODE_BITS]) if props.get(S.PROP_MODE) == "binary" else None

    def projection(self) -> Projection:
        """The learned projection of a binary-code collection (read once, digest-checked)."""
        if self._projection is None:
            props = self.properties()
            store = ProjectionStore(self._call, props.get(S.PROP_PROJECTION) or sidecar_name(self.collection))
            self._projection = store.load(props.get(S.PROP_PROJECTION_SHA))
        return self._projection

    def floats(self) -> FloatsStore:
        """The floats collection (its name recorded with the collection)."""
        props = self.properties()
        name = props.get(S.PROP_FLOATS) or floats_name(self.collection)
        return FloatsStore(self._call, self._read, name, props.get(S.PROP_FLOATS_ENCODING) or "float32",
                           props.get(S.PROP_FLOATS_KEY) or "name")

    def diskann_refusal(self) -> str | None:
        """None when the server can build DISKANN indexes, else why not (catalog.milvus23, item 6)."""
        return milvus23.diskann_refusal(self._call)

    def _create_binary(self, dim: int, projection: Projection, timeout: float,
                       floats_encoding: str = "int8") -> dict[str, str]:
        """Store the projection and create the floats collection (both before the collection itself, so a
        collection that exists always has them); returns the properties that record them."""
        if projection.dim != dim:
            raise CatalogError(f"the projection is for {projection.dim}-d vectors, the collection {dim}-d")
        store = ProjectionStore(self._call, sidecar_name(self.collection))
        floats = FloatsStore(self._call, self._read, floats_name(self.collection), floats_encoding,
                             NEW_FLOATS_KEY)
        floats.create(dim, timeout)
        return {S.PROP_MODE: "binary", S.PROP_CODE_BITS: str(projection.bits), S.PROP_PROJECTION: store.name,
                S.PROP_PROJECTION_SHA: store.save(projection, timeout), S.PROP_FLOATS: floats.name,
                S.PROP_FLOATS_ENCODING: floats.encoding, S.PROP_FLOATS_KEY: floats.key}

    def _drop_binary(self) -> None:
        """Drop the floats and projection collections (after the collection itself)."""
        FloatsStore(self._call, self._read, floats_name(self.collection)).drop()
        ProjectionStore(self._call, sidecar_name(self.collection)).drop()

    def vector_columns(self, names: Sequence[str], vectors: np.ndarray) -> dict[str, Any]:
        """The vector column of rows: the vectors, or in binary mode their codes (bytes, pymilvus's
        BINARY_VECTOR values), after writing the floats to the floats collection (see the write order)."""
        if not self.code_bits():
            return {S.VECTOR_FIELD: vectors}
        self.floats().upsert(names, vectors)
        return {S.CODE_FIELD: [c.tobytes() for c in self.projection().encode(vectors)]}

    def _with_floats(self, rows: list[dict]) -> list[dict]:
        """Binary mode: rows given their `vector` from the floats collection (as a float collection's are)."""
        if rows and self.code_bits():
            found = self.floats().fetch([r[S.NAME_FIELD] for r in rows], "Strong")
            for r in rows:
                r[S.VECTOR_FIELD] = found.get(r[S.NAME_FIELD])
        return rows

    def _search_codes(self, queries: np.ndarray, top_k: int, spec: S.IndexSpec, params: dict[str, Any] | None,
                      with_meta: bool, consistency_level: str | None, filter: str, offset: int,
                      min_score: float | None) -> list[list[dict]]:
        """Binary mode: Hamming search for candidates, their floats fetched (by key), exact cosine re-ranking."""
        limit = rerank.candidates(spec, params, top_k + offset)
        res = self._read(
            "search", self.collection, data=[c.tobytes() for c in self.projection().encode(queries)], limit=limit,
            anns_field=S.CODE_FIELD, search_params=S.search_params(spec, params, depth=limit),
            output_fields=[S.META_FIELD] if with_meta else [],
            **({"filter": filter} if filter else {}),
            **({"consistency_level": consistency_level} if consistency_level else {}),
        )
        res = [list(hits) for hits in res]
        found = self.floats().fetch([h["id"] for hits in res for h in hits], consistency_level)
        out = []
        for q, hits in zip(queries, res):
            hits = [h for h in hits if h["id"] in found]  # floats gone: a delete half done, not a result
            floats = np.asarray([found[h["id"]] for h in hits], dtype=np.float32).reshape(len(hits), len(q))
            out.append(rerank.rerank(q, hits, floats, top_k, offset, min_score))
        return out

    def _search_refined(self, queries: np.ndarray, top_k: int, spec: S.IndexSpec, params: dict[str, Any] | None,
                        with_meta: bool, consistency_level: str | None, filter: str, offset: int,
                        min_score: float | None) -> list[list[dict]]:
        """IVF_SQ8 / IVF_PQ: a quantised search for `candidates` per result that returns the candidates'
        floats, then exact cosine re-ranking (catalog.rerank)."""
        limit = rerank.candidates(spec, params, top_k + offset)
        res = self._read(
            "search", self.collection, data=queries.tolist(), limit=limit, anns_field=S.VECTOR_FIELD,
            search_params=S.search_params(spec, params, depth=limit),
            output_fields=[S.VECTOR_FIELD] + ([S.META_FIELD] if with_meta else []),
            **({"filter": filter} if filter else {}),
            **({"consistency_level": consistency_level} if consistency_level else {}),
        )
        out = []
        for q, hits in zip(queries, res):
            hits = list(hits)
            floats = np.asarray([(h.get("entity") or {})[S.VECTOR_FIELD] for h in hits], dtype=np.float32)
            out.append(rerank.rerank(q, hits, floats.reshape(len(hits), -1), top_k, offset, min_score))
        return out
