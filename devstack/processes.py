"""Our services as child processes, the one way the local stack, the tests and the benchmarks run them:
start on a loopback port, wait until ready (failing early when the child dies), always stop.

Each child runs `python -m <module> --host 127.0.0.1 --port N` in a process group of its own, so a stop
reaches gunicorn's workers too, with its output appended to a log file.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def listen_port(taken: set[int], check_free: bool) -> int:
    """A port for a Milvus component to listen on, below the ephemeral range: there, no outgoing
    connection (Milvus's own, e.g. to its etcd, included) can be holding it when the component binds."""
    low, _ = ephemeral_ports()
    pick = random.Random()
    for _ in range(1000):
        port = pick.randint(10_000, max(10_001, low - 1))
        if port not in taken and (not check_free or bindable(port)):
            return port
    return free_port()


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as Milvus's Go listeners use)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class ServiceProcess:
    """`python -m <module> --host 127.0.0.1 --port N` as a child process, with its log in `log_path`."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path, port: int | None = None,
                 ready_path: str = "/readyz", args: list[str] | None = None, name: str | None = None):
        self.module = module
        self.name = name or module
        self.env = {**os.environ, **env}
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.ready_path = ready_path
        self.args = args or []
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0, wait_ready: bool = True) -> "ServiceProcess":
        """Start the child (and by default wait until `ready_path` answers 200)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 180.0, path: str | None = None) -> None:
        """Wait until GET `path` (default `ready_path`) answers 200; RuntimeError with the log's tail when
        the child exits first, TimeoutError when it is not ready in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}:\n{self.tail()}")
            try:
                if requests.get(self.url + (path or self.ready_path), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready in {timeout:.0f}s; see {self.log_path}:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        """The last `n` characters of the child's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL after `grace` seconds."""
        if self.proc and self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the whole process group (gunicorn master and workers)."""
        if self.proc and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def pids(self) -> list[int]:
        import psutil

        try:
            p = psutil.Process(self.proc.pid)
            return [p.pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
