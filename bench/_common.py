"""Small helpers shared by the benchmarks: RESULT lines, the machine they ran on, percentiles, a numpy
matmul roofline.

Every RESULT line ends with `machine=<id> at=<seconds>s`: the machine (`machine_id()`: architecture, CPU
count, AVX-512 or not, GPU or none, CPU model) and how far into the run it was measured. A run prints
`MACHINE <full description>` first (`start_run`) and `RUN <script> length=<seconds>s mode=full|quick` last
(`end_run`), so a figure can always be traced to a machine and to a full or a quick run.
"""

from __future__ import annotations

import atexit
import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_T0 = time.monotonic()


@functools.cache
def machine() -> dict[str, str | int | bool]:
    """This machine: CPU model, usable cores, AVX-512, GPU (nvidia-smi's name, or none)."""
    model, flags = platform.processor() or "unknown", ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = (re.search(r"^model name\s*:\s*(.+)$", text, re.M) or re.search(r"^Model\s*:\s*(.+)$", text, re.M)
                 or re.search("(.*)", model)).group(1).strip()
        flags = (re.search(r"^flags\s*:\s*(.+)$", text, re.M) or re.search("()", "")).group(1)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    gpu = "none"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            gpu = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "none"
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return {"arch": platform.machine(), "cpu": model, "cores": cores, "avx512": "avx512f" in flags.split(),
            "gpu": gpu}


def machine_id() -> str:
    """A short id of this machine for RESULT lines, e.g. `x86_64-2c-avx512-nogpu-amd-epyc`."""
    m = machine()
    cpu = re.sub(r"[^a-z0-9]+", "-", str(m["cpu"]).lower()).strip("-")[:24] or "cpu"
    gpu = "nogpu" if m["gpu"] == "none" else re.sub(r"[^a-z0-9]+", "-", str(m["gpu"]).lower()).strip("-")
    return f"{m['arch']}-{m['cores']}c-{'avx512' if m['avx512'] else 'noavx512'}-{gpu}-{cpu}"


def start_run(script: str, quick: bool) -> None:
    """Print the MACHINE line; at exit, the RUN line with the run's length and mode."""
    m = machine()
    print(f"MACHINE {machine_id()} cpu={m['cpu']!r} cores={m['cores']} avx512={m['avx512']} gpu={m['gpu']!r}",
          flush=True)
    atexit.register(lambda: print(f"RUN {script} length={time.monotonic() - _T0:.0f}s "
                                  f"mode={'quick' if quick else 'full'} machine={machine_id()}", flush=True))


def _stamp() -> str:
    return f" machine={machine_id()} at={time.monotonic() - _T0:.0f}s"


def _num(x: float) -> str:
    """4 significant digits, without exponents for large figures (15940 rows/s, not 1.594e+04)."""
    return f"{x:.0f}" if abs(x) >= 1000 and x == x else f"{x:.4g}"


def result(name: str, ours: float, baseline: float, unit: str, higher_is_better: bool = True) -> str:
    """Print and return `RESULT name ours=..unit baseline=..unit ratio=..` (ratio > 1: ours is better)."""
    ratio = (ours / baseline if higher_is_better else baseline / ours) if ours and baseline else float("nan")
    line = f"RESULT {name} ours={_num(ours)}{unit} baseline={_num(baseline)}{unit} ratio={ratio:.3f}" + _stamp()
    print(line, flush=True)
    return line


def value(name: str, number: float, unit: str = "") -> str:
    """Print and return `RESULT name value=<number><unit>`."""
    line = f"RESULT {name} value={_num(number)}{unit}" + _stamp()
    print(line, flush=True)
    return line


def _process_tree(pids: list[int]) -> list:
    """psutil handles of these processes and all their children, each once; gone ones left out."""
    import psutil

    procs, seen = [], set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                if p.pid not in seen:
                    seen.add(p.pid)
                    procs.append(p)
        except psutil.NoSuchProcess:
            continue
    return procs


def _sum_over(procs: list, read) -> float:
    """`read(process)` summed over processes, skipping those that ended meanwhile."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            total += read(p)
        except psutil.NoSuchProcess:
            continue
    return total


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and all their children, in MB."""
    return _sum_over(_process_tree(pids), lambda p: p.memory_info().rss) / 2**20


def wait_until_quiet(pids: list[int], busy_cores: float = 0.25, window_s: float = 5.0, quiet_windows: int = 2,
                     timeout_s: float = 900.0, rss_tolerance: float | None = None) -> float:
    """Wait until these processes (and their children) use less than `busy_cores` of CPU for `quiet_windows`
    windows in a row; returns the seconds waited (at most `timeout_s`). With `rss_tolerance` (e.g. 0.02) a
    window is quiet only if their resident memory also moved by less than that share of it.

    After a load Milvus may still compact segments and rebuild their indexes in the background, on the same
    cores the timed part would use: figures taken then measure that work, not the search. Its memory needs
    the second condition: at 10M rows a lull between those steps passed for quiet while Milvus still held
    15.5 GB, which it let go a minute later (8.4 GB; bench/results/...-scale-10m-bin-itq512-at-rest.txt).
    """
    def cpu_seconds() -> float:
        return _sum_over(_process_tree(pids), lambda p: sum(p.cpu_times()[:2]))  # user + system

    start = time.monotonic()
    quiet = 0
    while quiet < quiet_windows and time.monotonic() - start < timeout_s:
        before, rss_before = cpu_seconds(), rss_mb(pids)
        time.sleep(window_s)
        idle = cpu_seconds() - before < busy_cores * window_s
        if rss_tolerance is not None:
            idle = idle and abs(rss_mb(pids) - rss_before) <= rss_tolerance * max(rss_before, 1.0)
        quiet = quiet + 1 if idle else 0
    return time.monotonic() - start


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
