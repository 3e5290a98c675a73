"""Search benchmark: Milvus ANN (HNSW, shipped defaults) against the classic approach, plus the service.

Classic approach (the baseline): the whole HDF5 (`dataset_1` vectors, `dataset_2` names) read into memory,
then per query `np.dot` over every vector and `argsort`. Ours: the same vectors in the local real Milvus
(`devstack.milvus_server`, a temporary data dir, a free port), inserted in batches of 10,000 rows,
flushed, indexed with `catalog.DEFAULT_INDEX` and searched through `catalog.Catalog.search` with the
shipped default search parameters. Both run in the same process, on the same vectors and queries.

Data. VGG16 features after ReLU and global max pooling are non-negative, L2-normalised and clustered
(photos of similar things land together), with a shared per-channel activation profile. `VggLikeVectors`
draws them so, reproducibly:

    profile  ~ Gamma(0.6, 1)^512                        per-channel typical activation (some channels quiet)
    centre_c = profile * Gamma(a, 1/a)^512 * Bernoulli(1-s)^512   one cluster per ~100 vectors
    x        = centre_c * Gamma(b, 1/b)^512, L2-normalised   multiplicative jitter keeps x >= 0

Clusters are picked with Zipf-like weights (a few big, many small); queries are fresh draws from the same
clusters (not stored vectors). Two presets:
- `calibrated` (a=20, b=60, s=0), the goal's data: matched to the real features this stack's extractor
  (hed-vgg16 weights) gives the scikit-image photos: random-pair cosine ~0.94, nearest neighbour ~0.99
  (the run prints both, measured on real extractions, next to the generator's).
- `broad` (a=1, b=4, s=0.2): ImageNet-VGG16-like spread, random-pair cosine ~0.34, nearest ~0.91;
  measured at the smallest size in the full run.
i.i.d. Gaussian vectors (the worst case for any ANN index: no structure at all) are measured too, at the
smallest size (10k with --quick); they are reported, not the goal's data.

End to end: the real extractor and the search service (gunicorn) as processes against this Milvus, the
scikit-image sample photos added through POST /v1/images to the 100k collection, then searched by upload.
Reports the client's wall time, the service's stages (`took_ms`) and the service's own overhead: client
wall time minus extractor and Milvus time.

Search features (bench/_search_features.py): filtered search at the largest size (a filter keeping 10%,
through a declared scalar field and through the JSON path) against unfiltered; a batch of 16 images in
one request against 16 single requests; near-duplicate groups through the index against the brute-force
N^2 scan on vectors with planted near-copies (100k; 20k with --quick).

Milvus segments: every query visits every sealed segment, so on 2 cores fewer, larger segments are
faster. `--segment-mb` (default 4096) sets, in the rendered milvus.yaml, `dataCoord.segment.maxSize` to
it, `sealProportion` to 1 and `maxBinlogFileNumber` to segment-mb/16 (a growing segment is also sealed
after that many 16 MB insert-buffer flushes). These keys are not in the milvus package's config template,
so they are edited after rendering; `--segment-mb 0` keeps the package defaults (512 MB, 0.23, 32).

    .venv/bin/python bench/search.py            # 100k and 1M, broad and Gaussian at 100k, end to end
    .venv/bin/python bench/search.py --quick    # 100k only, fewer queries: under two minutes
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalog import DEFAULT_INDEX, Catalog  # noqa: E402
from catalog import schema as S  # noqa: E402
from devstack.milvus_server import MilvusServer  # noqa: E402
from devstack.processes import ServiceProcess, free_port  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from _search_features import (SHARD_FIELD, bench_batch, bench_duplicates, bench_filtered,  # noqa: E402
                              planted_duplicates, shard_meta)

DIM = 512
TOP_K = 10
BATCH = 10_000
BENCH_FINGERPRINT = "bench-vgg-like"


# -- data ----------------------------------------------------------------------------------------------
PRESETS = {
    "calibrated": {"cluster_shape": 20.0, "point_shape": 60.0, "silent": 0.0},
    "broad": {"cluster_shape": 1.0, "point_shape": 4.0, "silent": 0.2},
}


class VggLikeVectors:
    """Clustered, non-negative, L2-normalised vectors shaped like VGG16 max-pooled features (see module doc)."""

    def __init__(self, n_clusters: int, dim: int = DIM, seed: int = 0, cluster_shape: float = 1.0,
                 point_shape: float = 4.0, silent: float = 0.2):
        rng = np.random.default_rng(seed)
        profile = rng.gamma(0.6, 1.0, dim)
        self.centres = (profile * rng.gamma(cluster_shape, 1 / cluster_shape, (n_clusters, dim))
                        * (rng.random((n_clusters, dim)) > silent)).astype(np.float32)
        weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
        self.weights = weights / weights.sum()
        self.point_shape = point_shape

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` vectors, float32, rows of unit length."""
        out = np.empty((n, self.centres.shape[1]), dtype=np.float32)
        for start in range(0, n, 50_000):
            m = min(50_000, n - start)
            idx = rng.choice(len(self.centres), size=m, p=self.weights)
            jitter = rng.gamma(self.point_shape, 1 / self.point_shape, (m, self.centres.shape[1])).astype(np.float32)
            x = self.centres[idx] * jitter
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start:start + m] = x
        return out


