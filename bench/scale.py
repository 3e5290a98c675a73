"""Catalogues larger than memory (issue 20): every index mode on N feature-like vectors, one Milvus.

    python bench/scale.py            10,000,000 x 512-d (about 20 GB of HDF5; hours)
    python bench/scale.py --quick     1,000,000
    python bench/scale.py --rows 2000 --dim 256 --queries 20 --modes IVF_SQ8,BIN_ITQ256   (tests)
    python bench/scale.py --modes BIN_ITQ256 --reuse-file kept.h5   (the file of an earlier run, hard-linked)

Writes the vectors (bench/_search_data.py's `broad` generator, ImageNet-VGG16-like) as one classic HDF5
file, streaming, while it keeps each query's exact top 10; then per mode: imports the file with the loader
(bulk mode for float indexes, insert mode for binary codes, which bulk mode refuses), builds the index,
loads the collection alone (the others released) and searches the queries one at a time. For each mode a
RESULT line per figure: import rows/s, seconds from the import's end until every row is indexed, Milvus
resident memory when loaded after a restart and at rest (its CPU quiet and its memory steady: all of it, and
the anonymous part: memory-mapped segments are the rest; the restart makes insert-mode and bulk imports
compare alike; read again after the search pass),
Milvus disk used, recall@10 against exact search, p50/p99 latency. HNSW on raw vectors is the comparison.
It checks free disk first and refuses when the file and Milvus's copies would not fit; everything it
writes is removed at the end. Writing 10M rows takes 11-14 minutes: `--reuse-file` takes the file of an
earlier run of the same size instead (checked against the generator, its truth recomputed by reading it in
about a minute, and left in place).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import percentile, rss_mb, start_run, value, wait_until_quiet  # noqa: E402
from _search_data import PRESETS, FeatureLikeVectors  # noqa: E402

from _loader_cli import run_loader  # noqa: E402

from catalog import Catalog  # noqa: E402
from catalog.modes import floats_name  # noqa: E402
from devstack.milvus_server import MilvusServer  # noqa: E402
from devstack.processes import free_port  # noqa: E402
from loader.importer import wait_indexed  # noqa: E402

MODES = ("HNSW", "IVF_SQ8", "IVF_PQ", "BIN_ITQ256", "BIN_ITQ512")
FINGERPRINT = "bench-feature-like"
CHUNK = 100_000
# Milvus's disk per byte of the file, measured at 1M x 512-d (bench/results/*-scale-1m*.txt: HNSW 1.66,
# IVF_SQ8 1.01, IVF_PQ 0.88; binary codes 2.26 / 2.10 with float32 re-ranking vectors, 0.38-0.56 with int8
# ones, the default), with room for the staged import jobs and compaction. A dropped mode's files stay
# until Milvus's garbage collection (hours on the defaults), so the modes of one run add up. Searching adds
# CHUNK_CACHE: modes whose index holds no raw floats (IVF_SQ8, IVF_PQ, float32 re-ranking vectors under
# FLAT) have Milvus copy the floats it reads for re-ranking into its chunk cache (decoded binlogs,
# memory-mapped): up to one more copy of the floats (int8 ones sit in their BIN_FLAT index: no cache). A
# written file is deleted once the last mode is imported (its truth is computed, its rows are in Milvus),
# so that copy fits; a reused one stays and is not counted (it is on the disk already).
DISK_FACTOR = {"HNSW": 2.0, "IVF_SQ8": 1.3, "IVF_PQ": 1.2, "BIN_ITQ256": 1.0, "BIN_ITQ512": 1.0}
CHUNK_CACHE = {"HNSW": 0.0, "IVF_SQ8": 1.0, "IVF_PQ": 1.0, "BIN_ITQ256": 0.0, "BIN_ITQ512": 0.0}
FLOAT32_FLOATS = {"factor": 2.5, "chunk_cache": 1.0}  # binary modes with --rerank-floats float32


class TopTen:
    """Each query's exact top 10 (row numbers) over rows seen chunk by chunk."""

    def __init__(self, queries: np.ndarray):
        self.queries = queries
        self.best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
        self.best_i = np.zeros((len(queries), 10), dtype=np.int64)

    def add(self, start: int, x: np.ndarray) -> None:
        """Rows `start` .. `start + len(x)`."""
        s = self.queries @ x.T
        # the chunk's own top 10 in linear time (argpartition), then merged with the best so far: no full
        # sort and no (queries x chunk) index array, which took most of a 10M write
        k = min(10, s.shape[1])
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        all_s = np.concatenate([self.best_s, np.take_along_axis(s, part, 1)], axis=1)
        all_i = np.concatenate([self.best_i, part + start], axis=1)
        top = np.argpartition(-all_s, 9, axis=1)[:, :10]
        self.best_s, self.best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)


