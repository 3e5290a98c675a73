"""Search benchmark: Milvus ANN (HNSW, the product's settings) against exact search, under load, end to end.

    .venv/bin/python bench/search.py            # 100k and 1M (512-d), 1M EfficientNet-like (1280-d), the rest
    .venv/bin/python bench/search.py --quick    # 100k only, fewer queries, shorter load levels: minutes
    .venv/bin/python bench/search.py --tiny     # seconds, for the test that keeps the script working

Ours: the vectors in the local real Milvus started as `make run` starts it (devstack: the product's
settings from deploy/milvus/user.yaml, nothing benchmark-only), inserted in batches of 10,000 rows (as
the loader fills a collection it created), flushed, indexed with `catalog.DEFAULT_INDEX`, loaded, and searched
through `catalog.Catalog.search` with the shipped search parameters once Milvus's background work is done
(its CPU quiet). Baselines, in the same process on the same vectors and queries (bench/_search_baselines.py):
exact search per query (one matmul + argpartition: the goal's denominator), exact search batched, and the
tutorial's whole-HDF5 `np.dot` + `argsort` for reference. Goal at 1M: ANN p50 >= 10x faster than exact per
query at recall@10 >= 0.95.

Data (bench/_search_data.py): VGG16-like vectors calibrated to hed-vgg16 (512-d) at every size, the same
at 1280-d calibrated at the start of the run to EfficientNet-Lite0 features of real photos and crops
(the default offline model), an ImageNet-VGG16-like broad spread at the smallest size, and i.i.d.
Gaussian vectors (the worst case: reported, not the goal's data).

At the largest size: filtered search (a filter keeping 10%) against unfiltered (goal within 2x), a
`min_score` range search, search under load (bench/_search_load.py: QPS and p50/p99 at 1/4/16/64
clients through the service and straight against Milvus; goal: the service keeps >= 80% of Milvus's QPS
at 16 clients) and Milvus's resident memory with the collection loaded. End to end: the real extractor
(hed-vgg16) and search service as processes, the sample photos uploaded and searched by upload (the
service's own overhead: wall time minus extractor and Milvus time); a batch of 16 photos in one request
against 16 single requests through the default offline model (EfficientNet-Lite0); near-duplicate groups
through the index against the N^2 scan; the services' resident memory. Every RESULT line names the
machine (bench/_common.py).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import result, rss_mb, start_run, value, wait_until_quiet  # noqa: E402
from _search_baselines import exact_batched, exact_per_query, tutorial_way  # noqa: E402
from _search_data import (FeatureLikeVectors, calibrate_effnet, describe, effnet_features,  # noqa: E402
                          gaussian_vectors, write_h5)
from _search_features import (SHARD_FIELD, bench_batch, bench_duplicates, bench_filtered,  # noqa: E402
                              planted_duplicates, shard_meta)
from _search_load import bench_load  # noqa: E402

from catalog import DEFAULT_INDEX, Catalog  # noqa: E402
from devstack.milvus_server import MilvusServer  # noqa: E402
from devstack.processes import ServiceProcess, free_port  # noqa: E402
from loader.importer import wait_indexed  # noqa: E402

TOP_K = 10
BATCH = 10_000
BENCH_FINGERPRINT = "bench-feature-like"
# Each size's timed parts start once Milvus has used under a quarter of a core for two such windows (s) in a
# row (bench/_common.wait_until_quiet); --tiny shortens them.
QUIET_WINDOW_S = 5.0


def load_collection(cat: Catalog, vectors: np.ndarray, fingerprint: str, prefix: str = "img") -> dict[str, float]:
    """Create, insert in 10k batches, flush, index, load; returns the seconds each step took. Every row
    carries `meta.shard` (row % 10), also a declared scalar field: the filtered search's 10%.

    Inserts, as the loader does into a collection it created: on Milvus 2.3 an upsert is a delete plus an
    insert, and the deletes make Milvus compact every segment and rebuild its index in the background
    after the load (100k rows: 35 s of both cores), during the timed parts."""
    took = {}
    cat.drop()
    cat.create(vectors.shape[1], fingerprint, index=None, scalar_fields=SHARD_FIELD)
    t = time.perf_counter()
    for start in range(0, len(vectors), BATCH):
        chunk = vectors[start:start + BATCH]
        cat.insert([f"{prefix}_{start + i:07d}.jpg" for i in range(len(chunk))], chunk,
                   shard_meta(start, len(chunk)))
    took["insert"] = time.perf_counter() - t
    t = time.perf_counter()
    cat.flush()
    took["flush"] = time.perf_counter() - t
    t = time.perf_counter()
    cat.build_index(DEFAULT_INDEX)
    if not wait_indexed(cat, retry_seconds=60):
        raise RuntimeError(f"{cat.collection}: the index made no progress")
    took["index"] = time.perf_counter() - t
    t = time.perf_counter()
    cat.load()
    took["load"] = time.perf_counter() - t
    return took


def ann_search(cat: Catalog, queries: np.ndarray, **kwargs) -> tuple[list[set[int]], list[float]]:
    """One query at a time through Catalog.search (shipped defaults); row indices of the hits, and ms."""
    for q in queries[:20]:  # warm up caches and connections
        cat.search(q[None, :], top_k=TOP_K, with_meta=False, **kwargs)
    tops, times = [], []
    for q in queries:
        t = time.perf_counter()
        hits = cat.search(q[None, :], top_k=TOP_K, with_meta=False, **kwargs)[0]
        times.append((time.perf_counter() - t) * 1000)
        tops.append({int(h["name"][4:11]) for h in hits})
    return tops, times


def recall_at_k(found: list[set[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(f & set(t.tolist())) / TOP_K for f, t in zip(found, truth)]))


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def bench_size(server: MilvusServer, tmp: Path, vectors: np.ndarray, queries: np.ndarray, tag: str,
               fingerprint: str = BENCH_FINGERPRINT, largest: bool = False, load_seconds: float = 10.0,
               quiet_s: float = QUIET_WINDOW_S) -> Catalog:
    """ANN against the exact baselines on one data set; at the largest size also filtered, range, load and
    memory figures. Returns the collection (loaded)."""
    n = len(vectors)
    truth, exact_ms = exact_per_query(vectors, queries)
    batched_ms = exact_batched(vectors, queries)
    h5 = tmp / f"{tag}.h5"
    write_h5(h5, vectors)
    tutorial_ms, load_s = tutorial_way(h5, queries)
    h5.unlink()
    cat = Catalog(server.uri, collection=f"c_{tag}", timeout=60)
    took = load_collection(cat, vectors, fingerprint)
    # At most 180 windows (15 min at 5 s; 100k upserted rows took 35 s to compact, more rows take longer).
    took["settle"] = wait_until_quiet([server.proc.pid], window_s=quiet_s, timeout_s=180 * quiet_s)
    found, ann_ms = ann_search(cat, queries)
    recall = recall_at_k(found, truth)
    print(f"INFO {tag}: {n} x {vectors.shape[1]}; milvus insert {took['insert']:.0f}s, flush {took['flush']:.0f}s, "
          f"index {took['index']:.0f}s, load {took['load']:.0f}s, quiet after {took['settle']:.0f}s; "
          f"{len(queries)} queries; index "
          f"{DEFAULT_INDEX.index_type} {DEFAULT_INDEX.build_params} search {DEFAULT_INDEX.search_params}; "
          f"tutorial's HDF5 load {load_s:.1f}s", flush=True)
    for p in (50, 99):
        result(f"search_p{p}_{tag}", float(np.percentile(ann_ms, p)), float(np.percentile(exact_ms, p)), "ms",
               higher_is_better=False)
    value(f"recall_at_10_{tag}", recall)
    value(f"search_exact_batched_per_query_{tag}", batched_ms, "ms")
    result(f"search_p50_vs_tutorial_{tag}", float(np.median(ann_ms)), float(np.median(tutorial_ms)), "ms",
           higher_is_better=False)
    if largest:
        value(f"milvus_rss_loaded_{tag}", rss_mb([server.proc.pid]), "MB")
        bench_filtered(cat, vectors, queries, ann_ms, tag)
        # A threshold about half the queries' 10th-best exact scores clear: range search at its usual work.
        threshold = float(np.median([vectors[t[-1]] @ q for t, q in zip(truth, queries)]))
        _, range_ms = ann_search(cat, queries, min_score=threshold)
        result(f"search_min_score_p50_{tag}", float(np.median(range_ms)), float(np.median(ann_ms)), "ms",
               higher_is_better=False)
        if load_seconds:
            svc = ServiceProcess("search_service", {"MILVUS_URI": server.uri, "COLLECTION": cat.collection,
                                                    "IMAGE_ROOT": str(tmp / "images"), "EXTRACTOR_URL":
                                                    "http://127.0.0.1:9"}, tmp / f"search-{tag}.log",
                                 ready_path="/healthz").start(timeout=60)
            try:
                bench_load(svc.url, server.uri, cat.collection, fingerprint, queries, tag, load_seconds)
                value(f"search_service_rss_under_load_{tag}", rss_mb(svc.pids), "MB")
            finally:
                svc.stop(grace=20)
    return cat


# -- end to end -----------------------------------------------------------------------------------------
def sample_photos() -> list[tuple[str, bytes]]:
    """The scikit-image photos as JPEGs of at most 192 px (as the tests use)."""
    import skimage
    from PIL import Image

    out = []
    for path in sorted((Path(skimage.__file__).parent / "data").iterdir()):
        if path.suffix not in (".png", ".jpg") or path.stat().st_size < 20_000:
            continue
        try:
            img = Image.open(path).convert("RGB")
        except Exception:
            continue
        img.thumbnail((192, 192))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append((path.stem + ".jpg", buf.getvalue()))
    return out


def bench_end_to_end(search: ServiceProcess, extractor: ServiceProcess, repeats: int) -> None:
    """Upload photos, then search by upload; client wall time, stages and the service's own overhead."""
    photos = sample_photos()
    for name, data in photos:
        requests.post(search.url + "/v1/images", files={"image": (name, data)}, data={"name": name},
                      timeout=120).raise_for_status()
    session = requests.Session()
    wall, stages, hits = [], {"extract": [], "search": [], "total": []}, 0
    for i in range(repeats):
        name, data = photos[i % len(photos)]
        t = time.perf_counter()
        resp = session.post(search.url + "/v1/search", files={"image": (name, data)}, data={"top_k": TOP_K},
                            timeout=60)
        wall.append((time.perf_counter() - t) * 1000)
        resp.raise_for_status()
        body = resp.json()
        hits += body["results"][0]["name"] == name
        for k in stages:
            stages[k].append(body["took_ms"][k])
    wall_a, ext, srch, tot = (np.array(v) for v in (wall, stages["extract"], stages["search"], stages["total"]))
    print(f"INFO end to end: {repeats} uploads of {len(photos)} photos; the photo itself came first {hits}/{repeats}")
    value("e2e_request_p50", float(np.median(wall_a)), "ms")
    value("e2e_request_p99", float(np.percentile(wall_a, 99)), "ms")
    value("e2e_extract_p50", float(np.median(ext)), "ms")
    value("e2e_milvus_p50", float(np.median(srch)), "ms")
    # The service's own cost: everything but the extractor's model work and Milvus's search; the HTTP hop to
    # the extractor counts as the service's (took_ms's "extract" is measured around that hop).
    value("service_overhead_p50", float(np.median(wall_a - srch - ext)), "ms")
    value("service_overhead_inside_server_p50", float(np.median(tot - ext - srch)), "ms")
    value("extractor_rss", rss_mb(extractor.pids), "MB")
    value("search_service_rss", rss_mb(search.pids), "MB")


