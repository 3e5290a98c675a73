"""`loader import --index BIN_ITQ256` against the real Milvus: codes learned from the file, the mode kept
by the collection, and the clear refusals (bulk mode, a float collection, too few dimensions); and
`--index DISKANN` refused at once by a server that cannot build it (the PyPI one) instead of hanging."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import schema as S
from loader.importer import ImportOptions, finish_collection, inspect_file, prepare_collection
from tests.loader.conftest import run_loader, write_classic

pytestmark = pytest.mark.integration


def test_import_into_binary_codes_then_reimport_keeps_the_projection(milvus_server, catalog, tmp_path, state_dir):
    vectors, names = write_classic(tmp_path / "a.h5", 1200, dim=256, attrs={"fingerprint": "fp-a"})
    base = ["--milvus-uri", milvus_server.uri, "--collection", catalog.collection, "-q"]
    res = run_loader("import", str(tmp_path / "a.h5"), *base, "--index", "BIN_ITQ256", "--code-sample", "1000",
                     "--index-params", '{"nlist": 32}')  # the default 1024 lists for 1,200 rows is slow
    assert res.returncode == 0, res.stderr
    assert catalog.count() == 1200 and catalog.code_bits() == 256
    assert catalog.index_spec().index_type == "BIN_ITQ256" and catalog.is_loaded()
    digest = catalog.properties()[S.PROP_PROJECTION_SHA]
    unit = vectors[11] / np.linalg.norm(vectors[11])
    hit = catalog.search(unit[None, :], top_k=1, consistency_level="Strong")[0][0]
    # re-ranked with the int8-stored vectors (--rerank-floats int8, the default): within their rounding
    assert hit["name"] == names[11] and hit["score"] == pytest.approx(1.0, abs=1e-3)
    assert catalog.properties()[S.PROP_FLOATS_ENCODING] == "int8"

    # A second import (default --index) upserts through the same projection.
    assert run_loader("import", str(tmp_path / "a.h5"), *base).returncode == 0
    assert catalog.count() == 1200 and catalog.properties(refresh=True)[S.PROP_PROJECTION_SHA] == digest


def _load_state(uri: str, name: str) -> str:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        return str(client.get_load_state(name)["state"])
    finally:
        client.close()


def test_a_new_binary_collection_is_written_released_and_loaded_once_indexed(milvus_server, catalog, tmp_path):
    # Written to while loaded, the query node would hold every row in growing segments (10M: 20 GB).
    vectors, names = write_classic(tmp_path / "a.h5", 1200, dim=256)
    opts = ImportOptions(index=S.binary_spec(256, {"nlist": 32}), code_sample=1000)
    src = inspect_file(tmp_path / "a.h5", opts, None)
    prepare_collection(catalog, src, False, index=opts.index, code_sample=1000)
    floats = catalog.floats().name
    assert catalog.code_bits() == 256
    assert "NotLoad" in _load_state(milvus_server.uri, floats)
    assert "NotLoad" in _load_state(milvus_server.uri, catalog.collection)
    catalog.floats().upsert(names[:5], vectors[:5])
    finish_collection(catalog, opts.index, retry_seconds=30)
    assert _load_state(milvus_server.uri, floats).endswith("Loaded")
    assert catalog.is_loaded()


def test_rerank_floats_float32_keeps_exact_scores(milvus_server, catalog, tmp_path, state_dir):
    vectors, names = write_classic(tmp_path / "a.h5", 1200, dim=256)
    res = run_loader("import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri, "--collection",
                     catalog.collection, "-q", "--index", "BIN_ITQ256", "--code-sample", "1000",
                     "--index-params", '{"nlist": 32}', "--rerank-floats", "float32")
    assert res.returncode == 0, res.stderr
    assert catalog.properties()[S.PROP_FLOATS_ENCODING] == "float32"
    unit = vectors[7] / np.linalg.norm(vectors[7])
    hit = catalog.search(unit[None, :], top_k=1, consistency_level="Strong")[0][0]
    assert hit["name"] == names[7] and hit["score"] == pytest.approx(1.0, abs=1e-5)


def test_binary_modes_refuse_bulk_mode_float_collections_and_narrow_vectors(milvus_server, catalog, tmp_path,
                                                                          state_dir):
    base = ["--milvus-uri", milvus_server.uri, "--collection", catalog.collection, "-q"]
    write_classic(tmp_path / "n.h5", 200, dim=64)
    res = run_loader("import", str(tmp_path / "n.h5"), *base, "--index", "BIN_ITQ256")
    assert res.returncode == 1
    assert res.stderr.strip() == ("Error: cannot use BIN_ITQ256: 256-bit codes need vectors of at least 256 "
                                  "dimensions; these have 64")
    assert not catalog.exists()
    write_classic(tmp_path / "w.h5", 1200, dim=256)
    res = run_loader("import", str(tmp_path / "w.h5"), *base, "--index", "BIN_ITQ256", "--mode", "bulk",
                     "--bulk-dir", str(tmp_path / "bulk"), "--code-sample", "1000")
    assert res.returncode == 1 and "binary-code collections are imported with --mode insert" in res.stderr
    assert not catalog.exists()
    assert run_loader("import", str(tmp_path / "w.h5"), *base).returncode == 0  # a float collection
    res = run_loader("import", str(tmp_path / "w.h5"), *base, "--index", "BIN_ITQ512")
    assert res.returncode == 1
    assert f"collection '{catalog.collection}' stores float vectors; --index BIN_ITQ512 needs" in res.stderr


def test_diskann_is_refused_up_front_where_the_server_cannot_build_it(milvus_server, catalog, tmp_path, state_dir):
    """The `milvus` PyPI server fails DiskANN builds and retries them forever: the import must not wait."""
    write_classic(tmp_path / "d.h5", 300, dim=32)
    # A hang guard, not a timing threshold: the refusal takes seconds, a retried build never ends.
    res = run_loader("import", str(tmp_path / "d.h5"), "--milvus-uri", milvus_server.uri, "--collection",
                     catalog.collection, "-q", "--index", "DISKANN", timeout=180)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith(f"Error: the Milvus server at {milvus_server.uri} cannot build DISKANN indexes")
    assert "--index IVF_SQ8 or IVF_PQ" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not catalog.exists()
    assert not [c for c in catalog.client.list_collections() if c.startswith("diskann_probe_")]
