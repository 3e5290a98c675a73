"""Compact modes on a real Milvus (issue 20): each returns what exact search returns on a catalogue at
its configured recall (on 10k rows: the same behaviour as 20k in half the time); a binary-code collection keeps its projection across a server restart, takes single
inserts and deletes in the write order that keeps a half-done one unsearchable, gives back float vectors
like a float collection (stored as int8 for re-ranking, or float32 as older collections do), and is
dropped with its floats and projection collections.

One Milvus server for the module (its own: one test restarts it), the binary catalogue built once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from catalog import Catalog, IndexSpec
from catalog import schema as S
from catalog.binary_codes import train_itq
from catalog.codes_store import sidecar_name
from catalog.errors import CatalogError
from catalog import modes
from catalog.modes import floats_name
from loader.importer import wait_indexed
from tests.conftest import killable_milvus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _search_data import FeatureLikeVectors  # noqa: E402

pytestmark = pytest.mark.integration

N, DIM, QUERIES = 10_000, 256, 50  # 256-d: the fewest dimensions 256-bit codes can be learned from
FP = "bench-feature-like-256"


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """The module's own Milvus (not the session's: test_the_projection_survives_a_restart restarts it)."""
    server = killable_milvus(tmp_path_factory.mktemp("milvus_compact")).start()
    yield server
    server.stop(grace=0)  # its data goes with the session's temporary directory


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """10k broad-preset (ImageNet-VGG-like) 256-d vectors, 50 queries and their exact top 10."""
    gen = FeatureLikeVectors.preset("b", N, seed=5, presets={"b": {"dim": DIM, "cluster_shape": 1.0,
                                                                   "point_shape": 4.0, "silent": 0.2}})
    rng = np.random.default_rng(6)
    x, q = gen.sample(N, rng), gen.sample(QUERIES, rng)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    return [f"img_{i:06d}.jpg" for i in range(N)], x, q, truth


def fill(cat: Catalog, names, x, spec: IndexSpec, projection=None, floats_encoding="int8") -> None:
    cat.create(DIM, FP, index=None, projection=projection, floats_encoding=floats_encoding)
    for start in range(0, len(names), 5000):
        cat.upsert(names[start:start + 5000], x[start:start + 5000])
    cat.flush()
    cat.build_index(spec)
    cat.load()


def recall(cat: Catalog, names, q, truth, spec: IndexSpec | None = None) -> float:
    hits = cat.search(q, top_k=10, index=spec, with_meta=False, consistency_level="Strong")
    found = sum(len({h["name"] for h in hs} & {names[i] for i in t}) for hs, t in zip(hits, truth))
    return found / truth.size


# IVF_PQ with m = 16, nbits = 6 (12-byte codes per 256-d vector): the default (m = dim / 4, 8 bits) trains
# 256-centroid quantisers and builds many times slower, for the same behaviour under test.
@pytest.mark.parametrize("kind, build, goal", [("IVF_SQ8", {}, 0.95), ("IVF_PQ", {"m": 16, "nbits": 6}, 0.95)])
def test_float_compact_modes_find_what_exact_search_finds(milvus_server, data, kind, build, goal):
    names, x, q, truth = data
    cat = Catalog(milvus_server.uri, collection=f"t_{kind.lower()}", timeout=60)
    cat.drop()
    try:
        fill(cat, names, x, IndexSpec(kind, build_params={"nlist": 64, **build}))  # 10k rows: ~150 per list
        assert cat.index_spec().index_type == kind
        got = recall(cat, names, q, truth, cat.index_spec())
        assert got >= goal, f"{kind}: recall@10 {got:.3f}"
    finally:
        cat.drop()
        cat.close()


@pytest.fixture(scope="module")
def binary(milvus_server, data):
    """A 256-bit ITQ collection of the catalogue, built once for the module."""
    names, x, _, _ = data
    cat = Catalog(milvus_server.uri, collection="t_binary_itq", timeout=60)
    cat.drop()
    proj = train_itq(x[:5000], 256, iterations=20)
    fill(cat, names, x, S.binary_spec(256, {"nlist": 64}), projection=proj)
    yield cat, proj
    cat.drop()
    cat.close()


def test_binary_codes_with_reranking_find_what_exact_search_finds(binary, data):
    cat, _ = binary
    names, _, q, truth = data
    assert cat.index_spec().index_type == "BIN_ITQ256"
    got = recall(cat, names, q, truth, cat.index_spec())
    assert got >= 0.9, f"recall@10 {got:.3f}"
    hits = cat.search(q[:1], top_k=10)[0]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # re-ranked with the int8-stored vectors: the exact cosine within their rounding
    assert hits[0]["score"] == pytest.approx(float(q[0] @ data[1][names.index(hits[0]["name"])]), abs=2e-3)
    desc = cat.client.describe_collection(floats_name(cat.collection))
    vec = next(f for f in desc["fields"] if f["name"] == S.VECTOR_FIELD)
    assert int(vec["params"]["dim"]) == 8 * DIM  # one byte a dimension: a quarter of float32's memory
    # keyed by a hash of the name: the names are stored once, in the codes collection
    assert [f["name"] for f in desc["fields"] if f.get("is_primary")] == [modes.KEY_FIELD]
    assert cat.properties()[S.PROP_FLOATS_KEY] == "hash64"
    assert cat.client.get(floats_name(cat.collection), ids=[modes.name_key(names[3])], output_fields=["key"])
    assert len(cat.floats().fetch(names)) == len(names)  # every row's vector is found by its key


def test_an_older_name_keyed_float32_floats_collection_reranks_exactly(milvus_server, data, monkeypatch):
    """What binary collections made before the int8 encoding and the hashed keys store (float32 vectors keyed
    by name); they read, search, take writes and deletes as before."""
    names, x, q, truth = data
    cat = Catalog(milvus_server.uri, collection="t_binary_f32", timeout=60)
    cat.drop()
    monkeypatch.setattr(modes, "NEW_FLOATS_KEY", "name")
    try:
        fill(cat, names, x, S.binary_spec(256, {"nlist": 64}), train_itq(x[:5000], 256, iterations=5), "float32")
        assert cat.properties()[S.PROP_FLOATS_ENCODING] == "float32"
        desc = cat.client.describe_collection(floats_name(cat.collection))
        assert [f["name"] for f in desc["fields"] if f.get("is_primary")] == [S.NAME_FIELD]
        cat.delete([names[1]])
        assert cat.floats().fetch([names[1], names[2]], "Strong").keys() == {names[2]}
        assert recall(cat, names, q, truth, cat.index_spec()) >= 0.9
        hit = cat.search(q[:1], top_k=1)[0][0]
        assert hit["score"] == pytest.approx(float(q[0] @ x[names.index(hit["name"])]), abs=1e-5)
        row = cat.get([names[5]], with_vectors=True)[0]
        np.testing.assert_allclose(row["vector"], x[5] / np.linalg.norm(x[5]), atol=1e-6)
    finally:
        cat.drop()
        cat.close()


def test_the_projection_survives_a_restart_and_gives_the_same_results(binary, milvus_server, data):
    cat, proj = binary
    _, _, q, _ = data
    before = cat.search(q[:5], top_k=10, consistency_level="Strong")
    milvus_server.kill()  # everything is flushed: a crash loses nothing
    milvus_server.start()
    again = Catalog(milvus_server.uri, collection=cat.collection, timeout=60)
    try:
        assert again.projection().digest() == proj.digest()
        assert again.search(q[:5], top_k=10, consistency_level="Strong") == before
        props = again.properties()
        assert props[S.PROP_MODE] == "binary" and props[S.PROP_CODE_BITS] == "256"
        assert props[S.PROP_PROJECTION] == sidecar_name(cat.collection)
        assert props[S.PROP_FLOATS] == floats_name(cat.collection) and props[S.PROP_FLOATS_ENCODING] == "int8"
        assert again.dim() == DIM
    finally:
        again.close()


def test_binary_mode_takes_single_inserts_and_deletes_and_returns_float_vectors(binary, data):
    cat, _ = binary
    _, x, q, _ = data
    v = q[7] / np.linalg.norm(q[7])
    cat.upsert(["new.jpg"], v[None, :], [{"k": 1}])
    assert cat.search(v[None, :], top_k=1, consistency_level="Strong")[0][0]["name"] == "new.jpg"
    row = cat.get(["new.jpg"], with_vectors=True)[0]
    assert row["meta"] == {"k": 1} and np.allclose(row["vector"], v, atol=3e-3)  # int8-stored, normalised
    assert float(row["vector"] @ v) > 0.999
    cat.delete(["new.jpg"])
    hits = cat.search(v[None, :], top_k=3, consistency_level="Strong")[0]
    assert "new.jpg" not in {h["name"] for h in hits}
    assert cat.get(["new.jpg"]) == []
    assert cat.floats().fetch(["new.jpg"]) == {}  # the floats went with the code


def test_a_half_done_binary_write_is_never_a_result_and_a_rerun_repairs_it(binary, data):
    """Upserts write the floats first, deletes remove the code first: the state a crash between the two
    leaves is either floats without a code (invisible) or, from outside, a code without floats (skipped)."""
    cat, _ = binary
    names, x, q, _ = data
    v = q[9] / np.linalg.norm(q[9])
    cat.floats().upsert(["half.jpg"], v[None, :])  # crashed after the floats
    assert cat.search(v[None, :], top_k=1, consistency_level="Strong")[0][0]["name"] != "half.jpg"
    cat.upsert(["half.jpg"], v[None, :])  # the rerun
    assert cat.search(v[None, :], top_k=1, consistency_level="Strong")[0][0]["name"] == "half.jpg"
    cat.delete(["half.jpg"])
    victim = names[123]
    cat.floats().delete([victim])  # a code whose floats are gone is skipped, not an error
    hits = cat.search(x[123][None, :], top_k=5, consistency_level="Strong")[0]
    assert victim not in {h["name"] for h in hits} and len(hits) == 5
    cat.upsert([victim], x[123][None, :])
    assert cat.search(x[123][None, :], top_k=1, consistency_level="Strong")[0][0]["name"] == victim


def test_a_float_collection_refuses_a_binary_index(milvus_server, collection_name):
    cat = Catalog(milvus_server.uri, collection=collection_name)
    try:
        cat.create(DIM, FP, index=None)
        with pytest.raises(CatalogError, match="binary-code collection"):
            cat.build_index(S.binary_spec(256))
    finally:
        cat.drop()
        cat.close()


def test_the_search_service_follows_the_binary_mode_and_refuses_another_backbone(binary, milvus_server, data,
                                                                                  tmp_path):
    """No configuration: a fresh app (as after a restart) reads the mode and projection from the collection."""
    from search_service.app import create_app
    from search_service.config import Config
    from tests.search.fakes import FakeExtractor

    cat, _ = binary
    names, x, q, _ = data
    results = []
    for _ in range(2):  # two apps, each with its own Catalog: the second is the restarted service
        own = Catalog(milvus_server.uri, collection=cat.collection)
        app = create_app(Config(milvus_uri=milvus_server.uri, collection=cat.collection,
                                image_root=str(tmp_path / "images"), guard_ttl=0.0),
                         catalog=own, extractor=FakeExtractor(fingerprint=FP))
        client = app.test_client()
        resp = client.post("/v1/search", json={"vector": q[3].tolist(), "top_k": 5})
        assert resp.status_code == 200, resp.get_json()
        results.append([h["name"] for h in resp.get_json()["results"]])
        stats = client.get("/v1/stats").get_json()
        assert stats["index"]["type"] == "BIN_ITQ256" and stats["dim"] == DIM
        own.close()
    assert results[0] == results[1] and len(results[0]) == 5
    resp = client.post("/v1/search", json={"vector": q[3].tolist(), "fingerprint": "other-backbone-1"})
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "fingerprint_mismatch"
    by_name = client.post("/v1/search", json={"name": names[9], "top_k": 1}).get_json()
    assert by_name["results"][0]["name"] == names[9]


def test_drop_drops_the_floats_and_the_projection(binary):
    """Last in the module: drops the module's binary collection."""
    cat, _ = binary
    assert cat.client.has_collection(floats_name(cat.collection))
    cat.drop()
    for name in (cat.collection, floats_name(cat.collection), sidecar_name(cat.collection)):
        assert not cat.client.has_collection(name)


