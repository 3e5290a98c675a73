"""The insert path's ceiling for bench/load.py: a sweep of bare `MilvusClient.insert` loops.

One point: the file's rows as the loader stores them (its names, L2-normalised vectors, empty meta), all in
memory and already made into row dicts before the clock starts, sent as `batch`-row insert calls with
`in_flight` calls outstanding (threads sharing one client, like the loader's), into a fresh empty
collection, then flushed: the clock stops when the data is durable, the loader's own end point (its
rows/s runs until its final flush). The sweep: batch sizes 5,000 / 10,000 / 20,000 x 1 / 2 / 4 calls in
flight; the ceiling is its best point.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _load_rows import empty_collection, file_rows

from catalog import schema as S

BATCHES = (5_000, 10_000, 20_000)
IN_FLIGHT = (1, 2, 4)
CONFIGS = tuple((batch, k) for batch in BATCHES for k in IN_FLIGHT)

Point = tuple[int, int]  # (rows per insert call, calls in flight)


def insert_point(uri: str, names: list[str], vectors: np.ndarray, batch: int, in_flight: int) -> float:
    """rows/s of one bare insert loop into a new collection, until flushed."""
    cat = empty_collection(uri, "ceiling_insert")
    calls = [[{S.NAME_FIELD: names[i], S.VECTOR_FIELD: vectors[i], S.META_FIELD: {}}
              for i in range(s, min(s + batch, len(names)))] for s in range(0, len(names), batch)]
    os.sync()  # the previous run's files written back before the clock starts, as before each of our runs
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="bare-insert") as pool:
        for _ in pool.map(lambda rows: cat.client.insert(cat.collection, rows), calls):
            pass
    cat.flush()
    dt = time.monotonic() - t0
    cat.drop()
    cat.close()
    return len(names) / dt


def sweep(uri: str, source: Path, rows: int, points: Sequence[Point], label: str) -> dict[Point, float]:
    """rows/s of each point, in the order given, every one printed."""
    names, vectors = file_rows(source, rows)
    out: dict[Point, float] = {}
    for batch, k in points:
        t0 = time.monotonic()
        out[(batch, k)] = insert_point(uri, names, vectors, batch, k)
        print(f"  {label}: {batch:>6,}-row inserts x {k} in flight: {out[(batch, k)]:>9,.0f} rows/s "
              f"({time.monotonic() - t0:.1f} s with collection create/drop)", flush=True)
    return out


def best(points: dict[Point, float], n: int = 1) -> list[Point]:
    """The n fastest points, fastest first."""
    return sorted(points, key=points.__getitem__, reverse=True)[:n]


def describe(point: Point) -> str:
    return f"{point[0]:,} rows x {point[1]} in flight"
