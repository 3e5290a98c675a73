"""Linux network namespaces for Milvus: a launcher that isolates it, and a loopback relay to reach it.

Milvus 2.3 listens on all interfaces and cannot be told otherwise (milvus-io/milvus#26538). Started
through `NETNS_LAUNCHER`, it runs in a namespace that has nothing but a loopback interface; a
`NetnsDialer` thread creates sockets inside that namespace, and a `LoopbackRelay` listens on
127.0.0.1:<port> in the host namespace and pipes each connection to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

ISOLATE_ENV = "MILVUS_ISOLATE_NETWORK"
CLONE_NEWNET = 0x40000000
_CAP_SYS_ADMIN = 21
_RELAY_CHUNK = 256 * 1024  # bytes per recv: bulk inserts move tens of MB/s, so few large copies
LD_PATH_ENV = "MILVUS_NETNS_LD_LIBRARY_PATH"

# Started as `python -I -S -c NETNS_LAUNCHER milvus run standalone`: moves itself into a new network
# namespace, brings its loopback interface up, then execs Milvus (same pid). A separate launcher rather
# than Popen(preexec_fn=...) because preexec_fn is unsafe once this process runs relay threads.
# Milvus's LD_LIBRARY_PATH (its bundled libz, libstdc++, ...) is applied only at the exec, so that this
# Python does not load them.
NETNS_LAUNCHER = r"""
import ctypes, fcntl, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
    sys.stderr.write("cannot create a network namespace for Milvus: unshare(CLONE_NEWNET): %s\n"
                     % os.strerror(ctypes.get_errno()))
    sys.exit(126)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # `ip link set lo up` without iproute2
    ifreq = struct.pack("16sh22x", b"lo", 0)
    flags = struct.unpack("16sh22x", fcntl.ioctl(s, 0x8913, ifreq))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
os.environ["LD_LIBRARY_PATH"] = os.environ.pop("MILVUS_NETNS_LD_LIBRARY_PATH", "")
os.execv(sys.argv[1], sys.argv[1:])
"""




def _has_cap_sys_admin() -> bool:
    """Whether this process may create and enter network namespaces (root normally may)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    return False


@functools.cache
def can_isolate_network() -> bool:
    """Whether Milvus can be started in its own network namespace here: Linux, CAP_SYS_ADMIN, and the
    launcher actually works (a container may still forbid unshare). Probed once per process."""
    if not sys.platform.startswith("linux") or not _has_cap_sys_admin():
        return False
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-S", "-c", NETNS_LAUNCHER, sys.executable, "-I", "-S", "-c", "pass"],
            capture_output=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if probe.returncode != 0:
        log.debug("network namespace probe failed: %s", probe.stderr.decode(errors="replace").strip())
    return probe.returncode == 0


def env_flag(name: str) -> bool | None:
    """A yes/no environment variable: None when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: use 1 or 0")


def netns_id(path: str) -> str:
    return os.readlink(path)  # "net:[4026531840]"


class NetnsDialer:
    """Creates sockets inside another process's network namespace.

    setns() moves only the calling thread, so one dedicated thread moves into the target namespace and
    hands out sockets created there; a socket stays in the namespace it was created in, so callers connect
    and use it from any thread. `enter(pid)` follows a (re)started process, `leave()` returns to the
    namespace the thread started in, after which `socket()` raises ConnectionRefusedError.
    """

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._inside = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="milvus-netns-dialer", daemon=True)
        self._thread.start()

    def enter(self, pid: int) -> str:
        """Move the dialer into the network namespace of `pid`; returns that namespace's id."""
        return self._call("enter", pid)

    def leave(self) -> None:
        """Back to the original namespace: the old one can go away with its process."""
        self._call("leave")

    def socket(self) -> socket.socket:
        """A new unconnected TCP socket inside the namespace entered last."""
        return self._call("socket")

    def close(self) -> None:
        """Stop the thread; later calls raise ConnectionRefusedError."""
        if not self._closed:
            self._call("quit")
            self._closed = True
            self._thread.join(timeout=5)

    def _call(self, op: str, arg: object = None):
        if self._closed:
            raise ConnectionRefusedError("Milvus is not running")
        done: Future = Future()
        self._requests.put((op, arg, done))
        return done.result(timeout=30)

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")

    def _serve(self) -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                op, arg, done = self._requests.get()
                try:
                    result = None
                    if op == "enter":
                        fd = os.open(f"/proc/{arg}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                        try:
                            self._setns(fd)
                        finally:
                            os.close(fd)
                        self._inside = True
                        result = netns_id("/proc/thread-self/ns/net")
                    elif op in ("leave", "quit"):
                        if self._inside:
                            self._setns(home)
                            self._inside = False
                    elif op == "socket":
                        if not self._inside:
                            raise ConnectionRefusedError("Milvus is not running")
                        result = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    done.set_result(result)
                except BaseException as exc:  # handed to the caller
                    done.set_exception(exc)
                if op == "quit":
                    return
        finally:
            os.close(home)


class _Pipe:
    """One relayed connection: a client socket and its upstream socket, copied both ways."""

    def __init__(self, client: socket.socket, upstream: socket.socket, on_closed: Callable[["_Pipe"], None]):
        self.client = client
        self.upstream = upstream
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._open_directions = 2

    def run(self) -> None:
        threading.Thread(target=self._copy, args=(self.upstream, self.client), daemon=True,
                         name="milvus-relay-down").start()
        self._copy(self.client, self.upstream)

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_RELAY_CHUNK)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on; the other direction may go on
        except OSError:
            self.abort()
        finally:
            with self._lock:
                self._open_directions -= 1
                last = self._open_directions == 0
            if last:
                self.client.close()
                self.upstream.close()
                self._on_closed(self)

    def abort(self) -> None:
        """Reset both sides (the client sees a reset, like from a dead server) and wake both copiers."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)


class LoopbackRelay:
    """Listens on 127.0.0.1:`port` and pipes every accepted connection to a socket from `connect()`.

    `connect()` returns a connected socket or raises OSError; then the accepted connection is reset, so
    clients see what a dead server would give them while the listener itself stays put.
    """

    def __init__(self, port: int, connect: Callable[[], socket.socket], host: str = "127.0.0.1"):
        self._connect = connect
        try:
            self._listener = socket.create_server((host, port), backlog=128)  # SO_REUSEADDR on POSIX
        except OSError as exc:
            raise RuntimeError(
                f"port {port} is already in use: another Milvus is running? Stop it or pick another port"
            ) from exc
        self.address = self._listener.getsockname()[:2]
        self._pipes: set[_Pipe] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"milvus-relay-{port}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: do not spin
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="milvus-relay-up").start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._connect()
        except Exception as exc:  # down, or starting: the client sees a reset and retries
            log.debug("relay: upstream not reachable: %s", exc)
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # gRPC frames are small and chatty
        pipe = _Pipe(client, upstream, self._forget)
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self._pipes.add(pipe)
        pipe.run()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    @property
    def connections(self) -> int:
        """Relayed connections open now."""
        with self._lock:
            return len(self._pipes)

    def reset_connections(self) -> None:
        """Reset every relayed connection (the upstream server went away); keep listening."""
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.abort()

    def close(self) -> None:
        """Stop listening and reset every relayed connection."""
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        self._thread.join(timeout=5)
        self.reset_connections()
        deadline = time.monotonic() + 5
        while self.connections and time.monotonic() < deadline:
            time.sleep(0.01)


# --- the server --------------------------------------------------------------------------------------
