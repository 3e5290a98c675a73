"""Small helpers shared by the benchmarks: RESULT lines, percentiles, a numpy matmul roofline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
    """float32 matrix-multiply GFLOP/s with numpy (best of repeated n x n products): this machine's roofline.

    Measured in a child process without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: some machines set them to
    pin OpenBLAS to older (e.g. AVX2) kernels, which would understate the CPU's peak against TensorFlow's
    own kernels. Falls back to measuring in this process.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import _common; " \
           f"print(_common._matmul_gflops_here({n}, {seconds}))"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=seconds + 60, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return _matmul_gflops_here(n, seconds)


def _matmul_gflops_here(n: int, seconds: float) -> float:
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
