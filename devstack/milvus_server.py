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
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devstack.milvus_settings import apply_product_settings
from devstack.processes import bindable, ephemeral_ports, listen_port, port_open
from devstack.netns import (
    ISOLATE_ENV,
    LD_PATH_ENV,
    NETNS_LAUNCHER,
    LoopbackRelay,
    NetnsDialer,
    can_isolate_network,
    env_flag,
    netns_id,
)

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

class MilvusServer:
    """One Milvus standalone process with its data under `data_dir`, reachable on 127.0.0.1:`port`."""

    def __init__(self, data_dir: str | Path, port: int = 19530, extra_config: dict[str, object] | None = None,
                 isolate_network: bool | None = None):
        """`extra_config` overrides milvus.yaml settings by dotted key ("dataCoord.segment.maxSize": 1024),
        after the product's settings (deploy/milvus/user.yaml); any key, in the template or not.

        `isolate_network`: run Milvus in its own network namespace behind a 127.0.0.1 relay (needs root;
        True fails where that is impossible). None reads MILVUS_ISOLATE_NETWORK (1/0); unset means: on
        where possible (root on Linux), otherwise off with a warning that Milvus listens on all interfaces.
        """
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.proxy_port = port  # where the proxy listens: the same port, or its own inside the namespace
        self.metrics_port = 0
        self.extra_config = extra_config or {}
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._explicit_isolation = isolate_network if isolate_network is not None else env_flag(ISOLATE_ENV)
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
        # Isolated, the proxy listens on its own port inside the namespace (below the ephemeral range there);
        # the relay on 127.0.0.1:self.port forwards to it.
        self.proxy_port = ports.get("proxy_port", self.port)
        values = {"proxy_port": self.proxy_port, **{k: ports[k] for k in _PORT_KEYS}}
        for key, value in values.items():
            config.configurable_items[key][1] = value
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
        milvus_yaml.write_text(apply_product_settings(text, self.extra_config, self.data_dir))
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
        keys = (*_PORT_KEYS, "etcd_peer_port", "metrics_port", *(("proxy_port",) if self.isolate_network else ()))
        try:
            saved = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError):
            saved = {}
        ports: dict[str, int] = {}
        low, _ = ephemeral_ports()
        taken = {self.port}
        for key in keys:
            port = saved.get(key)
            # Isolated, each start gets a fresh namespace where every saved port is free. A port in the
            # ephemeral range (saved by an older version) can be taken by an outgoing connection: replaced.
            if (not port or port in taken or port >= low
                    or (not self.isolate_network and not bindable(port))):
                port = listen_port(taken, check_free=not self.isolate_network)
            ports[key] = port
            taken.add(port)
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
            command = [sys.executable, "-I", "-S", "-c", NETNS_LAUNCHER, *command]
            env[LD_PATH_ENV] = ld_path
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
        host_ns = netns_id("/proc/self/ns/net")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Milvus exited with code {self.proc.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError):  # the launcher has not unshared yet, or just exited
                if netns_id(f"/proc/{self.proc.pid}/ns/net") != host_ns:
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
        sock = self._dial(self.proxy_port, timeout=5)
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
            with self._dial(self.proxy_port, timeout=2):
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
    """`python -m devstack.milvus_server --data DIR --port N`: run Milvus in the foreground."""
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
