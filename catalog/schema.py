"""The Milvus collection layout, index parameters and search parameters: the one place they live.

A collection holds one row per catalogue image:

    name    VARCHAR primary key   the image name (file name relative to IMAGE_ROOT); upsert by name
    vector  FLOAT_VECTOR(dim)     L2-normalised VGG16 feature; COSINE metric
    meta    JSON                  optional user metadata ({} when none)

The feature fingerprint and dimension are stored as collection properties, so a collection can refuse
vectors made by another model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymilvus import DataType, MilvusClient

NAME_FIELD = "name"
VECTOR_FIELD = "vector"
META_FIELD = "meta"
NAME_MAX_LENGTH = 1024
METRIC = "COSINE"

# Collection properties (strings in Milvus).
PROP_FINGERPRINT = "fingerprint"
PROP_DIM = "dim"
SCHEMA_VERSION = "1"
PROP_SCHEMA_VERSION = "schema_version"

# Build and search parameters per index type. Search defaults are chosen for recall@10 >= 0.95 on
# VGG16-like vectors (see bench/search.py); override them with IndexSpec.search_params.
_BUILD_DEFAULTS: dict[str, dict[str, Any]] = {
    "HNSW": {"M": 16, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "DISKANN": {},
    "FLAT": {},
}
_SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "HNSW": {"ef": 64},
    "IVF_FLAT": {"nprobe": 32},
    "IVF_SQ8": {"nprobe": 32},
    "DISKANN": {"search_list": 64},
    "FLAT": {},
}
INDEX_TYPES = tuple(_BUILD_DEFAULTS)


@dataclass(frozen=True)
class IndexSpec:
    """An index type with its build and search parameters (defaults filled in per type)."""

    index_type: str = "HNSW"
    build_params: dict[str, Any] = field(default_factory=dict)
    search_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = self.index_type.upper()
        if kind not in _BUILD_DEFAULTS:
            raise ValueError(f"unknown index type {self.index_type!r}; use one of {', '.join(INDEX_TYPES)}")
        object.__setattr__(self, "index_type", kind)
        object.__setattr__(self, "build_params", {**_BUILD_DEFAULTS[kind], **self.build_params})
        object.__setattr__(self, "search_params", {**_SEARCH_DEFAULTS[kind], **self.search_params})


DEFAULT_INDEX = IndexSpec()


def build_schema(dim: int):
    """Return the collection schema for vectors of `dim` floats."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(NAME_FIELD, DataType.VARCHAR, is_primary=True, max_length=NAME_MAX_LENGTH)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(META_FIELD, DataType.JSON)
    return schema


def build_index_params(spec: IndexSpec):
    """Return MilvusClient index params for the vector field."""
    params = MilvusClient.prepare_index_params()
    params.add_index(
        field_name=VECTOR_FIELD,
        index_type=spec.index_type,
        metric_type=METRIC,
        params=spec.build_params,
        index_name=VECTOR_FIELD,
    )
    return params


def search_params(spec: IndexSpec, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the `search_params` argument for MilvusClient.search."""
    return {"metric_type": METRIC, "params": {**spec.search_params, **(overrides or {})}}
