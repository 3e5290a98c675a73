"""The real Milvus in its own network namespace: nothing of it listens in the host namespace, the relay
on 127.0.0.1:<port> serves clients, and kill()/stop() then start() come back on the same data."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import numpy as np
import psutil
import pytest

from devstack import milvus_server as ms
from devstack.milvus_server import MilvusServer
from devstack.processes import ephemeral_ports
from devstack.netns import netns_id
from tests.conftest import killable_milvus

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ms.can_isolate_network(), reason="needs root (CAP_SYS_ADMIN) for a network namespace"),
]

DIM = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = killable_milvus(tmp_path_factory.mktemp("isolated-milvus"), isolate_network=True).start()
    yield srv
    srv.stop(grace=0)  # its data goes with the session's temporary directory


@pytest.fixture
def catalog(server):
    from catalog import Catalog

    cat = Catalog(server.uri, collection="iso_" + str(time.monotonic_ns()))
    yield cat
    try:
        cat.drop()
    finally:
        cat.close()


def host_sockets(pid: int) -> list:
    """Internet sockets of `pid` as seen from this (the host) network namespace."""
    return [c for c in psutil.net_connections(kind="inet") if c.pid == pid]


def listening_inside(pid: int) -> list[tuple[str, int]]:
    """(hex address, port) of the TCP listeners in the network namespace of `pid` (psutil only reads
    this process's namespace)."""
    out = []
    for table in ("tcp", "tcp6"):
        for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                out.append((address, int(port, 16)))
    return out


def internal_ports(server: MilvusServer) -> dict[str, int]:
    return json.loads((server.data_dir / "configs" / "ports.json").read_text())


def non_loopback_addresses() -> list[str]:
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except OSError:  # refused, or unreachable
        return True


def dropped_after_accept(port: int) -> bool:
    """Whether 127.0.0.1:port accepts a connection and then closes it without answering."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return sock.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):  # reset after the handshake (even while connect returns)
        return True
    except ConnectionRefusedError:  # nothing listens: not what a restartable address should do
        return False


def test_milvus_has_no_socket_in_the_host_namespace_and_the_relay_is_loopback_only(server):
    pid = server.proc.pid
    assert psutil.Process(pid).name() == "milvus"
    assert server.netns == netns_id(f"/proc/{pid}/ns/net") != netns_id("/proc/self/ns/net")
    # Inside its namespace Milvus listens on all interfaces, of which there is only loopback.
    inside = listening_inside(pid)
    ports = internal_ports(server)  # (index_coord_port is unused: 2.3 merged the index coordinator away)
    wanted = {ports["proxy_port"], ports["metrics_port"], ports["etcd_port"], ports["root_coord_port"],
              ports["query_node_port"]}
    low, _ = ephemeral_ports()  # outgoing connections inside the namespace take theirs from that range
    assert max(ports.values()) < low
    assert wanted <= {port for _, port in inside}
    assert {address.strip("0") for address, _ in inside} <= {"", "100007F"}  # any, or 127.0.0.1
    devices = {line.split(":")[0].strip() for line in open(f"/proc/{pid}/net/dev").read().splitlines()[2:]}
    assert devices == {"lo"}

    assert host_sockets(pid) == []
    listeners = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port]
    assert [(c.laddr.ip, c.pid) for c in listeners] == [("127.0.0.1", psutil.Process().pid)]

    ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert not [line for line in ss if f"pid={pid}," in line]
    relay_lines = [line for line in ss if f":{server.port} " in line]
    assert len(relay_lines) == 1 and f"127.0.0.1:{server.port} " in relay_lines[0]


def test_internal_ports_cannot_be_reached_from_the_host_namespace(server):
    ports = internal_ports(server)
    assert set(ports) >= {"etcd_port", "root_coord_port", "query_node_port", "metrics_port"}
    assert [k for k, p in ports.items() if not refused("127.0.0.1", p)] == []
    for address in non_loopback_addresses():
        assert [p for p in [server.port, *ports.values()] if not refused(address, p)] == []
    # ...while the same metrics port answers inside the namespace (the health check goes there).
    with server._dial(ports["metrics_port"], timeout=2):
        pass


def test_catalog_works_through_the_relay(server, catalog):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, DIM)).astype(np.float32)
    names = [f"img_{i:03d}.jpg" for i in range(50)]
    catalog.create(DIM, "fp-test")
    assert catalog.upsert(names, vectors, [{"i": i} for i in range(50)]) == 50
    assert catalog.count() == 50
    hits = catalog.search(vectors[7], top_k=3, consistency_level="Strong")[0]
    assert hits[0]["name"] == "img_007.jpg" and hits[0]["meta"] == {"i": 7}


def test_kill_then_start_then_stop_then_start_keep_the_data(server):
    """Runs last: it restarts the module's server (a restart after SIGKILL waits out etcd sessions)."""
    from catalog import Catalog
    from catalog.errors import CatalogError

    cat = Catalog(server.uri, collection="restarts", timeout=60)  # reload after SIGKILL: ~15 s
    try:
        cat.create(DIM, "fp-test")
        cat.upsert([f"n{i}" for i in range(20)], np.eye(20, DIM, dtype=np.float32))
        cat.flush()
        assert cat.count() == 20
        relay, host_ns = server._relay, netns_id("/proc/self/ns/net")

        server.kill()
        assert not server.running and server.netns is None
        # Like a dead server: the address still accepts, then drops the connection; no data, no hang.
        assert dropped_after_accept(server.port)
        with pytest.raises(CatalogError):
            cat.count()

        server.start(timeout=120)  # waits out the dead process's etcd sessions (~2 TTLs)
        assert server._relay is relay  # the same listener: clients reconnect to the same address
        assert server.netns not in (None, host_ns)  # (a new namespace may reuse the old one's inode number)
        assert host_sockets(server.proc.pid) == []
        assert cat.count() == 20

        server.stop(grace=10)
        assert server._relay is None and refused("127.0.0.1", server.port)
        server.start(timeout=120)
        assert host_sockets(server.proc.pid) == []
        cat.reset()
        assert cat.count() == 20
        cat.drop()
    finally:
        cat.close()
