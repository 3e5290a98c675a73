"""The fake catalogue is honest: one scenario, the same expected transcript, on FakeCatalog (unit) and on the
real Catalog over Milvus (integration). When the real Catalog changes behaviour, its half fails here
before the unit tests built on the fake can mislead anyone."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import schema as S
from catalog.errors import CallFailed, CatalogError, DimensionMismatch, FingerprintMismatch, MilvusUnavailable
from catalog.filters import to_expression
from search_service.ports import CatalogPort
from tests.search.conftest import BOTH_CATALOGUES, FakeCatalog, wait_until

NAMES = ["a.jpg", "cats/b.jpg", "c.jpg", 'd "quoted" \\ name.jpg']
VECTORS = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0.2, 1, 0, 0], [-0.5, 0, 1, 1]], dtype=np.float32)
METAS = [{"colour": "red"}, {}, {"n": [1, 2], "deep": {"x": None}}, {"q": 'it\'s "quoted"'}]


def _error(fn) -> str:
    """The CatalogError subclass `fn()` raises (a failure when it raises nothing)."""
    try:
        fn()
    except CatalogError as exc:
        return type(exc).__name__
    raise AssertionError("expected a CatalogError")


def _rows(rows: list[dict]) -> list[dict]:
    """Rows sorted by name, vectors rounded: comparable across the fake and Milvus."""
    out = []
    for r in sorted(rows, key=lambda r: r["name"]):
        r = dict(r)
        if "vector" in r:
            r["vector"] = [round(float(x), 4) for x in r["vector"]]
        out.append(r)
    return out


def _hits(result: list[list[dict]]) -> list[list[tuple]]:
    return [[(h["name"], round(h["score"], 4), h["meta"]) for h in hits] for hits in result]


def scenario(cat, switch) -> dict:
    """One short life of a collection, as plain values."""
    t: dict = {"exists_before": cat.exists()}
    t["missing"] = {call: _error(fn) for call, fn in {
        "properties": lambda: cat.properties(refresh=True), "count": cat.count,
        "get": lambda: cat.get(["a.jpg"])}.items()}
    t["created"] = cat.ensure(4, "fp-a")
    t["ensured_again"] = cat.ensure(4, "fp-a")
    props = cat.properties(refresh=True)
    t["props"] = {k: props.get(k) for k in (S.PROP_FINGERPRINT, S.PROP_DIM, S.PROP_SCHEMA_VERSION)}
    t["dim"], t["index"], t["loaded"] = cat.dim(), cat.index_spec(), cat.is_loaded()
    with pytest.raises(FingerprintMismatch) as fp:
        cat.ensure(4, "fp-b")
    with pytest.raises(DimensionMismatch) as dim:
        cat.ensure(5, "fp-a")
    t["mismatch"] = (fp.value.expected, fp.value.got, dim.value.have, dim.value.got)
    t["forced"] = cat.ensure(4, "fp-b", force=True)

    t["upserted"] = cat.upsert(NAMES, VECTORS, METAS)
    t["count"] = cat.count()
    t["existing"] = sorted(cat.existing(["a.jpg", "nope.jpg", NAMES[3]]))
    t["get"] = _rows(cat.get(["a.jpg", "nope.jpg", NAMES[3]]))
    t["get_vectors"] = _rows(cat.get(["cats/b.jpg"], with_vectors=True))
    t["search"] = _hits(cat.search(np.array([1, 0, 0, 0], np.float32), top_k=3, consistency_level="Strong"))
    t["search_two"] = _hits(cat.search(VECTORS[[2, 3]] * 7, top_k=1, consistency_level="Strong"))
    q = np.array([1, 0, 0, 0], np.float32)
    t["filtered"] = _hits(cat.search(q, top_k=3, consistency_level="Strong", filter=to_expression({"colour": "red"})))
    t["filtered_in"] = _hits(cat.search(q, top_k=3, consistency_level="Strong",
                                        filter=to_expression({"colour": {"in": ["red", "blue"]}, "v": {"ne": 1}})))
    t["offset"] = _hits(cat.search(q, top_k=2, offset=1, consistency_level="Strong"))
    t["min_score"] = _hits(cat.search(q, top_k=3, min_score=0.5, consistency_level="Strong"))
    t["min_score_none"] = _hits(cat.search(q, top_k=3, min_score=0.9999, offset=1, consistency_level="Strong"))
    t["rows"] = sorted(r["name"] for batch in cat.iter_rows(3, with_vectors=False) for r in batch)
    t["rows_vectors"] = sorted(len(r["vector"]) for batch in cat.iter_rows(2) for r in batch)
    t["wrong_dim"] = (_error(lambda: cat.upsert(["x.jpg"], np.ones((1, 5), np.float32))),
                      _error(lambda: cat.search(np.ones(5, np.float32), top_k=1)))

    cat.upsert(["a.jpg"], np.array([[0, 0, 0, 1]], np.float32), [{"v": 2}])  # replace by name
    cat.delete(["cats/b.jpg", "nope.jpg"])
    t["after_replace_delete"] = (cat.count(), _rows(cat.get(["a.jpg", "cats/b.jpg"])))
    t["empty_inputs"] = (cat.get([]), cat.existing([]), cat.upsert([], np.zeros((0, 4), np.float32)))

    switch.down()
    try:
        t["down"] = _error(cat.count)
    finally:
        switch.up()
    assert wait_until(lambda: _reachable(cat), timeout=60), "did not reconnect"
    cat.drop()
    t["exists_after_drop"] = cat.exists()
    return t


def _reachable(cat) -> bool:
    try:
        return cat.count() == 3
    except MilvusUnavailable:
        return False


EXPECTED = {
    "exists_before": False,
    "missing": {"properties": "CallFailed", "count": "CallFailed", "get": "CallFailed"},
    "created": True,
    "ensured_again": False,
    "props": {"fingerprint": "fp-a", "dim": "4", "schema_version": S.SCHEMA_VERSION},
    "dim": 4,
    "index": S.IndexSpec("HNSW", build_params={"M": 16, "efConstruction": 200}),
    "loaded": True,
    "mismatch": ("fp-a", "fp-b", 4, 5),
    "forced": False,
    "upserted": 4,
    "count": 4,
    "existing": ["a.jpg", NAMES[3]],
    "get": [{"name": "a.jpg", "meta": {"colour": "red"}}, {"name": NAMES[3], "meta": METAS[3]}],
    "get_vectors": [{"name": "cats/b.jpg", "meta": {}, "vector": [0.9, 0.1, 0.0, 0.0]}],
    "search": [[("a.jpg", 1.0, {"colour": "red"}), ("cats/b.jpg", 0.9939, {}), ("c.jpg", 0.1961, METAS[2])]],
    "search_two": [[("c.jpg", 1.0, METAS[2])], [(NAMES[3], 1.0, METAS[3])]],
    "filtered": [[("a.jpg", 1.0, {"colour": "red"})]],
    "filtered_in": [[("a.jpg", 1.0, {"colour": "red"})]],
    "offset": [[("cats/b.jpg", 0.9939, {}), ("c.jpg", 0.1961, METAS[2])]],
    "min_score": [[("a.jpg", 1.0, {"colour": "red"}), ("cats/b.jpg", 0.9939, {})]],
    "min_score_none": [[]],
    "rows": sorted(NAMES),
    "rows_vectors": [4, 4, 4, 4],
    "wrong_dim": ("CallFailed", "CallFailed"),
    "after_replace_delete": (3, [{"name": "a.jpg", "meta": {"v": 2}}]),
    "empty_inputs": ([], set(), 0),
    "down": "MilvusUnavailable",
    "exists_after_drop": False,
}


@BOTH_CATALOGUES
def test_the_fake_and_the_real_catalogue_tell_the_same_story(catalogue, catalogue_switch):
    got = scenario(catalogue, catalogue_switch)
    assert {k: got[k] for k in EXPECTED} == EXPECTED


@BOTH_CATALOGUES
def test_declared_scalar_fields_filter_the_same_on_both(catalogue):
    """Fields declared at creation are copies of meta's keys (a missing key: the type's empty value)."""
    cat = catalogue
    assert cat.ensure(4, "fp", scalar_fields={"shop": "str", "price": "float"})
    assert cat.scalar_fields() == {"price": "float", "shop": "str"}
    metas = [{"shop": "berlin", "price": 10}, {"shop": "paris", "price": 99.5}, {"price": "n/a"}, {}]
    cat.upsert(NAMES, VECTORS, metas)
    q = np.array([1, 0, 0, 0], np.float32)

    def names(filt):
        expr = to_expression(filt, scalar_fields=cat.scalar_fields())
        return sorted(h["name"] for h in cat.search(q, top_k=4, filter=expr, consistency_level="Strong")[0])

    assert names({"shop": "berlin"}) == ["a.jpg"]
    assert names({"price": {"gte": 50}}) == ["cats/b.jpg"]
    assert names({"price": {"lt": 50}}) == sorted(["a.jpg", "c.jpg", NAMES[3]])  # missing and "n/a" hold 0.0
    assert names({"shop": ""}) == sorted(["c.jpg", NAMES[3]])
    assert names({"shop": "berlin", "price": 10}) == ["a.jpg"]
    with pytest.raises(CatalogError, match="cannot be added later"):
        cat.ensure(4, "fp", scalar_fields={"colour": "str"})
    cat.drop()


def test_the_fake_counts_calls_and_fails_like_milvus_when_down():
    cat = FakeCatalog("c")
    assert isinstance(cat, CatalogPort)
    cat.down = True
    with pytest.raises(MilvusUnavailable, match="cannot reach Milvus"):
        cat.exists()
    cat.down = False
    cat.ensure(3, "fp")
    with pytest.raises(CallFailed):
        cat.upsert(["x"], np.ones((1, 4), np.float32))
    assert cat.calls["exists"] == 2 and cat.calls["create"] == 1
