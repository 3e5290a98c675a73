"""Loader fixtures and helpers: small HDF5 files in the classic layout and variants, running the CLI (to
the end, or in the background to kill it), reading its resume records, and checking what Milvus holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def write_classic(path: Path, n: int, dim: int = 16, seed: int = 0, prefix: str = "img",
                  attrs: dict | None = None, names_dtype: str = "fixed") -> tuple[np.ndarray, list[str]]:
    """A classic-layout file (dataset_1 float32, dataset_2 names); returns (vectors, names)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    names = [f"{prefix}_{i:06d}.jpg" for i in range(n)]
    with h5py.File(path, "w") as f:
        f["dataset_1"] = vectors
        if names_dtype == "fixed":
            f["dataset_2"] = np.array([s.encode() for s in names], dtype=np.bytes_)
        else:
            f.create_dataset("dataset_2", data=names, dtype=h5py.string_dtype())
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return vectors, names


def run_loader(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m loader ARGS` as a subprocess (what users and scripts run)."""
    return subprocess.run(
        [sys.executable, "-m", "loader", *args], cwd=REPO, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def start_loader(args: list[str], env: dict) -> subprocess.Popen:
    """`python -m loader ARGS` in the background (to be killed mid-import)."""
    return subprocess.Popen([sys.executable, "-m", "loader", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(state_dir: Path) -> list[dict]:
    """The resume records in `state_dir` as saved (loader.state's JSON); one being replaced is skipped."""
    out = []
    for p in state_dir.glob("*.json"):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def record_jobs(record: dict) -> list[dict]:
    """The bulk jobs of a resume record (none before bulk mode started)."""
    return (record.get("bulk") or {}).get("jobs", [])


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_record(state_dir: Path, proc: subprocess.Popen, condition: Callable[[dict], bool], what: str,
                timeout: float = 120) -> dict:
    """Poll the loader's resume record until `condition` holds for it; returns that record. Fails when the
    loader ends first or `timeout` passes."""
    found: list[dict] = []

    def seen() -> bool:
        found.extend(r for r in records(state_dir) if condition(r))
        assert found or proc.poll() is None, f"loader ended before {what}: {proc.communicate()}"
        return bool(found)

    if not wait_until(seen, timeout):
        raise TimeoutError(f"no {what} within {timeout:.0f} s")
    return found[0]


def wait_rows(state_dir: Path, proc: subprocess.Popen, rows: int, timeout: float = 120) -> int:
    """Poll the resume record until at least `rows` rows are acknowledged; returns what it saw."""
    record = wait_record(state_dir, proc, lambda r: r.get("rows_done", 0) >= rows, f"row {rows}", timeout)
    return record["rows_done"]


def wait_job_submitted(state_dir: Path, proc: subprocess.Popen, later: bool, timeout: float = 120) -> None:
    """Poll the resume record until the first job (or a later one) has been submitted to Milvus."""
    wait_record(state_dir, proc, lambda r: any(j["state"] == "submitted" and (j["first"] > 0) == later
                                               for j in record_jobs(r)), "job submitted", timeout)


def assert_exact(catalog, names: list[str]) -> None:
    """The collection holds exactly `names`, each once."""
    stored = all_names(catalog)
    assert catalog.count() == len(names)
    assert len(stored) == len(names) and sorted(stored) == sorted(names)


def all_names(catalog) -> list[str]:
    """Every stored name (duplicates included), straight from Milvus with Strong consistency."""
    rows = catalog.client.query(catalog.collection, filter='name != ""', output_fields=["name"],
                                limit=16384, consistency_level="Strong")
    return [r["name"] for r in rows]


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("LOADER_STATE_DIR", str(d))
    return d
