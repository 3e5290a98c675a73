"""The Milvus collection layout, index parameters and search parameters: the one place they live.

A collection holds one row per catalogue image:

    name    VARCHAR primary key   the image name (file name relative to IMAGE_ROOT); upsert by name
    vector  FLOAT_VECTOR(dim)     L2-normalised feature of the extractor's backbone; COSINE metric
    meta    JSON                  optional user metadata ({} when none)
    <field> VARCHAR/INT64/DOUBLE/BOOL   optional scalar fields declared at creation (`--scalar-field
                                  category`): copies of `meta[<field>]` with a scalar index, for fast filters

The feature fingerprint, dimension and declared scalar fields are stored as collection properties, so a
collection can refuse vectors made by another model and the search service finds its fields.

A binary-code collection (index `BIN_ITQ256` / `BIN_ITQ512`, chosen at creation) holds instead of `vector`:

    code        BINARY_VECTOR(bits)  the vector's learned code (catalog.binary_codes), Hamming-searched

and its float vectors, for re-ranking, live in a second collection `<collection>__floats` (keyed by a
64-bit hash of the name; the vectors as int8 bytes, or float32), its projection in a third (catalog.modes,
catalog.codes_store). Its properties add `vector_mode` = binary, `code_bits`, `floats_collection`,
`floats_encoding`, `floats_key`, and the projection's store and digest.
"""

from __future__ import annotations

import json
import re
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
PROP_SCALAR_FIELDS = "scalar_fields"  # JSON {"category": "str", ...}
PROP_MODE = "vector_mode"  # "float" (absent in older collections) or "binary"
PROP_CODE_BITS = "code_bits"  # binary mode: bits per code
PROP_PROJECTION = "projection"  # binary mode: the collection that stores the learned projection
PROP_PROJECTION_SHA = "projection_sha256"  # binary mode: digest of the stored projection
PROP_FLOATS = "floats_collection"  # binary mode: the collection of the float vectors (re-ranking)
PROP_FLOATS_ENCODING = "floats_encoding"  # binary mode: "int8" or "float32" (absent in older collections)
PROP_FLOATS_KEY = "floats_key"  # binary mode: "hash64" (a hash of the name) or, absent in older ones, "name"

CODE_FIELD = "code"  # binary mode: BINARY_VECTOR(bits)
HAMMING = "HAMMING"

