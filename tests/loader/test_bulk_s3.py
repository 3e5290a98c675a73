"""Bulk mode on object storage: files uploaded into Milvus's bucket, then imported by the server.

Milvus 2.3.5 runs with `common.storageType: minio`, so its own segments and the import files live in an
S3 bucket. MinIO itself cannot be installed from this machine's registries, so moto's S3 server stands in
for it (the same S3 API; the loader and Milvus talk to it over real HTTP).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalog import Catalog
from devstack.milvus_server import MilvusServer
from devstack.processes import free_port, port_open
from tests.loader.conftest import assert_exact, run_loader, start_loader, wait_rows, write_classic

pytestmark = pytest.mark.integration

BUCKET, KEY, SECRET = "milvus-bucket", "loader-test", "loader-test-secret"


@pytest.fixture(scope="module")
def s3_milvus(tmp_path_factory):
    """(Milvus server, S3 endpoint): Milvus storing everything in BUCKET on a local S3 server."""
    tmp = tmp_path_factory.mktemp("s3-milvus")
    port = free_port()
    log = open(tmp / "s3.log", "w")
    s3 = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                          stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert s3.poll() is None and time.monotonic() < deadline, (tmp / "s3.log").read_text()
            time.sleep(0.1)
        from minio import Minio

        Minio(f"127.0.0.1:{port}", access_key=KEY, secret_key=SECRET, secure=False).make_bucket(BUCKET)
        # Milvus must reach the S3 server on the host's loopback, so not in its own network namespace.
        server = MilvusServer(tmp / "milvus", port=free_port(), isolate_network=False, extra_config={
            "common.storageType": "minio", "minio.address": "127.0.0.1", "minio.port": port,
            "minio.accessKeyID": KEY, "minio.secretAccessKey": SECRET, "minio.bucketName": BUCKET,
        }).start()
        yield server, f"127.0.0.1:{port}"
    finally:
        if server is not None:
            server.stop()
        s3.terminate()
        s3.wait(timeout=10)
        log.close()


@pytest.fixture
def s3_catalog(s3_milvus, collection_name):
    cat = Catalog(s3_milvus[0].uri, collection=collection_name, timeout=30)
    yield cat
    cat.drop()
    cat.close()


def _objects(endpoint: str, prefix: str) -> list[str]:
    from minio import Minio

    client = Minio(endpoint, access_key=KEY, secret_key=SECRET, secure=False)
    return [o.object_name for o in client.list_objects(BUCKET, prefix=prefix, recursive=True)]


def _s3_args(endpoint: str, prefix: str) -> list[str]:
    return ["--mode", "bulk", "--s3-endpoint", endpoint, "--s3-bucket", BUCKET, "--s3-prefix", prefix]


S3_ENV = {"S3_ACCESS_KEY": KEY, "S3_SECRET_KEY": SECRET}


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_bulk_import_through_the_bucket(s3_milvus, s3_catalog, tmp_path, state_dir, fmt):
    server, endpoint = s3_milvus
    _, names = write_classic(tmp_path / "a.h5", 2500, dim=8)
    prefix = f"bulk-{fmt}"
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", server.uri, "--collection", s3_catalog.collection,
            *_s3_args(endpoint, prefix), "--bulk-rows", "1000", "--bulk-format", fmt, "--batch-size", "500",
            "--index", "FLAT", "-q"]
    res = run_loader(*args, env=S3_ENV)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("read 2,500, imported 2,500, skipped 0, ")
    assert_exact(s3_catalog, names)
    assert _objects(endpoint, prefix) == []  # uploaded files are deleted once imported
    # ...and so is the local staging folder, in memory or in the state dir (loader.bulk_files.staging_root)
    roots = [state_dir / "bulk", Path(f"/dev/shm/image-search-loader-{os.getuid()}")]
    assert not [p for root in roots if root.exists() for p in root.glob(f"{s3_catalog.collection}-*")]


def test_sigkill_loader_mid_upload_then_rerun(s3_milvus, s3_catalog, tmp_path, state_dir):
    server, endpoint = s3_milvus
    rows = 12_000
    _, names = write_classic(tmp_path / "a.h5", rows, dim=32)
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", server.uri, "--collection", s3_catalog.collection,
            *_s3_args(endpoint, "bulk-kill"), "--bulk-rows", "3000", "--batch-size", "400", "--index", "FLAT",
            "-q"]
    proc = start_loader(args, {"LOADER_STATE_DIR": str(state_dir), **S3_ENV})
    wait_rows(state_dir, proc, rows // 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    res = run_loader(*args, env=S3_ENV)
    assert res.returncode == 0, res.stderr
    assert_exact(s3_catalog, names)
    assert _objects(endpoint, "bulk-kill") == []


def test_object_storage_errors_are_one_line(s3_milvus, s3_catalog, tmp_path, state_dir):
    server, endpoint = s3_milvus
    write_classic(tmp_path / "a.h5", 10, dim=4)
    base = ["import", str(tmp_path / "a.h5"), "--milvus-uri", server.uri, "--collection", s3_catalog.collection,
            "--mode", "bulk", "-q"]
    res = run_loader(*base, "--s3-endpoint", endpoint, "--s3-bucket", "no-such-bucket", env=S3_ENV)
    assert res.returncode == 1
    assert res.stderr == (f"Error: bucket 'no-such-bucket' not found at {endpoint}: give Milvus's own bucket "
                          "(its minio.bucketName, default a-bucket) with --s3-bucket\n")
    res = run_loader(*base, "--s3-endpoint", f"127.0.0.1:{free_port()}", "--s3-bucket", BUCKET, env=S3_ENV)
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("Error: cannot use object storage at 127.0.0.1:") and "--s3-endpoint" in res.stderr
