#!/usr/bin/env bash
# On a GPU machine: extractor images/s for batch sizes 1..256 in fp32 and bf16, end to end from JPEG
# bytes (decode pool -> dynamic batcher -> compiled model), in one run of under 5 minutes.
#   bench/gpu_extract.sh                                  # full sweep
#   bench/gpu_extract.sh --sizes 1,64 --seconds 2         # a subset
#   bench/gpu_extract.sh --allow-cpu --sizes 1,4 --input-size 64   # check the script on a CPU machine
# (Python inline so that `make bench`, which runs bench/*.py, does not run a GPU-only sweep.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout 290 "$PY" - "$@" <<'PYEOF'
"""GPU sweep for bench/gpu_extract.sh: images/s per batch size and precision, end to end from JPEG bytes.

For each precision (fp32, bf16) and batch size (1 .. 256): the extractor's own pipeline (decode pool ->
dynamic batcher -> compiled model) is fed JPEG bytes from several threads, each submitting one full batch
at a time, for a fixed time. Model-only images/s (pre-decoded inputs) is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path.cwd()
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import value  # noqa: E402
from extract import make_images  # noqa: E402


def run(precision: str, sizes: list[int], seconds: float, input_size: int, weights, images: list[bytes]) -> None:
    from extractor_service.config import ExtractorConfig
    from extractor_service.extractor import Extractor
    from extractor_service.model import FeatureModel
    from extractor_service.preprocessing import load_image
    from extractor_service.weights import fingerprint

    t0 = time.perf_counter()
    model = FeatureModel(weights, input_size, precision)
    print(f"[{precision}] device {model.device}, build {time.perf_counter() - t0:.1f}s", flush=True)
    decoded = np.stack([load_image(b, input_size) for b in images[:8]])
    for size in sizes:
        config = ExtractorConfig(weights="hed-vgg16", input_size=input_size, precision=precision,
                                 max_batch_size=size, max_wait_ms=2, max_queue=8 * size + 64,
                                 decode_threads=os.cpu_count() or 4)
        t0 = time.perf_counter()
        model.warm_up(size)
        compile_s = time.perf_counter() - t0
        batch = np.resize(decoded, (size,) + decoded.shape[1:])
        start, n = time.perf_counter(), 0
        while n < 3 or time.perf_counter() - start < seconds / 3:
            model(batch)
            n += 1
        model_ips = n * size / (time.perf_counter() - start)

        extractor = Extractor(config, model, fingerprint=fingerprint("x", input_size, precision),
                              weights_name="bench", device=model.device)
        done, stop = [0], threading.Event()
        lock = threading.Lock()

        def client(k: int) -> None:
            i = k
            while not stop.is_set():
                blobs = [images[(i + j) % len(images)] for j in range(size)]
                extractor.extract(blobs)
                with lock:
                    done[0] += size
                i += size

        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        e2e_ips = done[0] / (time.perf_counter() - start)
        extractor.close()
        print(f"[{precision}] batch {size:4d}: end-to-end {e2e_ips:8.1f} img/s, model only {model_ips:8.1f} img/s"
              f" (warm-up/compile {compile_s:.1f}s)", flush=True)
        value(f"gpu_extract_{precision}_batch{size}", e2e_ips, "img/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--seconds", type=float, default=3.0, help="end-to-end seconds per batch size")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--weights", default=os.environ.get("EXTRACTOR_WEIGHTS", "hed-vgg16"))
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a GPU (to test the script)")
    args = parser.parse_args()

    import tensorflow as tf

    from extractor_service.weights import resolve_weights

    if not tf.config.list_physical_devices("GPU") and not args.allow_cpu:
        print("no GPU visible to TensorFlow; run on a GPU machine (or pass --allow-cpu to test the script)")
        return 1
    weights = resolve_weights(args.weights)
    images = make_images(256)
    for precision in args.precisions.split(","):
        run(precision, [int(s) for s in args.sizes.split(",")], args.seconds, args.input_size, weights, images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
PYEOF
