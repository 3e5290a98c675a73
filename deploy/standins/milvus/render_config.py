"""Render milvus.yaml for the offline Milvus stand-in (see Dockerfile): `python render_config.py HOME`.

Starts from the `milvus` PyPI package's template (as devstack/milvus_server.py does) and switches it from
embedded etcd + local storage to the upstream image's setup: external etcd, S3-compatible object storage,
data under /var/lib/milvus, logs to stdout. Env vars (ETCD_ENDPOINTS, MINIO_ADDRESS, ...) override these.
"""

import shutil
import sys
from pathlib import Path

from milvus import MilvusServerConfig, _initialize_data_files

DATA = Path("/var/lib/milvus")

home = Path(sys.argv[1])
config = MilvusServerConfig()
config.configs["data_dir"] = str(home)  # configs/milvus.yaml is written under home
config.resolve_storage()
config.set("local_storage_dir", str(DATA / "data"))  # segment cache when storage is remote
config.set("rocksmq_data_dir", str(DATA / "rdb_data"))  # the message queue stays local, as upstream
config.set("system_log_path", "")  # "" = log to stdout, where `docker logs` reads it
config.extra_configs.update({
    "etcd.endpoints": "etcd:2379",
    "etcd.use.embed": "false",
    "minio.address": "minio",
    "minio.port": "9000",
    "minio.bucketName": "a-bucket",  # the upstream default; compose sets MINIO_BUCKET_NAME
    "common.storageType": "remote",
    # `docker stop` waits 10 s; a standalone has no other node to hand its segments to.
    "common.gracefulStopTimeout": "10",
})
config.write_config()
_initialize_data_files(str(home))  # unpacks bin/ (milvus and its .so files) under home
for leftover in ("logs", "data"):
    shutil.rmtree(home / leftover, ignore_errors=True)
text = (home / "configs" / "milvus.yaml").read_text()
for expected in ("embed: false", "storageType: remote", "endpoints: etcd:2379"):
    assert expected in text, f"milvus.yaml template changed: {expected!r} not rendered"
print(f"rendered {home}/configs/milvus.yaml")