def write_file(path: Path, rows: int, dim: int, queries: np.ndarray, gen: FeatureLikeVectors,
               rng: np.random.Generator) -> np.ndarray:
    """Stream `rows` vectors into a classic HDF5 file; returns each query's exact top 10 (row numbers)."""
    import h5py

    top = TopTen(queries)
    with h5py.File(path, "w") as f:
        vec = f.create_dataset("dataset_1", (rows, dim), dtype="f4", chunks=(min(rows, 4096), dim))
        names = f.create_dataset("dataset_2", (rows,), dtype="S16")
        for start in range(0, rows, CHUNK):
            x = gen.sample(min(CHUNK, rows - start), rng)
            vec[start:start + len(x)] = x
            names[start:start + len(x)] = np.array([f"img_{i:09d}".encode() for i in range(start, start + len(x))])
            top.add(start, x)
    return top.best_i


def reuse_file(path: Path, rows: int, dim: int, queries: np.ndarray, gen: FeatureLikeVectors,
               rng: np.random.Generator) -> np.ndarray:
    """The truth of a file an earlier run wrote (what write_file would return), read back; SystemExit when
    the file is not that run's (another size, or its first chunk is not what the generator gives)."""
    import h5py

    with h5py.File(path, "r") as f:
        vec = f["dataset_1"]
        if vec.shape != (rows, dim):
            sys.exit(f"bench/scale.py: {path} holds {vec.shape[0]:,} x {vec.shape[1]}-d, this run is {rows:,} x {dim}-d")
        first = gen.sample(min(CHUNK, rows), rng)
        if not np.array_equal(vec[:len(first)], first):
            sys.exit(f"bench/scale.py: {path} was not written by this generator (its first rows differ)")
        top = TopTen(queries)
        for start in range(0, rows, CHUNK):
            top.add(start, vec[start:start + CHUNK])
    return top.best_i


def anon_mb(pid: int) -> float:
    """Anonymous resident memory (RssAnon) of `pid` and its children, in MB: what Milvus cannot give back.
    Memory-mapped segments (queryNode.mmapDirPath, on in deploy/milvus/user.yaml) count in RSS as
    file-backed pages, which the kernel drops under pressure."""
    import psutil

    total = 0
    proc = psutil.Process(pid)
    for p in [proc, *proc.children(recursive=True)]:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                total += sum(int(ln.split()[1]) for ln in f if ln.startswith("RssAnon:"))
        except OSError:
            pass
    return total / 1024


class PeakRss:
    """Milvus's largest resident memory while the `with` block runs, sampled every second in a thread."""

    def __init__(self, server: MilvusServer, every_s: float = 1.0):
        self.server, self.every_s, self.peak_mb = server, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.peak_mb = max(self.peak_mb, rss_mb([self.server.proc.pid]))
            except Exception:  # noqa: BLE001 - a process gone between listing and reading: next sample
                pass

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def print_segments(uri: str, collections: list[str], when: str) -> None:
    """An INFO line per collection: how many segments and rows the query node holds loaded."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        for name in collections:
            segs = client.list_loaded_segments(name)
            print(f"INFO {when}: {name} {len(segs)} loaded segments, {sum(x.num_rows for x in segs):,} rows",
                  flush=True)
    finally:
        client.close()


def rows_of(h5: Path) -> int:
    """Rows in the classic file's vector dataset."""
    import h5py

    with h5py.File(h5, "r") as f:
        return int(f["dataset_1"].shape[0])


def dir_mb(path: Path) -> float:
    """Disk used under `path`, in MB."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def search_figures(cat: Catalog, queries: np.ndarray, truth: np.ndarray, prefix: str,
                   params: dict | None = None) -> None:
    """Each query searched alone (top 10), as a user's request is: recall@10, p50 and p99 RESULT lines.
    `params` override the mode's search parameters (nprobe, ef, candidates...)."""
    spec = cat.index_spec()
    took, found = [], 0
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        hits = cat.search(q[None, :], top_k=10, index=spec, params=params, with_meta=False)[0]
        took.append((time.perf_counter() - t0) * 1000)
        found += len({h["name"] for h in hits} & {f"img_{i:09d}" for i in t})
    value(f"{prefix}_recall_at_10", found / truth.size)
    value(f"{prefix}_search_p50", percentile(took, 50), "ms")
    value(f"{prefix}_search_p99", percentile(took, 99), "ms")


