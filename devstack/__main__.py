"""`make run`: Milvus, extractor and search service on 127.0.0.1, a sample catalogue, Ctrl-C stops all.

Environment: MILVUS_PORT (19530), EXTRACTOR_PORT (8001), SEARCH_PORT (5000), DATA_DIR (./data),
IMAGES (a folder of your own pictures to index instead of the samples), plus the services' own variables
(COLLECTION, EXTRACTOR_MODEL, EXTRACTOR_WEIGHTS, ...), passed through. With neither set, the extractor
serves VGG16 when its ImageNet weights are cached, else EfficientNet-Lite0 (ImageNet weights, offline).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devstack.milvus_server import MilvusServer
from devstack.processes import ServiceProcess, port_open
from devstack import sample_images

log = logging.getLogger("devstack")
STOP_GRACE_S = 8  # per service; the whole stack stops well within 30 s


def catalogue_size(milvus_uri: str, collection: str) -> int:
    """Rows in the collection, 0 when it does not exist."""
    from catalog import Catalog

    # Generous timeout: the first Strong-consistency query after a restart waits for Milvus to replay its
    # log (10-15 s on 2 cores), longer than a request-serving timeout should be.
    cat = Catalog(milvus_uri, collection=collection, timeout=120)
    try:
        return cat.count() if cat.exists() else 0
    finally:
        cat.close()


def check_same_model(milvus_uri: str, collection: str, extractor_url: str) -> None:
    """Stop with what to do when the collection was built by another model than the extractor serves.

    Happens after an upgrade that changed the default backbone, or with another EXTRACTOR_MODEL: every
    search would answer 409, so say it once, clearly, at start-up. Nothing is deleted.
    """
    from catalog import Catalog

    info = requests.get(f"{extractor_url}/v1/info", timeout=10).json()
    cat = Catalog(milvus_uri, collection=collection, timeout=120)
    try:
        have, dim = cat.fingerprint(), cat.dim()
    finally:
        cat.close()
    if have and have != info["fingerprint"]:
        model = have.rsplit("-", 1)[0]
        hed = model == "vgg16" and info["model"] != "vgg16"  # the old offline default
        keep = f"EXTRACTOR_MODEL={model}" + (" EXTRACTOR_WEIGHTS=hed-vgg16" if hed else "")
        raise SystemExit(
            f"collection {collection!r} holds {dim}-d vectors of {have}, but the extractor now serves "
            f"{info['model']} ({info['weights']} weights, {info['fingerprint']}; {info.get('why', '')}).\n"
            f"  Keep serving that catalogue: {keep} make run\n"
            f"  Or index the samples anew for {info['model']} in a collection of its own: "
            f"COLLECTION={collection}_{info['model'].replace('-', '_')} make run"
        )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    data = Path(os.environ.get("DATA_DIR", "data")).resolve()
    milvus_port = int(os.environ.get("MILVUS_PORT", "19530"))
    extractor_port = int(os.environ.get("EXTRACTOR_PORT", "8001"))
    search_port = int(os.environ.get("SEARCH_PORT", "5000"))
    collection = os.environ.get("COLLECTION", "images")
    image_root = Path(os.environ.get("IMAGE_ROOT", data / "images")).resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for port, what in ((extractor_port, "EXTRACTOR_PORT"), (search_port, "SEARCH_PORT")):
        if port_open("127.0.0.1", port):
            raise SystemExit(f"port {port} is in use ({what}): stop what runs there or set {what}=...")

    milvus = MilvusServer(data / "milvus", port=milvus_port)
    children: list[ServiceProcess] = []
    stopping = False

    def on_signal(signum, frame):  # Ctrl-C or SIGTERM: unwind through the finally below
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Explicitly: a process started in the background by a script inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt for it; Ctrl-C (or SIGINT from a supervisor) must still stop the stack.
    signal.signal(signal.SIGINT, on_signal)
    try:
        log.info("starting Milvus on 127.0.0.1:%d (data in %s)", milvus_port, milvus.data_dir)
        milvus.start()
        env = {
            **os.environ,
            "MILVUS_URI": milvus.uri,
            "EXTRACTOR_URL": f"http://127.0.0.1:{extractor_port}",
            "COLLECTION": collection,
            "IMAGE_ROOT": str(image_root),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        log.info("starting extractor on 127.0.0.1:%d (log: %s)", extractor_port, logs / "extractor.log")
        extractor = ServiceProcess("extractor_service", env, logs / "extractor.log", port=extractor_port,
                                   name="extractor").start(wait_ready=False)
        children.append(extractor)
        log.info("starting search service on 127.0.0.1:%d (log: %s)", search_port, logs / "search.log")
        search = ServiceProcess("search_service", env, logs / "search.log", port=search_port, ready_path="/healthz",
                                name="search service").start(wait_ready=False)
        children.append(search)
        for child, timeout in ((extractor, 300), (search, 60)):
            try:
                child.wait_ready(timeout)
            except (RuntimeError, TimeoutError) as exc:
                raise SystemExit(str(exc).split(":\n", 1)[0]) from None

        count = catalogue_size(milvus.uri, collection)
        if count == 0:
            source = Path(os.environ["IMAGES"]).resolve() if os.environ.get("IMAGES") else None
            files = sample_images.populate(image_root, source)
            log.info("collection %r is empty: indexing %d images from %s", collection, len(files), image_root)
            loader = subprocess.run(
                [sys.executable, "-m", "loader", "index", str(image_root)], env=env, check=False
            )
            if loader.returncode != 0:
                raise SystemExit(f"indexing the sample catalogue failed (exit {loader.returncode})")
        else:
            check_same_model(milvus.uri, collection, env["EXTRACTOR_URL"])
            log.info("collection %r has %d images: not re-indexing", collection, count)

        print(f"\n  Search by image:  http://127.0.0.1:{search_port}/\n  Ctrl-C stops everything.\n", flush=True)
        while True:
            for child in children:
                if not child.alive():
                    raise SystemExit(f"{child.name} stopped unexpectedly; see {child.log_path}")
            if not milvus.running:
                raise SystemExit(f"Milvus stopped unexpectedly; see {milvus.data_dir / 'logs'}")
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        log.info("stopping ...")
        for child in reversed(children):
            child.stop(grace=STOP_GRACE_S)
        milvus.stop(grace=12)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