def gaussian_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """i.i.d. Gaussian, L2-normalised: no structure (the worst case)."""
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def describe(x: np.ndarray, q: np.ndarray) -> str:
    """Mean cosine of random pairs and of each query's nearest neighbour (from a sample)."""
    s = q[:100] @ x[:50_000].T
    return f"random-pair cosine {s.mean():.3f}, nearest-neighbour cosine {s.max(axis=1).mean():.3f}"


# -- the classic approach ---------------------------------------------------------------------------------
def write_h5(path: Path, vectors: np.ndarray) -> None:
    """The classic layout: dataset_1 vectors, dataset_2 names as fixed-length bytes."""
    names = np.array([f"img_{i:07d}.jpg".encode() for i in range(len(vectors))], dtype="S16")
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset_1", data=vectors)
        f.create_dataset("dataset_2", data=names)


def classic_search(path: Path, queries: np.ndarray) -> tuple[np.ndarray, list[float], float]:
    """Load the whole HDF5, then np.dot + argsort per query; returns (top-k indices, per-query ms, load s)."""
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        feats = f["dataset_1"][:]
        _names = f["dataset_2"][:]
    load_s = time.perf_counter() - t
    tops, times = [], []
    for q in queries:
        t = time.perf_counter()
        scores = np.dot(feats, q)
        rank = np.argsort(scores)[::-1][:TOP_K]
        times.append((time.perf_counter() - t) * 1000)
        tops.append(rank)
    return np.array(tops), times, load_s


# -- ours: Milvus -----------------------------------------------------------------------------------------
class BenchMilvus(MilvusServer):
    """MilvusServer with larger sealed segments (keys the package template lacks, edited after rendering)."""

    def __init__(self, data_dir, port, segment_mb: int):
        super().__init__(data_dir, port)
        self.segment_mb = segment_mb

    def _write_config(self):
        env = super()._write_config()
        if self.segment_mb:
            path = self.data_dir / "configs" / "milvus.yaml"
            text = path.read_text()
            # A growing segment is also sealed after maxBinlogFileNumber flushes of insertBufSize (16 MB).
            for old, new in ((" maxSize: 512 #", f" maxSize: {self.segment_mb} #"),
                             (" sealProportion: 0.23", " sealProportion: 1"),
                             (" maxBinlogFileNumber: 32", f" maxBinlogFileNumber: {max(32, self.segment_mb // 16)}")):
                if old not in text:
                    raise RuntimeError(f"milvus.yaml has no {old.strip()!r}: the template changed")
                text = text.replace(old, new, 1)
            path.write_text(text)
        return env


