"""Run the real Milvus standalone server shipped in the `milvus` PyPI package, on loopback.

The package carries the Milvus 2.3 standalone binary (embedded etcd, local storage, rocksmq). Its own
launcher fixes the embedded etcd peer port and kills the server one second after SIGTERM; this one gives
every port a free value (so tests, benchmarks and `make run` can run side by side), binds etcd to
127.0.0.1, waits for /healthz, and stops gracefully (SIGTERM, then SIGKILL after a grace period).

Milvus 2.3 cannot be told a listen address for its gRPC ports (upstream milvus-io/milvus#26538): they
listen on all interfaces. With network isolation (on by default as root, `MILVUS_ISOLATE_NETWORK`), the
server runs in its own Linux network namespace that has nothing but a loopback interface, so none of its
ports can be reached from outside; a small relay in this process listens on 127.0.0.1:<port> in the host
namespace and pipes each connection to the proxy's gRPC port inside the namespace. Without isolation
(not root, or turned off) the ports listen on all interfaces and a warning says so.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import logging
import os
import queue
import signal
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

# Config template keys for the component ports, filled with free ports (except the proxy's).
_PORT_KEYS = (
    "etcd_port",
    "root_coord_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)


SESSION_TTL_S = 15
GRACEFUL_STOP_S = 5

ISOLATE_ENV = "MILVUS_ISOLATE_NETWORK"
CLONE_NEWNET = 0x40000000
_CAP_SYS_ADMIN = 21
_RELAY_CHUNK = 256 * 1024  # bytes per recv: bulk inserts move tens of MB/s, so few large copies
_LD_PATH_ENV = "MILVUS_NETNS_LD_LIBRARY_PATH"

# Started as `python -I -S -c _NETNS_LAUNCHER milvus run standalone`: moves itself into a new network
# namespace, brings its loopback interface up, then execs Milvus (same pid). A separate launcher rather
# than Popen(preexec_fn=...) because preexec_fn is unsafe once this process runs relay threads.
# Milvus's LD_LIBRARY_PATH (its bundled libz, libstdc++, ...) is applied only at the exec, so that this
# Python does not load them.
_NETNS_LAUNCHER = r"""
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as Milvus's Go listeners use)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# --- network isolation -------------------------------------------------------------------------------


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
            [sys.executable, "-I", "-S", "-c", _NETNS_LAUNCHER, sys.executable, "-I", "-S", "-c", "pass"],
            capture_output=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if probe.returncode != 0:
        log.debug("network namespace probe failed: %s", probe.stderr.decode(errors="replace").strip())
    return probe.returncode == 0


