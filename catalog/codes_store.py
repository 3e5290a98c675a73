"""Where a binary-code collection's learned projection lives: a small sidecar collection next to it.

The projection (catalog.binary_codes: a dim x bits matrix and a mean) is 0.5-4 MB, too big for a
collection property (Milvus keeps a collection's meta in one etcd value, 1.5 MB at most), so it is kept
as rows of base64 text in `<collection>__projection` (Milvus 2.3 needs a vector field and an index to load
a collection: a 2-d dummy one, FLAT). The catalogue collection records the sidecar's name and the
projection's sha256 as properties; the sidecar is written first, so a collection that exists always has
its projection, and it survives restarts like any collection. Readers check the digest.
"""

from __future__ import annotations

import base64
from typing import Any, Callable

from pymilvus import DataType, MilvusClient

from catalog.binary_codes import Projection
from catalog.errors import CatalogError, NotLoaded

SUFFIX = "__projection"
CHUNK_CHARS = 60_000  # under VARCHAR's 65,535
_KEY, _TEXT, _DUMMY = "part", "text", "dummy"  # queries below spell "part" out (a literal filter)


def sidecar_name(collection: str) -> str:
    """The sidecar collection of `collection`."""
    return collection + SUFFIX


class ProjectionStore:
    """Save, read and drop one collection's projection through `call(method, *args, **kwargs)` (the
    Catalog's typed, reconnecting MilvusClient call)."""

    def __init__(self, call: Callable[..., Any], name: str):
        self.call = call
        self.name = name

    def save(self, projection: Projection, timeout: float = 60.0) -> str:
        """Write the projection (replacing any) and load the sidecar; returns its digest."""
        if self.call("has_collection", self.name):
            self.call("drop_collection", self.name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_KEY, DataType.INT64, is_primary=True)
        schema.add_field(_TEXT, DataType.VARCHAR, max_length=CHUNK_CHARS)
        schema.add_field(_DUMMY, DataType.FLOAT_VECTOR, dim=2)
        index = MilvusClient.prepare_index_params()
        index.add_index(field_name=_DUMMY, index_type="FLAT", metric_type="L2", index_name=_DUMMY)
        self.call("create_collection", self.name, schema=schema, index_params=index, consistency_level="Strong",
                  timeout=timeout)
        text = base64.b64encode(projection.to_bytes()).decode("ascii")
        rows = [{_KEY: i, _TEXT: text[at:at + CHUNK_CHARS], _DUMMY: [0.0, 0.0]}
                for i, at in enumerate(range(0, len(text), CHUNK_CHARS))]
        for start in range(0, len(rows), 50):  # gRPC messages stay a few MB
            self.call("insert", self.name, rows[start:start + 50])
        self.call("flush", self.name, timeout=timeout)
        return projection.digest()

    def load(self, digest: str | None = None) -> Projection:
        """The stored projection; CatalogError when it is missing or is not the one `digest` names."""
        if not self.call("has_collection", self.name):
            raise CatalogError(f"the projection of this binary-code collection is missing ({self.name!r}): "
                               "re-import the catalogue into a new collection")
        try:
            rows = self.call("query", self.name, filter="part >= 0", output_fields=[_KEY, _TEXT],
                             consistency_level="Strong")
        except NotLoaded:  # a restarted server loads collections in the background
            self.call("load_collection", self.name, timeout=None)
            rows = self.call("query", self.name, filter="part >= 0", output_fields=[_KEY, _TEXT],
                             consistency_level="Strong")
        text = "".join(r[_TEXT] for r in sorted(rows, key=lambda r: r[_KEY]))
        try:
            projection = Projection.from_bytes(base64.b64decode(text))
        except ValueError as exc:
            raise CatalogError(f"the projection stored in {self.name!r} is damaged ({exc})") from exc
        if digest and projection.digest() != digest:
            raise CatalogError(f"the projection stored in {self.name!r} is not the one the collection was built "
                               "with (digest differs): re-import the catalogue into a new collection")
        return projection

    def drop(self) -> None:
        """Drop the sidecar (with its collection)."""
        if self.call("has_collection", self.name):
            self.call("drop_collection", self.name)