def variant_tag(params: dict) -> str:
    """RESULT-name suffix of a search-parameter variant: {"nprobe": 16} -> "nprobe16"."""
    return "_".join(f"{k}{v}" for k, v in sorted(params.items()))


def bench_mode(server: MilvusServer, h5: Path, kind: str, queries: np.ndarray, truth: np.ndarray, tag: str,
               work: Path, kill_after: float | None = None, last: bool = False,
               variants: list[dict] | None = None, rerank_floats: str = "int8", keep_file: bool = False) -> None:
    """Import (the loader's CLI, as a user runs it), index, load and search one mode; RESULT lines named
    `scale_<mode>_<tag>_...`. With `kill_after`, the import is killed that many seconds in and rerun. After
    the `last` mode's import the file is deleted (room for the chunk cache, see CHUNK_CACHE) unless
    `keep_file`."""
    name = f"scale_{kind.lower()}"
    cat = Catalog(server.uri, collection=name, timeout=120)
    cat.drop()
    binary = kind.startswith("BIN_")
    rows = rows_of(h5)
    # nlist ~ 4 sqrt(rows), at most the modes' default 1024: a tiny run does not cluster 2k rows 1024 ways.
    nlist = int(min(1024, max(16, 4 * np.sqrt(rows))))
    extra = ["--index", kind.lower(), "--fingerprint", FINGERPRINT,
             "--mode", "insert" if binary else "bulk", "--bulk-dir", str(work / "bulk")]
    if binary:
        extra += ["--rerank-floats", rerank_floats]
    if kind != "HNSW":
        extra += ["--index-params", json.dumps({"nlist": nlist})]
    disk0 = dir_mb(server.data_dir)
    with PeakRss(server) as milvus_peak:  # the import and the index build: what the machine must have free
        run = run_loader(server.uri, h5, name, extra, work / f"state-{name}", kill_after)
    # binary modes' figures name how the re-ranking vectors are stored when it is not the default
    prefix = f"scale_{kind.lower()}_{tag}" + (f"_{rerank_floats}" if binary and rerank_floats != "int8" else "")
    if run.killed_after_s is not None:
        # rows/s over both runs: the killed one's time is lost work a user waits through too
        stored = cat.count()
        value(f"{prefix}_rows_after_kill_and_rerun", stored, f"rows (of {rows})")
        if stored != rows:
            raise RuntimeError(f"{name}: {stored:,} rows after the rerun, the file has {rows:,}")
        took = run.killed_after_s + run.resumed_s - run.index_load_s
        value(f"{prefix}_import_rows_per_s_killed_at_{run.killed_after_s:.0f}s", rows / took, "rows/s")
    else:
        value(f"{prefix}_import_rows_per_s", run.rows_per_s, "rows/s")
    value(f"{prefix}_loader_peak_rss", run.peak_rss_mb, "MB")
    value(f"{prefix}_milvus_peak_rss_import", milvus_peak.peak_mb, "MB")
    if last and not keep_file:
        h5.unlink()
    # The loader waits until Milvus has indexed every row (searches of rows not yet indexed are brute force);
    # checked again here, since the figures below mean nothing before.
    if not wait_indexed(cat, retry_seconds=60):
        raise RuntimeError(f"{cat.collection}: the index made no progress")
    value(f"{prefix}_index_after_import_s", run.index_load_s, "s")
    # Memory as the mode holds it after any restart: a restarted server loads the indexed segments only, so
    # what an import left behind (insert mode's growing segments, the Go heap they grew) counts for no mode.
    # Everything is flushed (the loader's end point), so a SIGKILL loses nothing.
    cat.close()
    server.kill()
    server.start()
    cat = Catalog(server.uri, collection=name, timeout=120)
    cat.load()
    # The query node swaps in the indexed segments and the load's transient buffers go (tiny runs: moments);
    # then Milvus may still compact an insert-mode import's segments and index the result (10M binary codes:
    # both cores busy and RSS +6 GB during the search pass): the figures are of the catalogue at rest.
    time.sleep(15 if rows >= 100_000 else 1)
    # At rest: CPU quiet and memory steady over 30 s (10M: a 5 s lull came while 7 GB were still to go).
    window = 15.0 if rows >= 1_000_000 else 5.0 if rows >= 100_000 else 0.5
    value(f"{prefix}_quiet_after_load_s",
          wait_until_quiet([server.proc.pid], window_s=window, rss_tolerance=0.02), "s")
    print_segments(server.uri, [name, floats_name(name)] if binary else [name], "at rest")
    value(f"{prefix}_milvus_rss_loaded", rss_mb([server.proc.pid]), "MB")
    value(f"{prefix}_milvus_anon_loaded", anon_mb(server.proc.pid), "MB")
    value(f"{prefix}_milvus_disk", dir_mb(server.data_dir) - disk0, "MB")
    search_figures(cat, queries, truth, prefix)
    value(f"{prefix}_milvus_rss_after_search", rss_mb([server.proc.pid]), "MB")
    for params in variants or []:
        # after the defaults' pass: caches are warmer, so the defaults run again last for a like comparison
        search_figures(cat, queries, truth, f"{prefix}_{variant_tag(params)}", params)
    if variants:
        search_figures(cat, queries, truth, f"{prefix}_defaults_again")
    cat.drop()  # its disk back before the next mode
    cat.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000,000 vectors instead of 10,000,000")
    ap.add_argument("--rows", type=int, default=None, help="any size (tests: a few thousand)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--workdir", default=None, help="where the file and Milvus's data go (default: a temp dir)")
    ap.add_argument("--kill-after", type=float, default=None,
                    help="SIGKILL the first mode's import this many seconds in, then rerun it (resume check)")
    ap.add_argument("--rerank-floats", choices=["int8", "float32"], default="int8",
                    help="binary modes: how the vectors for re-ranking are stored (the loader's --rerank-floats)")
    ap.add_argument("--search-variants", default=None, metavar="JSON",
                    help='search parameters to try after each mode\'s defaults, a JSON list of objects, e.g. '
                         '\'[{"nprobe": 16}, {"candidates": 0}]\' (each its own RESULT lines)')
    ap.add_argument("--reuse-file", type=Path, default=None, metavar="H5",
                    help="the vectors file of an earlier run of the same --rows and --dim (keep it with a hard "
                         "link while that run deletes its copy): not written again, not deleted")
    args = ap.parse_args()
    try:
        variants = json.loads(args.search_variants) if args.search_variants else []
    except ValueError as exc:
        ap.error(f"--search-variants: not JSON ({exc})")
    if not isinstance(variants, list) or not all(isinstance(v, dict) and v for v in variants):
        ap.error("--search-variants: a JSON list of non-empty objects")
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    modes = [m.strip().upper() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; use {', '.join(MODES)}")
    if args.reuse_file is not None:
        if not args.reuse_file.is_file():
            ap.error(f"--reuse-file: no file {args.reuse_file}")
        args.reuse_file = args.reuse_file.resolve()  # the loader runs in the repository's folder
    start_run("bench/scale.py", quick=args.quick or bool(args.rows))
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    f32 = args.rerank_floats == "float32"
    factor = {m: FLOAT32_FLOATS["factor"] if f32 and m.startswith("BIN_") else DISK_FACTOR[m] for m in modes}
    cache = FLOAT32_FLOATS["chunk_cache"] if f32 and modes[-1].startswith("BIN_") else CHUNK_CACHE[modes[-1]]
    imported = sum(factor.values())
    file_part = 0 if args.reuse_file else 1
    need = rows * args.dim * 4 * max(file_part + imported, imported + cache)
    free = shutil.disk_usage(work).free
    if free < need:
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(f"bench/scale.py: {rows:,} x {args.dim}-d needs about {need / 2**30:.0f} GB of disk under {work.parent}, "
                 f"{free / 2**30:.0f} GB is free: use --workdir on a larger disk or fewer --rows")
    tag = f"{rows // 1_000_000}m" if rows >= 1_000_000 else f"{rows // 1000}k"
    server = None
    try:
        gen = FeatureLikeVectors.preset("broad", rows, seed=0, presets={"broad": {**PRESETS["broad"], "dim": args.dim}})
        rng = np.random.default_rng(1)
        queries = gen.sample(args.queries, np.random.default_rng(2))
        t0 = time.monotonic()
        if args.reuse_file:
            h5 = args.reuse_file
            truth = reuse_file(h5, rows, args.dim, queries, gen, rng)
            print(f"INFO reused {h5} ({rows:,} x {args.dim}-d), its truth read in {time.monotonic() - t0:.0f} s",
                  flush=True)
        else:
            h5 = work / "vectors.h5"
            truth = write_file(h5, rows, args.dim, queries, gen, rng)
            print(f"INFO wrote {rows:,} x {args.dim}-d in {time.monotonic() - t0:.0f} s", flush=True)
        server = MilvusServer(work / "milvus", port=free_port()).start()
        for i, kind in enumerate(modes):
            bench_mode(server, h5, kind, queries, truth, tag, work,
                       args.kill_after if i == 0 else None, last=i == len(modes) - 1, variants=variants,
                       rerank_floats=args.rerank_floats, keep_file=args.reuse_file is not None)
    finally:
        if server is not None:
            server.stop(grace=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