# Scalar field types a collection can declare: Milvus type, the value a row without the key stores (Milvus
# 2.3 has no nullable fields), and the scalar index Milvus 2.3 builds for it (2.4+ also has INVERTED).
SCALAR_TYPES: dict[str, tuple[DataType, Any, str | None]] = {
    "str": (DataType.VARCHAR, "", "Trie"),
    "int": (DataType.INT64, 0, "STL_SORT"),
    "float": (DataType.DOUBLE, 0.0, "STL_SORT"),
    "bool": (DataType.BOOL, False, None),
}
SCALAR_MAX_LENGTH = 512
RESERVED_FIELDS = (NAME_FIELD, VECTOR_FIELD, META_FIELD)
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Build and search parameters per index type. Search defaults are chosen for recall@10 >= 0.95 on
# VGG16-like vectors (see bench/search.py, bench/scale.py); override them with IndexSpec.search_params.
# IVF_PQ's m = 0 means dim / 4 sub-quantizers of `nbits` (one byte each: a 16th of the float vector);
# `candidates` (binary modes, IVF_SQ8, IVF_PQ) is how many coarse hits per wanted result are re-ranked by
# exact cosine (catalog.rerank); 0 turns re-ranking off for the float ones.
_BUILD_DEFAULTS: dict[str, dict[str, Any]] = {
    "HNSW": {"M": 16, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "IVF_PQ": {"nlist": 1024, "m": 0, "nbits": 8},
    "DISKANN": {},
    "FLAT": {},
    "BIN_ITQ256": {"nlist": 1024},
    "BIN_ITQ512": {"nlist": 1024},
}
_SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "HNSW": {"ef": 64},
    "IVF_FLAT": {"nprobe": 32},
    # Measured at 10M x 512-d (docs/SCALING.md): SQ8's own order holds 0.93 of the exact top 10 at 48 of
    # 1,024 probes; re-ranking twice the results brings 0.966, and each candidate costs a float read
    # (~0.6 ms through the chunk cache), so few candidates and more probes: p50 42 ms.
    "IVF_SQ8": {"nprobe": 48, "candidates": 2},
    # At 10M x 512-d (docs/SCALING.md) 32 probes capped recall@10 at 0.943 whatever was re-ranked; 48 give
    # 0.963 for +8 ms (p50 ~71 ms), 64 give 0.975; 40 candidates instead of 20 add 0.002 for +20 ms.
    "IVF_PQ": {"nprobe": 48, "candidates": 20},
    "DISKANN": {"search_list": 64},
    "FLAT": {},
    # Hamming lists are cheap to scan (32-64 B a row), so probe 1/8 of them; 50 candidates per result:
    # exhaustive Hamming top-500 held 0.95 / 0.963 of the exact top 10 at 1M (256 / 512 bits), top-200 0.915
    # / 0.935 (docs/SCALING.md).
    "BIN_ITQ256": {"nprobe": 128, "candidates": 50},
    "BIN_ITQ512": {"nprobe": 128, "candidates": 50},
}
INDEX_TYPES = tuple(_BUILD_DEFAULTS)
# Our binary modes: bits per code, and the Milvus index each builds on the code field.
BINARY_MODES = {"BIN_ITQ256": 256, "BIN_ITQ512": 512}
BINARY_MILVUS_INDEX = "BIN_IVF_FLAT"
MAX_CANDIDATES = 16384  # Milvus's largest search limit


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

    @property
    def code_bits(self) -> int | None:
        """Bits per code for a binary mode, None for float indexes."""
        return BINARY_MODES.get(self.index_type)


DEFAULT_INDEX = IndexSpec()


def binary_spec(bits: int, build_params: dict[str, Any] | None = None) -> IndexSpec:
    """The IndexSpec of the binary mode with `bits`-bit codes."""
    for kind, b in BINARY_MODES.items():
        if b == bits:
            return IndexSpec(kind, build_params=build_params or {})
    raise ValueError(f"no binary mode with {bits}-bit codes; use one of {sorted(BINARY_MODES.values())}")


