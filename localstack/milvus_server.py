"""Run the real Milvus standalone server shipped in the `milvus` PyPI package, on loopback.

The package carries the Milvus 2.3 standalone binary (embedded etcd, local storage, rocksmq). Its own
launcher fixes the embedded etcd peer port and kills the server one second after SIGTERM; this one gives
every port a free value (so tests, benchmarks and `make run` can run side by side), binds etcd to
127.0.0.1, waits for /healthz, and stops gracefully (SIGTERM, then SIGKILL after a grace period).

Milvus 2.3 cannot be told a listen address for its gRPC ports (upstream milvus-io/milvus#26538): they
listen on all interfaces. Run it behind a host firewall, or in Docker (docker-compose.yml publishes no
Milvus port), where that matters.
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
import urllib.request
from pathlib import Path

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


class MilvusServer:
    """One Milvus standalone process with its data under `data_dir`."""

    def __init__(self, data_dir: str | Path, port: int = 19530, extra_config: dict[str, object] | None = None):
        """`extra_config` overrides milvus.yaml settings by dotted key ("dataCoord.segment.maxSize": 1024);
        only keys already present in the package's template can be set."""
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.metrics_port = 0
        self.extra_config = extra_config or {}
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> dict[str, str]:
        from milvus import MilvusServerConfig, _initialize_data_files

        if port_open("127.0.0.1", self.port):
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
            if not port or port in ports.values() or not bindable(port):
                port = free_port()
            ports[key] = port
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports, indent=1))
        return ports

    def start(self, timeout: float = 120.0) -> "MilvusServer":
        """Start the server and wait until it answers /healthz and accepts gRPC."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._write_config()}
        bin_dir = self.data_dir / "bin"
        env["LD_LIBRARY_PATH"] = f"{bin_dir}:{env.get('LD_LIBRARY_PATH', '')}"
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self._log = open(self.data_dir / "logs" / "milvus-stdout.log", "ab")
        self.proc = subprocess.Popen(
            [str(bin_dir / "milvus"), "run", "standalone"],
            cwd=self.data_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        self._wait_healthy(timeout)
        log.info("Milvus %s up on %s (pid %d, data %s)", _version(), self.uri, self.proc.pid, self.data_dir)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Milvus exited with code {self.proc.returncode}; see {self.data_dir}/logs/milvus-stdout.log"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if b"OK" in resp.read() and port_open("127.0.0.1", self.port):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.kill()
        raise TimeoutError(f"Milvus did not become healthy in {timeout:.0f}s; see {self.data_dir}/logs")

    def stop(self, grace: float = 25.0) -> None:
        """SIGTERM, wait up to `grace` seconds for a clean shutdown, then SIGKILL."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("Milvus did not stop in %.0fs; killing it", grace)
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server (crash tests use this on purpose)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close_log()

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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = MilvusServer(args.data, args.port).start()
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