def _env_flag(name: str) -> bool | None:
    """A yes/no environment variable: None when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: use 1 or 0")


def _netns_id(path: str) -> str:
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
                        result = _netns_id("/proc/thread-self/ns/net")
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


class MilvusServer:
    """One Milvus standalone process with its data under `data_dir`, reachable on 127.0.0.1:`port`."""

    def __init__(self, data_dir: str | Path, port: int = 19530, extra_config: dict[str, object] | None = None,
                 isolate_network: bool | None = None):
        """`extra_config` overrides milvus.yaml settings by dotted key ("dataCoord.segment.maxSize": 1024);
        only keys already present in the package's template can be set.

        `isolate_network`: run Milvus in its own network namespace behind a 127.0.0.1 relay (needs root;
        True fails where that is impossible). None reads MILVUS_ISOLATE_NETWORK (1/0); unset means: on
        where possible (root on Linux), otherwise off with a warning that Milvus listens on all interfaces.
        """
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.metrics_port = 0
        self.extra_config = extra_config or {}
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._explicit_isolation = isolate_network if isolate_network is not None else _env_flag(ISOLATE_ENV)
        self.isolate_network = bool(self._explicit_isolation)
        self._relay: LoopbackRelay | None = None
        self._dialer: NetnsDialer | None = None
        self.netns: str | None = None  # id of Milvus's network namespace while isolated and running

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> dict[str, str]:
        from milvus import MilvusServerConfig, _initialize_data_files

        # Isolated, the relay's listener is the port check (and it stays bound across kill()/start()).
        if not self.isolate_network and port_open("127.0.0.1", self.port):
            raise RuntimeError(
                f"port {self.port} is already in use: another Milvus is running? Stop it or pick another port"
            )
        config = MilvusServerConfig()
        config.configs["data_dir"] = str(self.data_dir)
        config.resolve_storage()  # data, log and etcd paths under data_dir
        ports = self._component_ports()
        # Set ports directly and render with write_config(): the package's own resolve() probes ports
        # without SO_REUSEADDR and silently moves to the next one while an old socket is in TIME_WAIT,
        # which would put the server on another port than the one we were asked for.
        values = {"proxy_port": self.port, **{k: ports[k] for k in _PORT_KEYS}}
        for key, value in values.items():
            config.configurable_items[key][1] = value
        for key, value in self.extra_config.items():
            # Dotted milvus.yaml keys present in the template, e.g. "dataCoord.segment.maxSize".
            config.extra_configs[key] = value
        config.write_config()  # renders configs/milvus.yaml under data_dir
        _initialize_data_files(str(self.data_dir))  # unpacks the binary once (md5-checked)

        etcd_port = config.get("etcd_port")
        peer = ports["etcd_peer_port"]
        etcd_yaml = self.data_dir / "configs" / "etcd.yaml"
        etcd_yaml.write_text(
            f"listen-client-urls: http://127.0.0.1:{etcd_port}\n"
            f"advertise-client-urls: http://127.0.0.1:{etcd_port}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
        )
        milvus_yaml = self.data_dir / "configs" / "milvus.yaml"
        text = milvus_yaml.read_text()
        text = text.replace("  use:\n    embed: true", f"  config:\n    path: {etcd_yaml}\n  use:\n    embed: true", 1)
        # Advertise loopback to the other components instead of "the first unicastable address".
        text = text.replace("  ip: # if not specify address", "  ip: 127.0.0.1 # if not specify address")
        # After a crash, a restart waits for the dead process's etcd sessions to expire; the stock 30 s
        # TTL makes that about a minute. 15 s halves it and still tolerates a busy 2-core machine.
        text = text.replace("    ttl: 30 # ttl value when session", f"    ttl: {SESSION_TTL_S} # ttl value when session")
        # A stock standalone waits up to 30 minutes for its query node to hand segments over on SIGTERM;
        # there is no other node to hand them to, so force the exit after a few seconds.
        text = text.replace("  gracefulStopTimeout: 1800 #", f"  gracefulStopTimeout: {GRACEFUL_STOP_S} #")
        milvus_yaml.write_text(text)
        self.metrics_port = ports["metrics_port"]
        return {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),
            "MILVUS_RUN_DIR": str(self.data_dir / "run"),
        }

    def _component_ports(self) -> dict[str, int]:
        """Internal ports, kept in data_dir across restarts.

        Components find each other through sessions stored in etcd; after an unclean stop those sessions
        outlive the process, and a restart on new ports waits for them to expire (about a minute).
        Reusing the same ports lets a restarted server come back in seconds.
        """
        path = self.data_dir / "configs" / "ports.json"
        keys = (*_PORT_KEYS, "etcd_peer_port", "metrics_port")
        try:
            saved = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError):
            saved = {}
        ports: dict[str, int] = {}
        for key in keys:
            port = saved.get(key)
            # Isolated, each start gets a fresh namespace where every saved port is free.
            if not port or port in ports.values() or (not self.isolate_network and not bindable(port)):
                port = free_port()
            ports[key] = port
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports, indent=1))
        return ports

    def start(self, timeout: float = 120.0) -> "MilvusServer":
        """Start the server and wait until it answers /healthz and accepts gRPC."""
        if self.running:
            raise RuntimeError(f"Milvus is already running (pid {self.proc.pid})")
        self._choose_isolation()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._write_config()}
        bin_dir = self.data_dir / "bin"
        ld_path = f"{bin_dir}:{env.get('LD_LIBRARY_PATH', '')}"
        command = [str(bin_dir / "milvus"), "run", "standalone"]
        if self.isolate_network:
            if self._relay is None:  # kept across kill()/start(), so clients reconnect to the same address
                self._relay = LoopbackRelay(self.port, self._dial_proxy)
            if self._dialer is None:
                self._dialer = NetnsDialer()
            command = [sys.executable, "-I", "-S", "-c", _NETNS_LAUNCHER, *command]
            env[_LD_PATH_ENV] = ld_path
        else:
            env["LD_LIBRARY_PATH"] = ld_path
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self._log = open(self.data_dir / "logs" / "milvus-stdout.log", "ab")
        self.proc = subprocess.Popen(
            command,
            cwd=self.data_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        try:
            if self.isolate_network:
                self._enter_netns(deadline=time.monotonic() + timeout)
            self._wait_healthy(timeout)
        except BaseException:
            self.stop(grace=0)
            raise
        log.info("Milvus %s up on %s (pid %d, data %s%s)", _version(), self.uri, self.proc.pid, self.data_dir,
                 ", own network namespace" if self.isolate_network else "")
        return self

    def _choose_isolation(self) -> None:
        """Isolate when asked to, or by default where this process may (root on Linux)."""
        if self._explicit_isolation is None:
            self.isolate_network = can_isolate_network()
        elif self._explicit_isolation and not can_isolate_network():
            raise RuntimeError(
                f"isolate_network ({ISOLATE_ENV}=1) needs Linux and root (CAP_SYS_ADMIN) to create a network "
                f"namespace; set {ISOLATE_ENV}=0 to run Milvus with its ports on all interfaces"
            )
        else:
            self.isolate_network = self._explicit_isolation
        if not self.isolate_network:
            log.warning("Milvus 2.3 listens on all interfaces (its ports cannot be bound to 127.0.0.1): "
                        "firewall them on a shared network, or run as root to give Milvus its own network "
                        "namespace behind a 127.0.0.1 relay (%s)",
                        f"{ISOLATE_ENV}=0" if self._explicit_isolation is False
                        else "not root, or network namespaces are not permitted here")

    def _enter_netns(self, deadline: float) -> None:
        """Point the dialer at Milvus's namespace once the launcher has created it."""
        host_ns = _netns_id("/proc/self/ns/net")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Milvus exited with code {self.proc.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError):  # the launcher has not unshared yet, or just exited
                if _netns_id(f"/proc/{self.proc.pid}/ns/net") != host_ns:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("Milvus's launcher did not create a network namespace")
            time.sleep(0.005)
        self.netns = self._dialer.enter(self.proc.pid)
        if self.netns == host_ns:  # cannot happen unless the pid was reused: never relay to the host
            raise RuntimeError("Milvus is not in its own network namespace")

    def _dial(self, port: int, timeout: float) -> socket.socket:
        """A TCP connection to 127.0.0.1:port as Milvus sees it (inside its namespace when isolated)."""
        if not self.isolate_network:
            return socket.create_connection(("127.0.0.1", port), timeout=timeout)
        dialer = self._dialer  # stop() may clear it from another thread
        if dialer is None:
            raise ConnectionRefusedError("Milvus is not running")
        sock = dialer.socket()
        try:
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _dial_proxy(self) -> socket.socket:
        sock = self._dial(self.port, timeout=5)
        sock.settimeout(None)  # the relay blocks in recv/sendall
        return sock

    def _healthy(self) -> bool:
        """/healthz on the metrics port answers OK and the proxy accepts connections."""
        try:
            with self._dial(self.metrics_port, timeout=2) as sock:
                sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                response = b""
                while len(response) < 65536 and (chunk := sock.recv(4096)):
                    response += chunk
            head, _, body = response.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.") or head.split(b" ", 2)[1:2] != [b"200"] or b"OK" not in body:
                return False
            with self._dial(self.port, timeout=2):
                return True
        except (OSError, IndexError):
            return False

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Milvus exited with code {self.proc.returncode}; see {self.data_dir}/logs/milvus-stdout.log"
                )
            if self._healthy():
                return
            time.sleep(0.3)
        self.kill()
        raise TimeoutError(f"Milvus did not become healthy in {timeout:.0f}s; see {self.data_dir}/logs")

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / "logs" / "milvus-stdout.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def stop(self, grace: float = 25.0) -> None:
        """SIGTERM, wait up to `grace` seconds for a clean shutdown, then SIGKILL; closes the relay."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                if grace:
                    log.warning("Milvus did not stop in %.0fs; killing it", grace)
                self.kill()
        self._upstream_gone()
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._dialer is not None:
            self._dialer.close()
            self._dialer = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server (crash tests use this on purpose). The relay keeps listening and resets
        connections until start() runs Milvus again."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._upstream_gone()
        self._close_log()

    def _upstream_gone(self) -> None:
        """Milvus is dead: let its namespace go and reset what was relayed to it."""
        self.netns = None
        if self._dialer is not None:
            self._dialer.leave()
        if self._relay is not None:
            self._relay.reset_connections()

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "MilvusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _version() -> str:
    try:
        from milvus import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "?"


def main(argv: list[str] | None = None) -> int:
    """`python -m localstack.milvus_server --data DIR --port N`: run Milvus in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/milvus", help="data directory (default: data/milvus)")
    parser.add_argument("--port", type=int, default=19530)
    parser.add_argument("--isolate-network", action=argparse.BooleanOptionalAction, default=None,
                        help=f"own network namespace behind a 127.0.0.1 relay (default: ${ISOLATE_ENV}, else on as root)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = MilvusServer(args.data, args.port, isolate_network=args.isolate_network).start()
    print(f"Milvus on {server.uri}; Ctrl-C stops it", flush=True)
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
