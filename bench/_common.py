"""Small helpers shared by the benchmarks: RESULT lines, percentiles, a numpy matmul roofline, free ports."""

from __future__ import annotations

import socket
import time

import numpy as np


def result(name: str, ours: float, baseline: float, unit: str, higher_is_better: bool = True) -> str:
    """Print and return `RESULT name ours=..unit baseline=..unit ratio=..` (ratio > 1: ours is better)."""
    ratio = (ours / baseline if higher_is_better else baseline / ours) if ours and baseline else float("nan")
    line = f"RESULT {name} ours={ours:.4g}{unit} baseline={baseline:.4g}{unit} ratio={ratio:.3f}"
    print(line, flush=True)
    return line


def value(name: str, number: float, unit: str = "") -> str:
    """Print and return `RESULT name value=<number><unit>`."""
    line = f"RESULT {name} value={number:.4g}{unit}"
    print(line, flush=True)
    return line


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) of samples, nan when empty."""
    return float(np.percentile(samples, q)) if samples else float("nan")


def matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """float32 matrix-multiply GFLOP/s with numpy (best of repeated n x n products): this machine's roofline."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