def parse_scalar_fields(specs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["category", "price:float"]` -> {"category": "str", "price": "float"}; ValueError says what is wrong."""
    out: dict[str, str] = {}
    for spec in specs:
        name, _, kind = spec.partition(":")
        name, kind = name.strip(), (kind.strip().lower() or "str")
        if not _FIELD_NAME.match(name) or name in RESERVED_FIELDS:
            raise ValueError(f"scalar field {name!r}: use letters, digits and underscores, starting with a letter, "
                             f"and not one of {', '.join(RESERVED_FIELDS)}")
        if kind not in SCALAR_TYPES:
            raise ValueError(f"scalar field {name!r}: type {kind!r} is not one of {', '.join(SCALAR_TYPES)}")
        out[name] = kind
    return out


def scalar_value(kind: str, value: Any) -> Any:
    """A meta value as the declared field stores it; the type's empty value when missing or not convertible."""
    default = SCALAR_TYPES[kind][1]
    if value is None or isinstance(value, (dict, list)):
        return default
    try:
        if kind == "str":
            return str(value)[:SCALAR_MAX_LENGTH]
        if kind == "bool":
            return value if isinstance(value, bool) else default
        if isinstance(value, bool):
            return default
        return int(value) if kind == "int" else float(value)
    except (TypeError, ValueError, OverflowError):
        return default


def build_schema(dim: int, scalar_fields: dict[str, str] | None = None, code_bits: int | None = None):
    """Return the collection schema for vectors of `dim` floats, with the declared scalar fields; with
    `code_bits`, the binary mode's (codes instead of the float vector field; catalog.modes)."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(NAME_FIELD, DataType.VARCHAR, is_primary=True, max_length=NAME_MAX_LENGTH)
    if code_bits:
        schema.add_field(CODE_FIELD, DataType.BINARY_VECTOR, dim=code_bits)
    else:
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(META_FIELD, DataType.JSON)
    for name, kind in (scalar_fields or {}).items():
        dtype = SCALAR_TYPES[kind][0]
        extra = {"max_length": SCALAR_MAX_LENGTH} if dtype == DataType.VARCHAR else {}
        schema.add_field(name, dtype, **extra)
    return schema


def vector_field(spec_or_bits: IndexSpec | int | None) -> str:
    """The field a collection's ANN index is on: the code field in binary mode, else the vector field."""
    bits = spec_or_bits.code_bits if isinstance(spec_or_bits, IndexSpec) else spec_or_bits
    return CODE_FIELD if bits else VECTOR_FIELD


def milvus_build_params(spec: IndexSpec, dim: int | None = None) -> tuple[str, str, dict[str, Any]]:
    """(Milvus index type, metric, build params) of `spec`: binary modes build BIN_IVF_FLAT with Hamming
    distance on the codes; IVF_PQ's m = 0 becomes dim / 4 (Milvus needs m to divide dim)."""
    params = dict(spec.build_params)
    if spec.code_bits:
        return BINARY_MILVUS_INDEX, HAMMING, params
    if spec.index_type == "IVF_PQ" and not int(params.get("m") or 0):
        if not dim:
            raise ValueError("IVF_PQ with m = 0 (dim / 4) needs the vector dimension")
        params["m"] = max(1, dim // 4)
    return spec.index_type, METRIC, params


def build_index_params(spec: IndexSpec | None, scalar_fields: dict[str, str] | None = None, dim: int | None = None):
    """Return MilvusClient index params: the vector index (when `spec`) and the scalar fields' indexes."""
    params = MilvusClient.prepare_index_params()
    if spec is not None:
        index_type, metric, build = milvus_build_params(spec, dim)
        field_name = vector_field(spec)
        params.add_index(field_name=field_name, index_type=index_type, metric_type=metric, params=build,
                         index_name=field_name)
    for name, kind in (scalar_fields or {}).items():
        index_type = SCALAR_TYPES[kind][2]
        if index_type:
            params.add_index(field_name=name, index_type=index_type, index_name=name)
    return params


def scalar_fields_property(scalar_fields: dict[str, str] | None) -> str:
    """The collection property that records the declared scalar fields."""
    return json.dumps(scalar_fields or {}, sort_keys=True)


# A filtered HNSW search walks the graph past the rows the filter drops, so it needs a wider beam for the
# same recall; bench/search.py measures the recall and latency this factor gives (README, Benchmarks).
# Milvus's partition key is not used: on 2.3.5 a filter on the key missed most rows (README, Benchmarks).
FILTERED_EF_FACTOR = 4


def search_params(spec: IndexSpec, overrides: dict[str, Any] | None = None, *, depth: int = 0,
                  min_score: float | None = None, filtered: bool = False) -> dict[str, Any]:
    """Return the `search_params` argument for MilvusClient.search.

    `depth` (top_k + offset) raises HNSW's `ef` to at least it (Milvus refuses ef < k); a `filtered` search
    gets FILTERED_EF_FACTOR times the ef. `min_score` makes it a range search: COSINE returns hits with
    `radius < score <= range_filter`, so radius sits just below the threshold (the caller drops the
    rounding's strays) and range_filter just above 1.
    """
    params = {**spec.search_params, **(overrides or {})}
    params.pop("candidates", None)  # ours (catalog.rerank), not Milvus's
    if spec.code_bits:  # the coarse Hamming search
        params.pop("ef", None)
        return {"metric_type": HAMMING, "params": params}
    if "ef" in params:
        ef = int(params["ef"]) * (FILTERED_EF_FACTOR if filtered else 1)
        params["ef"] = max(ef, depth)
    if min_score is not None:
        params.update(radius=float(min_score) - 1e-6, range_filter=1.0 + 1e-6)
    return {"metric_type": METRIC, "params": params}
