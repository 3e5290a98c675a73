"""`make run`'s orchestrator (`python -m localstack`) on free ports: serves the page, indexes the sample
photos once, stops on Ctrl-C within 30 s, and comes back on the same data without re-indexing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from localstack.milvus_server import free_port
from tests.procs import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _start(env: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "localstack"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _wait_for_line(proc: subprocess.Popen, log_path, text: str, timeout: float = 400) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = log_path.read_text(errors="replace")
        if text in out:
            return out
        assert proc.poll() is None, f"localstack exited early:\n{out[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {timeout}s:\n{log_path.read_text(errors='replace')[-3000:]}")


def _ctrl_c(proc: subprocess.Popen) -> float:
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the stack started no child processes"
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # fail, but leave nothing running behind
        for p in [psutil.Process(proc.pid), *children]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        raise
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"still running after Ctrl-C: {[p.pid for p in alive]}"
    return time.monotonic() - start


def test_make_run_serves_indexes_once_and_stops(tmp_path):
    ports = {"MILVUS_PORT": free_port(), "EXTRACTOR_PORT": free_port(), "SEARCH_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "DATA_DIR": str(tmp_path / "data"),
           "EXTRACTOR_WEIGHTS": "hed-vgg16"}
    base = f"http://127.0.0.1:{ports['SEARCH_PORT']}"

    log1 = tmp_path / "run1.log"
    proc = _start(env, log1)
    try:
        out = _wait_for_line(proc, log1, f"{base}/")
        assert "is empty: indexing" in out
        page = requests.get(base + "/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        images = sorted((tmp_path / "data" / "images").iterdir())
        assert len(images) >= 10
        with open(images[0], "rb") as fh:
            body = requests.post(base + "/v1/search", files={"image": fh}, timeout=60).json()
        assert body["results"][0]["name"] == images[0].name
        assert body["results"][0]["score"] >= 0.99
        count = requests.get(base + "/v1/stats", timeout=10).json()["count"]
        assert count == len(images)
    finally:
        took = _ctrl_c(proc)
    # Reported, not asserted (no timing thresholds in tests); _ctrl_c fails on a hang.
    print(f"Ctrl-C stopped the whole stack in {took:.1f}s")

    log2 = tmp_path / "run2.log"
    proc = _start(env, log2)
    try:
        out = _wait_for_line(proc, log2, f"{base}/")
        assert "not re-indexing" in out and "is empty" not in out
        assert requests.get(base + "/v1/stats", timeout=10).json()["count"] == count
    finally:
        _ctrl_c(proc)
