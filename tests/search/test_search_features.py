"""Search features for real catalogues: filters on meta, batches, paging, min_score as a range search, and
near-duplicate groups. In-process on the in-memory catalogue; `BOTH_CATALOGUES` tests run on Milvus too."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from catalog.duplicates import brute_force_groups, find_groups, page_after
from tests.search.conftest import BOTH_CATALOGUES, FakeCatalog, colour_jpeg, wait_until
from tests.search.test_api import add, assert_error, search

SHOP = [("red-1.jpg", (220, 30, 30), {"category": "shoes", "price": 30}),
        ("red-2.jpg", (210, 40, 30), {"category": "bags", "price": 80}),
        ("green.jpg", (30, 200, 40), {"category": "shoes", "price": 120}),
        ("blue.jpg", (40, 40, 220), {"category": "hats"}),
        ("orange.jpg", (230, 120, 20), {"category": "shoes", "price": 55})]


@pytest.fixture
def shop(make_app, fake_extractor):
    client = make_app(fake_extractor).test_client()
    for i, (name, rgb, meta) in enumerate(SHOP):
        assert add(client, name, colour_jpeg(rgb, seed=i), meta=meta).status_code == 201
    return client


def names(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [h["name"] for h in resp.get_json()["results"]]


@BOTH_CATALOGUES
def test_filters_limit_the_search_to_matching_meta(shop):
    red = colour_jpeg(SHOP[0][1])
    everything = names(search(shop, red, top_k=5))
    shoes = names(search(shop, red, top_k=5, filter='{"category": "shoes"}'))
    assert sorted(shoes) == ["green.jpg", "orange.jpg", "red-1.jpg"]
    assert shoes == [n for n in everything if n in shoes]  # the same order as unfiltered
    assert names(search(shop, red, filter='{"category": {"in": ["bags", "hats"]}}')) == [
        n for n in everything if n in ("red-2.jpg", "blue.jpg")]
    assert sorted(names(search(shop, red, filter='{"price": {"gte": 50, "lt": 100}}'))) == ["orange.jpg", "red-2.jpg"]
    assert names(search(shop, red, filter='{"or": [{"category": "hats"}, {"price": {"gt": 100}}]}')) == [
        n for n in everything if n in ("green.jpg", "blue.jpg")]
    body = shop.post("/v1/search", json={"name": "red-1.jpg", "filter": {"category": "bags"}}).get_json()
    assert [h["name"] for h in body["results"]] == ["red-2.jpg"]
    empty = search(shop, red, filter='{"category": "boots"}').get_json()
    assert empty["results"] == [] and "matched the filter" in empty["message"]


@pytest.mark.parametrize("filt, words", [
    ("{category: shoes}", "not valid JSON"),
    ('["shoes"]', "must be a JSON object"),
    ('{"cat egory": "shoes"}', "is not allowed"),
    ('{"price": {"gte": "ten"}}', "gte needs a number"),
    ('{"category": {"like": "sh%"}}', 'unknown operator "like"'),
])
def test_bad_filters_are_400_saying_why(shop, filt, words):
    assert_error(search(shop, colour_jpeg(SHOP[0][1]), filter=filt), 400, "bad_filter", words)
    resp = shop.post("/v1/search", json={"name": "red-1.jpg", "filter": json.loads(filt) if filt[0] in "[{" and
                                         '"' in filt else filt})
    assert resp.status_code == 400


@BOTH_CATALOGUES
def test_paging_with_offset(shop):
    red = colour_jpeg(SHOP[0][1])
    first4 = names(search(shop, red, top_k=4))
    assert names(search(shop, red, top_k=2)) + names(search(shop, red, top_k=2, offset=2)) == first4
    assert names(search(shop, red, top_k=2, offset=4)) == names(search(shop, red, top_k=5))[4:]
    past = search(shop, red, top_k=2, offset=50).get_json()
    assert past["results"] == [] and "offset=50" in past["message"]


@pytest.mark.parametrize("offset, words", [("-1", "from 0 to"), ("1.5", "integer"), ("abc", "integer"),
                                           ("16285", "from 0 to 16284")])
def test_bad_offsets_are_400(shop, offset, words):
    assert_error(search(shop, colour_jpeg(SHOP[0][1]), offset=offset), 400, "bad_offset", words)


@BOTH_CATALOGUES
def test_min_score_is_a_range_search_counting_only_hits_above_it(shop):
    red = colour_jpeg(SHOP[0][1])
    scored = search(shop, red, top_k=5).get_json()["results"]
    threshold = (scored[1]["score"] + scored[2]["score"]) / 2
    kept = search(shop, red, top_k=5, min_score=threshold).get_json()["results"]
    assert [h["name"] for h in kept] == [h["name"] for h in scored[:2]]  # the same answers as post-filtering
    # top_k counts only hits above the threshold: asking for 1 gives the best one, not an empty page
    assert names(search(shop, red, top_k=1, min_score=threshold)) == [scored[0]["name"]]
    assert names(search(shop, red, top_k=1, offset=1, min_score=threshold)) == [scored[1]["name"]]


@BOTH_CATALOGUES
def test_several_images_are_one_batch_answered_in_order(shop, fake_extractor):
    parts = [("image", (io.BytesIO(colour_jpeg(rgb, seed=i)), f"q{i}.jpg")) for i, (_, rgb, _) in enumerate(SHOP[:3])]
    parts.insert(1, ("image", (io.BytesIO(b"not an image"), "bad.jpg")))
    fake_extractor.batches.clear()
    form = {"image": [p[1] for p in parts], "top_k": "2", "filter": '{"category": {"ne": "hats"}}'}
    resp = shop.post("/v1/search", data=form, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    queries = resp.get_json()["queries"]
    assert len(queries) == 4 and fake_extractor.batches == [4]  # the extractor saw one batch
    assert [q["results"][0]["name"] for q in (queries[0], queries[2], queries[3])] == ["red-1.jpg", "red-2.jpg",
                                                                                     "green.jpg"]
    assert queries[1]["error"]["status"] == 422 and queries[1]["error"]["code"] == "undecodable_image"
    assert all(len(q["results"]) == 2 for q in queries if "results" in q)


def test_vectors_and_names_batches_carry_per_query_errors(shop):
    body = shop.post("/v1/search", json={"names": ["green.jpg", "nope.jpg", "blue.jpg"], "top_k": 1}).get_json()
    assert [list(q) for q in body["queries"]] == [["results"], ["error"], ["results"]]
    assert body["queries"][0]["results"][0]["name"] == "green.jpg" and body["queries"][1]["error"]["status"] == 404
    vec = shop.post("/v1/search", json={"name": "blue.jpg", "top_k": 1}).get_json()
    body = shop.post("/v1/search", json={"vectors": [[0.5] * 12, [1.0] * 5], "top_k": 1}).get_json()
    assert "results" in body["queries"][0] and body["queries"][1]["error"]["code"] == "bad_vector"
    assert vec["results"][0]["name"] == "blue.jpg"


def test_oversized_batches_are_413_and_ambiguous_queries_400(make_app, fake_extractor):
    from search_service import Config  # noqa: F401 - the limit comes from SEARCH_MAX_BATCH

    client = make_app(fake_extractor, max_batch=3).test_client()
    parts = [(io.BytesIO(colour_jpeg((i * 40, 0, 0))), f"{i}.jpg") for i in range(4)]
    resp = client.post("/v1/search", data={"image": parts}, content_type="multipart/form-data")
    assert_error(resp, 413, "too_many_queries", "at most 3")
    assert_error(client.post("/v1/search", json={"names": ["a"] * 4}), 413, "too_many_queries", "at most 3")
    assert_error(client.post("/v1/search", json={"vector": [1.0], "names": ["a"]}), 400, "bad_query", "exactly one")
    assert_error(client.post("/v1/search", json={"names": []}), 400, "bad_query", "non-empty list")


# -- near-duplicate groups ------------------------------------------------------------------------------------

def clustered(n_groups: int, per_group: int, singles: int, dim: int = 32, seed: int = 0):
    """Names and unit vectors: tight groups (cosine > 0.99 inside) and unrelated singles."""
    rng = np.random.default_rng(seed)
    names, rows = [], []
    for g in range(n_groups):
        centre = rng.standard_normal(dim)
        for k in range(per_group):
            names.append(f"g{g:03d}-{k}.jpg")
            rows.append(centre + 0.01 * rng.standard_normal(dim))
    for s in range(singles):
        names.append(f"single-{s:04d}.jpg")
        rows.append(rng.standard_normal(dim))
    v = np.asarray(rows, np.float32)
    return names, v / np.linalg.norm(v, axis=1, keepdims=True)


def test_groups_through_the_index_equal_the_brute_force_scan():
    names, vectors = clustered(12, 3, 200)
    cat = FakeCatalog("dups")
    cat.ensure(vectors.shape[1], "fp")
    cat.upsert(names, vectors)
    seen = []
    groups = find_groups(cat, 0.95, progress=seen.append)
    assert [g.names for g in groups] == brute_force_groups(names, vectors, 0.95)
    assert len(groups) == 12 and all(g.pairs == 3 and g.score > 0.99 for g in groups) and sum(seen) == len(names)


def test_chains_make_one_group():
    """a~b and b~c put a, b and c in one group even when a and c are less similar than the threshold."""
    a, b = np.array([1.0, 0, 0]), np.array([0.96, 0.28, 0])
    c = np.array([0.84, 0.54, 0])
    vecs = np.stack([v / np.linalg.norm(v) for v in (a, b, c)]).astype(np.float32)
    assert vecs[0] @ vecs[2] < 0.95 < min(vecs[0] @ vecs[1], vecs[1] @ vecs[2])
    cat = FakeCatalog("chain")
    cat.ensure(3, "fp")
    cat.upsert(["a", "b", "c"], vecs)
    assert [g.names for g in find_groups(cat, 0.95)] == [["a", "b", "c"]]


def test_pages_of_groups_follow_the_cursor():
    names, vectors = clustered(5, 2, 0)
    cat = FakeCatalog("p")
    cat.ensure(vectors.shape[1], "fp")
    cat.upsert(names, vectors)
    groups = find_groups(cat, 0.95)
    page, cursor = page_after(groups, None, 2)
    seen = [g.names for g in page]
    while cursor:
        page, cursor = page_after(groups, cursor, 2)
        seen += [g.names for g in page]
    assert seen == [g.names for g in groups] and len(seen) == 5


@BOTH_CATALOGUES
def test_duplicates_endpoint_computes_then_pages(make_app, fake_extractor):
    client = make_app(fake_extractor).test_client()
    assert client.get("/v1/duplicates").get_json()["empty"] is True
    for i, (name, rgb, meta) in enumerate(SHOP):
        assert add(client, name, colour_jpeg(rgb, seed=i), meta=meta).status_code == 201
    for copy in ("red-1 copy.jpg", "copies/red-1.jpg"):
        assert add(client, copy, colour_jpeg(SHOP[0][1], seed=0)).status_code == 201
    assert add(client, "green again.jpg", colour_jpeg(SHOP[2][1], seed=2)).status_code == 201
    first = client.get("/v1/duplicates?threshold=0.999&limit=1")
    assert first.status_code in (200, 202)
    if first.status_code == 202:
        assert first.get_json()["status"] == "computing" and int(first.headers["Retry-After"]) > 0
    done = wait_until(lambda: client.get("/v1/duplicates?threshold=0.999&limit=1").status_code == 200, timeout=60)
    assert done
    page1 = client.get("/v1/duplicates?threshold=0.999&limit=1").get_json()
    assert page1["total_groups"] == 2 and page1["next"] == "copies/red-1.jpg"
    assert page1["groups"][0]["names"] == ["copies/red-1.jpg", "red-1 copy.jpg", "red-1.jpg"]
    assert page1["groups"][0]["urls"][0].endswith("/file")
    page2 = client.get("/v1/duplicates", query_string={"threshold": "0.999", "limit": 1, "after": page1["next"]})
    assert page2.get_json()["groups"][0]["names"] == ["green again.jpg", "green.jpg"]
    assert page2.get_json()["next"] is None
    # A write through the service makes the groups stale: the next request finds them again.
    client.delete("/v1/images/green again.jpg")
    wait_until(lambda: client.get("/v1/duplicates?threshold=0.999").get_json().get("total_groups") == 1, timeout=60)
    assert client.get("/v1/duplicates?threshold=0.999").get_json()["total_groups"] == 1


@pytest.mark.parametrize("query, code", [("threshold=1.5", "bad_threshold"), ("threshold=x", "bad_threshold"),
                                         ("limit=0", "bad_limit"), ("limit=500", "bad_limit")])
def test_bad_duplicate_queries_are_400(shop, query, code):
    assert_error(shop.get(f"/v1/duplicates?{query}"), 400, code)