def load_collection(cat: Catalog, vectors: np.ndarray, fingerprint: str, prefix: str = "img") -> dict[str, float]:
    """Create, insert in 10k batches, flush, index, load; returns the seconds each step took. Every row
    carries `meta.shard` (row % 10), also a declared scalar field: the filtered search's 10%."""
    took = {}
    cat.drop()
    cat.create(DIM, fingerprint, index=None, scalar_fields=SHARD_FIELD)
    t = time.perf_counter()
    for start in range(0, len(vectors), BATCH):
        chunk = vectors[start:start + BATCH]
        cat.upsert([f"{prefix}_{start + i:07d}.jpg" for i in range(len(chunk))], chunk,
                   shard_meta(start, len(chunk)))
    took["insert"] = time.perf_counter() - t
    t = time.perf_counter()
    cat.flush()
    took["flush"] = time.perf_counter() - t
    t = time.perf_counter()
    cat.build_index(DEFAULT_INDEX)
    _wait_index(cat, len(vectors))
    took["index"] = time.perf_counter() - t
    t = time.perf_counter()
    cat.load()
    took["load"] = time.perf_counter() - t
    return took


def _wait_index(cat: Catalog, rows: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desc = cat.client.describe_index(cat.collection, index_name=S.VECTOR_FIELD)
        if int(desc.get("indexed_rows", 0)) >= rows and int(desc.get("pending_index_rows", 0)) == 0:
            return
        time.sleep(1)
    raise TimeoutError("index build did not finish")


def segment_count(cat: Catalog) -> int:
    """Sealed segments the query node holds (each query visits every one)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # ORM API: MilvusClient lacks this call
    try:
        from pymilvus import connections, utility

        alias = "bench"
        connections.connect(alias, uri=cat.uri)
        return len(utility.get_query_segment_info(cat.collection, using=alias))
    except Exception:  # informative only
        return -1


def ann_search(cat: Catalog, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """One query at a time through Catalog.search (shipped defaults); names back to row indices."""
    for q in queries[:20]:  # warm up caches and connections
        cat.search(q[None, :], top_k=TOP_K, with_meta=False)
    tops, times = [], []
    for q in queries:
        t = time.perf_counter()
        hits = cat.search(q[None, :], top_k=TOP_K, with_meta=False)[0]
        times.append((time.perf_counter() - t) * 1000)
        tops.append([int(h["name"][4:11]) for h in hits])
    return np.array(tops, dtype=object), times


def recall_at_k(found, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / TOP_K for f, t in zip(found, truth)]))


def pct(values, p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def bench_size(cat: Catalog, tmp: Path, vectors: np.ndarray, queries: np.ndarray, tag: str,
               fingerprint: str = BENCH_FINGERPRINT, filtered: bool = False) -> dict:
    """Baseline and ours on one data set; prints the RESULT lines."""
    n = len(vectors)
    h5 = tmp / f"{tag}.h5"
    write_h5(h5, vectors)
    truth, classic_ms, load_s = classic_search(h5, queries)
    h5.unlink()
    took = load_collection(cat, vectors, fingerprint)
    segments = segment_count(cat)
    found, ann_ms = ann_search(cat, queries)
    recall = recall_at_k(found, truth)
    print(f"INFO {tag}: {n} vectors; classic load {load_s:.1f}s; milvus insert {took['insert']:.0f}s, "
          f"flush {took['flush']:.0f}s, index {took['index']:.0f}s, load {took['load']:.0f}s; "
          f"{segments} sealed segments; {len(queries)} queries; index {DEFAULT_INDEX.index_type} "
          f"{DEFAULT_INDEX.build_params} search {DEFAULT_INDEX.search_params}", flush=True)
    for p in (50, 99):
        ours, base = pct(ann_ms, p), pct(classic_ms, p)
        print(f"RESULT search_p{p}_{tag} ours={ours:.2f}ms baseline={base:.2f}ms ratio={base / ours:.1f}", flush=True)
    print(f"RESULT recall_at_10_{tag} value={recall:.4f}", flush=True)
    if filtered:
        bench_filtered(cat, vectors, queries, ann_ms, tag)
    return {"recall": recall, "ann_ms": ann_ms, "classic_ms": classic_ms}


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


def bench_end_to_end(search_url: str, extractor_url: str, repeats: int) -> None:
    """Upload photos, then search by upload; client wall time, stages and the service's own overhead."""
    photos = sample_photos()
    for name, data in photos:
        resp = requests.post(search_url + "/v1/images", files={"image": (name, data)}, data={"name": name}, timeout=120)
        resp.raise_for_status()
    # Real features: how clustered they are, for comparison with the generator.
    batch = requests.post(extractor_url + "/v1/extract", files=[("image", (n, d)) for n, d in photos], timeout=300)
    real = np.array([r["vector"] for r in batch.json()["results"] if "vector" in r], dtype=np.float32)
    sims = real @ real.T
    off = sims[~np.eye(len(real), dtype=bool)]
    print(f"INFO real extracted features of {len(real)} sample photos: random-pair cosine {off.mean():.3f}, "
          f"min {(real.min()):.3f} (non-negative), nearest-other cosine {np.sort(sims, 1)[:, -2].mean():.3f}")
    session = requests.Session()
    wall, stages, hits = [], {"extract": [], "search": [], "total": []}, 0
    for i in range(repeats):
        name, data = photos[i % len(photos)]
        t = time.perf_counter()
        resp = session.post(search_url + "/v1/search", files={"image": (name, data)}, data={"top_k": TOP_K}, timeout=60)
        wall.append((time.perf_counter() - t) * 1000)
        resp.raise_for_status()
        body = resp.json()
        hits += body["results"][0]["name"] == name
        for k in stages:
            stages[k].append(body["took_ms"][k])
    wall_a, ext, srch, tot = (np.array(v) for v in (wall, stages["extract"], stages["search"], stages["total"]))
    overhead = wall_a - ext - srch
    print(f"INFO end to end: {repeats} uploads of {len(photos)} photos; the photo itself came first {hits}/{repeats}")
    print(f"RESULT e2e_request_p50 value={np.median(wall_a):.1f}ms", flush=True)
    print(f"RESULT e2e_request_p99 value={pct(wall_a, 99):.1f}ms", flush=True)
    print(f"RESULT e2e_extract_p50 value={np.median(ext):.1f}ms", flush=True)
    print(f"RESULT e2e_milvus_p50 value={np.median(srch):.2f}ms", flush=True)
    print(f"RESULT e2e_server_total_p50 value={np.median(tot):.1f}ms", flush=True)
    print(f"RESULT service_overhead_p50 value={np.median(overhead):.2f}ms", flush=True)
    print(f"RESULT service_overhead_inside_server_p50 value={np.median(tot - ext - srch):.2f}ms", flush=True)


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k only, fewer queries (under two minutes)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default 100000,1000000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per size (default 300; quick 100)")
    parser.add_argument("--segment-mb", type=int, default=4096, help="Milvus segment max size; 0 = package default")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end service part")
    parser.add_argument("--no-gaussian", action="store_true", help="skip the Gaussian worst case")
    parser.add_argument("--no-broad", action="store_true", help="skip the broad (ImageNet-like) data set")
    parser.add_argument("--no-duplicates", action="store_true", help="skip the near-duplicate groups")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("100000" if args.quick else "100000,1000000")).split(",")]
    nq = args.queries or (100 if args.quick else 300)
    e2e_repeats = 30 if args.quick else 100
    rng = np.random.default_rng(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    started = time.perf_counter()
    server = BenchMilvus(tmp / "milvus", free_port(), args.segment_mb)
    extractor = search = None
    try:
        # The extractor loads TensorFlow for ~20 s: start it first, in parallel with the data work.
        if not args.no_e2e:
            extractor = ServiceProcess("extractor_service", {"EXTRACTOR_WEIGHTS": "hed-vgg16", "TF_CPP_MIN_LOG_LEVEL": "2"},
                                       tmp / "extractor.log").start(wait_ready=False)
        server.start()
        print(f"INFO Milvus at {server.uri} (segment max {args.segment_mb or 'default'} MB), data in {tmp}", flush=True)
        kept: Catalog | None = None
        for i, n in enumerate(sizes):
            gen = VggLikeVectors(n_clusters=max(100, n // 100), seed=args.seed + i, **PRESETS["calibrated"])
            vectors, queries = gen.sample(n, rng), gen.sample(nq, rng)
            print(f"INFO VGG-like (calibrated) {label(n)}: {describe(vectors, queries)}", flush=True)
            cat = Catalog(server.uri, collection=f"vgg_{label(n)}", timeout=60)
            fingerprint = BENCH_FINGERPRINT
            if i == 0 and extractor is not None:
                # The service part searches this collection, so it must carry the extractor's fingerprint.
                extractor.wait_ready(timeout=300)
                fingerprint = requests.get(f"{extractor.url}/v1/info", timeout=10).json()["fingerprint"]
            bench_size(cat, tmp, vectors, queries, f"{label(n)}", fingerprint, filtered=n == max(sizes))
            del vectors
            if i == 0:
                kept = cat
            else:
                cat.drop()
        if not (args.quick or args.no_broad):
            n = sizes[0]
            gen = VggLikeVectors(n_clusters=max(100, n // 100), seed=args.seed + 100, **PRESETS["broad"])
            vectors, queries = gen.sample(n, rng), gen.sample(nq, rng)
            print(f"INFO VGG-like (broad) {label(n)}: {describe(vectors, queries)}", flush=True)
            cat = Catalog(server.uri, collection="broad", timeout=60)
            bench_size(cat, tmp, vectors, queries, f"broad_{label(n)}")
            cat.drop()
        if not args.no_duplicates:
            n = 20_000 if args.quick else sizes[0]
            gen = VggLikeVectors(n_clusters=max(100, n // 100), seed=args.seed + 200, **PRESETS["broad"])
            vectors = planted_duplicates(gen.sample(n, rng), rng)
            cat = Catalog(server.uri, collection="dups", timeout=60)
            load_collection(cat, vectors, BENCH_FINGERPRINT)
            bench_duplicates(cat, vectors, label(n))
            cat.drop()
            del vectors
        if not args.no_gaussian:
            n = sizes[0] if not args.quick else min(sizes[0], 10_000)
            cat = Catalog(server.uri, collection="gauss", timeout=60)
            vectors, queries = gaussian_vectors(n, rng), gaussian_vectors(nq, rng)
            print(f"INFO Gaussian {label(n)} (worst case, not the goal's data): {describe(vectors, queries)}", flush=True)
            bench_size(cat, tmp, vectors, queries, f"gaussian_{label(n)}")
            cat.drop()
        if extractor is not None and kept is not None:
            search = ServiceProcess("search_service", {
                "MILVUS_URI": server.uri, "EXTRACTOR_URL": extractor.url,
                "COLLECTION": kept.collection, "IMAGE_ROOT": str(tmp / "images")}, tmp / "search.log").start(timeout=60)
            bench_end_to_end(search.url, extractor.url, e2e_repeats)
            bench_batch(search.url, sample_photos(), repeats=3 if args.quick else 7)
    finally:
        for proc in (search, extractor):
            if proc is not None:
                proc.stop(grace=20)
        server.stop(grace=20)
    print(f"INFO total {time.perf_counter() - started:.0f}s", flush=True)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
