"""`python -m loader import` as a user runs it, from a benchmark: a subprocess, its peak RSS sampled, its
rows/s read from its summary line; optionally killed part-way and run again (the resume a user does)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r", ([\d,]+) rows/s, index\+load ([\d.]+) s")


@dataclass
class LoaderRun:
    rows_per_s: float  # the summary's figure: rows until durable, over the import's own time
    index_load_s: float  # from the data being durable until indexed and loaded
    peak_rss_mb: float  # the loader process's, sampled every 50 ms (the largest of both runs when killed)
    killed_after_s: float | None = None  # wall time of the run that was killed, if one was
    resumed_s: float | None = None  # wall time of the rerun that finished the import, if one was needed
    output: str = ""


def _run(cmd: list[str], state: Path, kill_after: float | None) -> tuple[int, str, str, float, float]:
    """(returncode, stdout, stderr, peak RSS bytes, wall seconds); SIGKILL after `kill_after` seconds."""
    t0 = time.monotonic()
    proc = psutil.Popen(cmd, cwd=REPO, env={**os.environ, "LOADER_STATE_DIR": str(state)},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if kill_after is not None and time.monotonic() - t0 >= kill_after:
            proc.kill()  # SIGKILL: no handler runs, as with the OOM killer or a pulled plug
        time.sleep(0.05)
    out, err = proc.communicate()
    return proc.returncode, out, err, peak, time.monotonic() - t0


def run_loader(uri: str, path: Path, collection: str, extra: list[str], state: Path,
               kill_after: float | None = None) -> LoaderRun:
    """Import `path` with the loader CLI (`extra`: its options); with `kill_after`, the first run is killed
    after that many seconds and the same command run again to finish it from the state dir."""
    cmd = [sys.executable, "-m", "loader", "import", str(path), "--milvus-uri", uri, "--collection", collection,
           "--quiet", *extra]
    killed = None
    peak = 0.0
    if kill_after is not None:
        code, out, err, peak, wall = _run(cmd, state, kill_after)
        if code == 0:
            raise RuntimeError(f"the loader finished within {kill_after} s, before the kill: use a later --kill-after")
        killed = wall
    code, out, err, peak2, wall = _run(cmd, state, None)
    if code != 0:
        raise RuntimeError(f"loader failed: {err or out}")
    m = SUMMARY.search(out)
    if not m:
        raise RuntimeError(f"no summary line in the loader's output: {out!r}")
    return LoaderRun(float(m.group(1).replace(",", "")), float(m.group(2)), max(peak, peak2) / 2**20,
                     killed, wall if killed is not None else None, out.strip())
