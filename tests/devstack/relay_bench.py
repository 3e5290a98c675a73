"""Throughput of Milvus inserts with and without network isolation (the 127.0.0.1 relay in the path).

`.venv/bin/python -m tests.devstack.relay_bench [--rows 10000] [--dim 512] [--batch 500] [--repeat 3]`
prints rows/s and MB/s of vector payload for each mode, plus the raw relay throughput on a byte sink.
Not a test: numbers depend on the machine; run it when changing the relay.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time

import numpy as np

from devstack import milvus_server as ms
from devstack.milvus_server import MilvusServer
from devstack.processes import free_port
from devstack.netns import LoopbackRelay


def insert_loop(uri: str, rows: int, dim: int, batch: int) -> float:
    """Seconds to insert `rows` random vectors in batches through MilvusClient into a fresh collection."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    name = f"bench_{time.monotonic_ns()}"
    client.create_collection(name, dimension=dim, auto_id=True)
    vectors = np.random.default_rng(0).random((rows, dim), dtype=np.float32)
    data = [{"vector": v} for v in vectors.tolist()]
    start = time.perf_counter()
    for i in range(0, rows, batch):
        client.insert(name, data[i:i + batch])
    elapsed = time.perf_counter() - start
    client.drop_collection(name)
    client.close()
    return elapsed


def small_rpc_ms(uri: str, calls: int = 300) -> float:
    """Median milliseconds of a tiny RPC (has_collection): the relay's added latency per round trip."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        client.has_collection("nothing_here")
        times.append(time.perf_counter() - start)
    client.close()
    return statistics.median(times) * 1000


def raw_relay(megabytes: int) -> tuple[float, float]:
    """MB/s pushed into a byte sink directly and through a LoopbackRelay."""
    sink = socket.create_server(("127.0.0.1", 0))

    def drain():
        while True:
            try:
                conn, _ = sink.accept()
            except OSError:  # closed at the end
                return
            with conn:
                while conn.recv(1 << 20):
                    pass
                conn.sendall(b"k")

    threading.Thread(target=drain, daemon=True).start()
    port = sink.getsockname()[1]
    relay = LoopbackRelay(free_port(), lambda: socket.create_connection(("127.0.0.1", port)))
    block = b"x" * (1 << 20)
    rates = []
    for target in (port, relay.address[1]):
        with socket.create_connection(("127.0.0.1", target)) as sock:
            start = time.perf_counter()
            for _ in range(megabytes):
                sock.sendall(block)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)
            rates.append(megabytes / (time.perf_counter() - start))
    relay.close()
    sink.close()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    direct, relayed = raw_relay(512)
    print(f"raw bytes, 512 MB: direct {direct:.0f} MB/s, through the relay {relayed:.0f} MB/s")
    payload_mb = args.rows * args.dim * 4 / 1e6
    modes = [False, True] if ms.can_isolate_network() else [False]
    for isolate in modes:
        with tempfile.TemporaryDirectory() as data:
            server = MilvusServer(data, free_port(), isolate_network=isolate).start()
            try:
                insert_loop(server.uri, args.batch * 2, args.dim, args.batch)  # warm up
                times = [insert_loop(server.uri, args.rows, args.dim, args.batch) for _ in range(args.repeat)]
                rpc = small_rpc_ms(server.uri)
            finally:
                server.stop(grace=10)
        best, median = min(times), statistics.median(times)
        print(f"{'isolated (relay)' if isolate else 'direct          '}: {args.rows} x {args.dim} in batches of "
              f"{args.batch}: median {median:.2f}s ({args.rows / median:,.0f} rows/s, {payload_mb / median:.1f} MB/s), "
              f"best {best:.2f}s ({payload_mb / best:.1f} MB/s); has_collection median {rpc:.2f} ms")


if __name__ == "__main__":
    main()