@pytest.mark.xfail(strict=True, raises=CatalogError, reason=(
    "Milvus 2.3.5 on local storage (the PyPI server `make run` uses): reading vectors from an index without "
    "raw data goes through its chunk cache, which rewrites the segment's vector binlog in place; after a "
    "restart the vectors cannot be read (`invalid local path`). docs/SCALING.md, 'IVF_SQ8 / IVF_PQ on local "
    "storage'. Strict: when a server fixes it, this passes and says so."))
def test_ivf_sq8_vectors_stay_readable_across_a_restart(milvus_server, data):
    names, x, _, _ = data
    cat = Catalog(milvus_server.uri, collection="t_ivf_restart", timeout=60)
    cat.drop()
    try:
        fill(cat, names, x, IndexSpec("IVF_SQ8", build_params={"nlist": 64}))
        assert wait_indexed(cat, retry_seconds=30, stall_s=120)
        cat.client.release_collection(cat.collection)  # reloaded: the indexed segments, no raw vectors
        cat.load()
        pick = names[::1999]
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        for row in cat.get(pick, with_vectors=True):  # read through the chunk cache: exact
            np.testing.assert_allclose(row["vector"], unit[names.index(row["name"])], atol=1e-6)
        milvus_server.kill()
        milvus_server.start()
        again = Catalog(milvus_server.uri, collection=cat.collection, timeout=60)
        try:
            rows = again.get(pick, with_vectors=True)
            assert sorted(r["name"] for r in rows) == sorted(pick)
        finally:
            again.close()
    finally:
        cat.drop()
        cat.close()