def bench_batch_default_model(server: MilvusServer, tmp: Path, repeats: int) -> None:
    """A batch of 16 photos against 16 single requests, through the default offline model's extractor."""
    photos = sample_photos()
    extractor = ServiceProcess("extractor_service", {"EXTRACTOR_MODEL": "efficientnet-lite0",
                                                     "TF_CPP_MIN_LOG_LEVEL": "2"}, tmp / "extractor-lite0.log")
    search = None
    try:
        extractor.start(timeout=300)
        search = ServiceProcess("search_service", {"MILVUS_URI": server.uri, "EXTRACTOR_URL": extractor.url,
                                                   "COLLECTION": "photos_lite0", "IMAGE_ROOT": str(tmp / "lite0")},
                                tmp / "search-lite0.log", ready_path="/healthz").start(timeout=60)
        for name, data in photos:
            requests.post(search.url + "/v1/images", files={"image": (name, data)}, data={"name": name},
                          timeout=120).raise_for_status()
        bench_batch(search.url, photos, repeats)
    finally:
        for proc in (search, extractor):
            if proc is not None:
                proc.stop(grace=20)


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k only, fewer queries, short load levels")
    parser.add_argument("--tiny", action="store_true", help="seconds: 3,000 vectors, every part (tests)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default 100000,1000000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per size (default 300; quick 100)")
    parser.add_argument("--load-seconds", type=float, default=None, help="seconds per load level (default 10)")
    for part in ("e2e", "gaussian", "broad", "duplicates", "effnet", "batch"):
        parser.add_argument(f"--no-{part}", action="store_true", help=f"skip the {part} part")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    quick = args.quick or args.tiny
    start_run("bench/search.py", quick)
    quiet_s = 0.5 if args.tiny else QUIET_WINDOW_S
    default_sizes = "3000" if args.tiny else "100000" if args.quick else "100000,1000000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    nq = args.queries or (30 if args.tiny else 100 if args.quick else 300)
    load_seconds = args.load_seconds if args.load_seconds is not None else 1.0 if args.tiny else 4.0 if quick else 10.0
    repeats = 5 if args.tiny else 30 if quick else 100
    rng = np.random.default_rng(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    server = MilvusServer(tmp / "milvus", port=free_port())
    extractor = search = None
    try:
        # The extractor loads TensorFlow for ~20 s: start it first, in parallel with the data work.
        if not args.no_e2e:
            extractor = ServiceProcess("extractor_service", {"EXTRACTOR_WEIGHTS": "hed-vgg16",
                                                             "TF_CPP_MIN_LOG_LEVEL": "2"},
                                       tmp / "extractor.log").start(wait_ready=False)
        server.start()
        print(f"INFO Milvus at {server.uri} (the product's settings), data in {tmp}", flush=True)
        kept: Catalog | None = None
        for i, n in enumerate(sizes):
            gen = FeatureLikeVectors.preset("calibrated", n, args.seed + i)
            vectors, queries = gen.sample(n, rng), gen.sample(nq, rng)
            print(f"INFO VGG-like (calibrated) {label(n)}: {describe(vectors, queries)}", flush=True)
            fingerprint = BENCH_FINGERPRINT
            if i == 0 and extractor is not None:
                # The end-to-end part searches this collection: it must carry the extractor's fingerprint.
                extractor.wait_ready(timeout=300)
                fingerprint = requests.get(f"{extractor.url}/v1/info", timeout=10).json()["fingerprint"]
            cat = bench_size(server, tmp, vectors, queries, label(n), fingerprint, largest=n == max(sizes),
                             load_seconds=load_seconds, quiet_s=quiet_s)
            del vectors
            if i == 0:
                kept = cat
            else:
                cat.drop()
        if not args.no_effnet:
            features = effnet_features(4 if args.tiny else None)
            presets = {"effnet": calibrate_effnet(features, args.seed, 1_000 if args.tiny else 5_000)}
            n = max(sizes)
            gen = FeatureLikeVectors.preset("effnet", n, args.seed + 50, presets)
            vectors, queries = gen.sample(n, rng), gen.sample(nq, rng)
            print(f"INFO EfficientNet-like {label(n)}: {describe(vectors, queries)}", flush=True)
            bench_size(server, tmp, vectors, queries, f"effnet_{label(n)}", largest=True, load_seconds=0,
                       quiet_s=quiet_s).drop()
            del vectors
        if not (quick or args.no_broad):
            n = sizes[0]
            gen = FeatureLikeVectors.preset("broad", n, args.seed + 100)
            vectors, queries = gen.sample(n, rng), gen.sample(nq, rng)
            print(f"INFO VGG-like (broad) {label(n)}: {describe(vectors, queries)}", flush=True)
            bench_size(server, tmp, vectors, queries, f"broad_{label(n)}", quiet_s=quiet_s).drop()
        if not args.no_gaussian:
            n = sizes[0] if not quick else min(sizes[0], 10_000)
            vectors, queries = gaussian_vectors(n, rng), gaussian_vectors(nq, rng)
            print(f"INFO Gaussian {label(n)} (worst case, not the goal's data): {describe(vectors, queries)}",
                  flush=True)
            bench_size(server, tmp, vectors, queries, f"gaussian_{label(n)}", quiet_s=quiet_s).drop()
        if not args.no_duplicates:
            n = 2_000 if args.tiny else 20_000 if quick else sizes[0]
            gen = FeatureLikeVectors.preset("broad", n, args.seed + 200)
            vectors = planted_duplicates(gen.sample(n, rng), rng)
            cat = Catalog(server.uri, collection="dups", timeout=60)
            load_collection(cat, vectors, BENCH_FINGERPRINT)
            bench_duplicates(cat, vectors, label(n))
            cat.drop()
            del vectors
        if extractor is not None and kept is not None:
            search = ServiceProcess("search_service", {
                "MILVUS_URI": server.uri, "EXTRACTOR_URL": extractor.url,
                "COLLECTION": kept.collection, "IMAGE_ROOT": str(tmp / "images")}, tmp / "search.log").start(timeout=60)
            bench_end_to_end(search, extractor, repeats)
        if not args.no_batch:
            bench_batch_default_model(server, tmp, repeats=2 if args.tiny else 3 if quick else 7)
    finally:
        for proc in (search, extractor):
            if proc is not None:
                proc.stop(grace=20)
        server.stop(grace=20)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
