"""The loopback relay and the network-namespace dialer on plain echo servers (no Milvus: fast)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from devstack import milvus_server as ms
from devstack.processes import free_port
from devstack.netns import NETNS_LAUNCHER, LoopbackRelay, NetnsDialer

needs_netns = pytest.mark.skipif(not ms.can_isolate_network(), reason="needs root (CAP_SYS_ADMIN) for netns")

# An echo server on 127.0.0.1:<argv[1]>, one thread per connection, that passes a half-close on.
ECHO_SERVER = r"""
import socket, sys, threading
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def echo_port():
    """An echo server process on a free loopback port in this namespace."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while not ms.port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and proc.poll() is None, "echo server did not start"
            time.sleep(0.02)
        yield port
    finally:
        proc.kill()
        proc.wait()


def roundtrip(port: int, payload: bytes) -> bytes:
    """Send `payload`, half-close, and read everything back until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
        sender.start()
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
        sender.join()
    return b"".join(chunks)


def refused_or_reset(port: int) -> bool:
    """Whether a connection to port is refused, or accepted and then closed without a byte."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"hello")
            return sock.recv(10) == b""
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        return True


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (it may reset the connection right away)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_relay_copies_both_ways_and_passes_half_close_on(echo_port):
    relay = LoopbackRelay(free_port(), lambda: socket.create_connection(("127.0.0.1", echo_port), timeout=5))
    try:
        payload = os.urandom(8 * 1024 * 1024 + 17)
        results = [None] * 4
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, roundtrip(relay.address[1], payload)))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(r == payload for r in results)
        deadline = time.monotonic() + 5
        while relay.connections and time.monotonic() < deadline:  # closed once both directions ended
            time.sleep(0.01)
        assert relay.connections == 0
    finally:
        relay.close()


def test_relay_resets_while_upstream_is_down_and_follows_it_back(echo_port):
    upstream = {"port": free_port()}  # nothing listens there yet: "Milvus is down"
    relay = LoopbackRelay(free_port(), lambda: socket.create_connection(("127.0.0.1", upstream["port"]), timeout=5))
    try:
        port = relay.address[1]
        assert refused_or_reset(port)
        assert listening(port)  # still listening: clients retry the same address
        upstream["port"] = echo_port
        assert roundtrip(port, b"back again") == b"back again"
    finally:
        relay.close()


def test_relay_close_stops_listening_and_resets_open_connections(echo_port):
    relay = LoopbackRelay(free_port(), lambda: socket.create_connection(("127.0.0.1", echo_port), timeout=5))
    port = relay.address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        relay.close()
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
    assert relay.connections == 0
    assert not listening(port)


def test_relay_refuses_a_port_in_use():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        with pytest.raises(RuntimeError, match="already in use"):
            LoopbackRelay(busy.getsockname()[1], lambda: None)


def test_relay_listens_on_loopback_only():
    relay = LoopbackRelay(free_port(), lambda: None)
    try:
        assert relay.address == ("127.0.0.1", relay.address[1])
    finally:
        relay.close()


@pytest.mark.parametrize("value, expected", [("1", True), ("on", True), ("0", False), ("", None)])
def test_isolation_flag_comes_from_the_environment(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv(ms.ISOLATE_ENV, value)
    server = ms.MilvusServer(tmp_path, free_port())
    assert server._explicit_isolation is expected
    assert ms.MilvusServer(tmp_path, free_port(), isolate_network=False)._explicit_isolation is False


def test_isolation_is_on_by_default_where_possible_and_off_with_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv(ms.ISOLATE_ENV, raising=False)
    server = ms.MilvusServer(tmp_path, free_port())
    server._choose_isolation()
    assert server.isolate_network is ms.can_isolate_network()
    assert ("listens on all interfaces" in caplog.text) is not server.isolate_network

    caplog.clear()
    monkeypatch.setenv(ms.ISOLATE_ENV, "0")
    server = ms.MilvusServer(tmp_path, free_port())
    server._choose_isolation()
    assert server.isolate_network is False and "listens on all interfaces" in caplog.text


@pytest.mark.skipif(ms.can_isolate_network(), reason="isolation works here")
def test_asking_for_isolation_where_impossible_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="root"):
        ms.MilvusServer(tmp_path, free_port(), isolate_network=True).start()


def test_isolation_flag_rejects_nonsense(monkeypatch, tmp_path):
    monkeypatch.setenv(ms.ISOLATE_ENV, "maybe")
    with pytest.raises(ValueError, match=ms.ISOLATE_ENV):
        ms.MilvusServer(tmp_path, free_port())


def start_isolated_echo(port: int) -> subprocess.Popen:
    """An echo server in a new network namespace, through the same launcher Milvus uses."""
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", NETNS_LAUNCHER,
                             sys.executable, "-I", "-S", "-c", ECHO_SERVER, str(port)])
    host = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{proc.pid}/ns/net") != host:
                return proc
        assert time.monotonic() < deadline and proc.poll() is None, "launcher did not unshare"
        time.sleep(0.005)


def dial(dialer: NetnsDialer, port: int) -> socket.socket:
    """Connect through the dialer, retrying until the server inside has bound its port."""
    deadline = time.monotonic() + 10
    while True:
        sock = dialer.socket()
        try:
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            sock.settimeout(None)
            return sock
        except OSError:  # refused until the server listens; unreachable until the launcher brought lo up
            sock.close()
            assert time.monotonic() < deadline, "server in the namespace did not listen"
            time.sleep(0.02)


@needs_netns
def test_dialer_reaches_a_server_only_visible_inside_its_namespace_and_follows_a_restart():
    port = free_port()
    dialer = NetnsDialer()
    relay = LoopbackRelay(free_port(), lambda: dial(dialer, port))
    first = start_isolated_echo(port)
    try:
        netns = dialer.enter(first.pid)
        assert netns == os.readlink(f"/proc/{first.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        with dial(dialer, port) as sock:
            sock.sendall(b"inside")
            assert sock.recv(10) == b"inside"
        assert not ms.port_open("127.0.0.1", port)  # the server's port does not exist out here
        assert roundtrip(relay.address[1], b"via relay") == b"via relay"

        first.kill()
        first.wait()
        dialer.leave()
        with pytest.raises(ConnectionRefusedError):
            dialer.socket()
        assert refused_or_reset(relay.address[1])

        second = start_isolated_echo(port)  # a new process, a new namespace, the same relay
        try:
            # (not compared with the first id: a freed namespace's inode number gets reused)
            assert dialer.enter(second.pid) == os.readlink(f"/proc/{second.pid}/ns/net") != os.readlink("/proc/self/ns/net")
            assert roundtrip(relay.address[1], b"second") == b"second"
        finally:
            second.kill()
            second.wait()
    finally:
        first.kill()
        first.wait()
        relay.close()
        dialer.close()
