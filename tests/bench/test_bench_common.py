"""bench/_common.py's helpers that decide when and how figures are taken."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _common import wait_until_quiet  # noqa: E402


def test_wait_until_quiet_returns_once_an_idle_process_stays_idle():
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        waited = wait_until_quiet([idle.pid], window_s=0.2, quiet_windows=2, timeout_s=10)
    finally:
        idle.kill()
        idle.wait()
    assert 0.35 <= waited < 3


def test_wait_until_quiet_waits_for_a_busy_child_until_its_timeout():
    # The busy loop runs in a child of the watched process: Milvus's work happens in its children too.
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                               "'while True: pass']); time.sleep(30)"])
    try:
        time.sleep(0.5)  # the child is running
        waited = wait_until_quiet([parent.pid], window_s=0.2, quiet_windows=2, timeout_s=1.5)
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
    assert waited >= 1.5


def test_wait_until_quiet_ignores_processes_that_are_gone():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert wait_until_quiet([gone.pid], window_s=0.1, quiet_windows=1, timeout_s=5) < 1


GROWING = """
import time
held = []
for _ in range(300):  # 8 MB every 0.05 s, touched so it is resident, for at most 15 s
    held.append(b"\x01" * (8 << 20))
    time.sleep(0.05)
time.sleep(30)
"""


def test_wait_until_quiet_with_rss_tolerance_waits_while_memory_moves():
    # Nearly idle on the CPU but its memory grows: quiet by CPU alone, not at rest.
    growing = subprocess.Popen([sys.executable, "-c", GROWING])
    try:
        time.sleep(0.3)
        by_cpu = wait_until_quiet([growing.pid], busy_cores=0.9, window_s=0.2, quiet_windows=2, timeout_s=1.5)
        at_rest = wait_until_quiet([growing.pid], busy_cores=0.9, window_s=0.2, quiet_windows=2, timeout_s=1.5,
                                   rss_tolerance=0.02)
    finally:
        growing.kill()
        growing.wait()
    assert by_cpu < 1.2
    assert at_rest >= 1.5
