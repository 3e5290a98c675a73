"""Catalogue extraction three ways on the same images and backbone: the Ray job, the HTTP service, the classic loop.

    .venv/bin/python bench/extract_batch.py [--quick | --tiny] [--images 2000] [--models efficientnet-lite0,vgg16]

For each backbone (default EfficientNet-Lite0 and VGG16; VGG16 offline takes the hed weights, the same
FLOPs as ImageNet's) the same N JPEG files (about 640x480, bench/extract.py's `make_images`) go through:

1. `loader extract DIR -o OUT --engine ray` (loader/ray_job.py, called in-process) on a local Ray started
   once for the run (its start-up is reported on its own, `ray_init_s`). The job's images/s include its
   model actors' start (TensorFlow import, model build, warm-up: `ray_first_rows_s`); `ray_steady` is the
   rate after the first rows reached the driver.
2. `loader extract DIR -o OUT.h5` through the extractor service over HTTP (its defaults: 4 requests of 8
   images in flight), the service started and warmed before the clock starts.
3. The classic per-image loop (bench/_extract_classic.py: load_img, preprocess, model.predict, normalise).

Nothing runs at the same time: on a small machine the three share the same cores in turn. RESULT lines
per backbone: Ray vs HTTP, Ray vs classic, HTTP vs classic (images/s), Ray steady vs HTTP, the Ray job's
start-up, and the largest difference between the Ray job's and the service's vectors. `--tiny` (24 images,
64 px, batches of 8, EfficientNet-Lite0) takes under a minute: the test's run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import result, start_run, value  # noqa: E402
from _extract_classic import build_classic_model, classic_loop  # noqa: E402
from devstack.processes import ServiceProcess  # noqa: E402
from extract import make_images  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images per backbone (default 2000)")
    parser.add_argument("--quick", action="store_true", help="200 images")
    parser.add_argument("--tiny", action="store_true", help="24 images at 64 px, EfficientNet-Lite0 only (tests)")
    parser.add_argument("--models", default="efficientnet-lite0,vgg16")
    parser.add_argument("--weights", default="auto", help="EXTRACTOR_WEIGHTS for every backbone")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--classic-images", type=int, default=0,
                        help="images for the per-image loop (default: all; it is the slowest)")
    parser.add_argument("--images-per-batch", type=int, default=32, help="the Ray job's model batch")
    parser.add_argument("--workdir", default=None,
                        help="where images, vectors and logs go (a temporary folder in it, removed at the end)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.images, args.input_size, args.models, args.images_per_batch = 24, 64, "efficientnet-lite0", 8
    elif args.quick:
        args.images = min(args.images, 200)
    return args


def run_ray(folder: Path, out: Path, model: str, args) -> tuple[float, float, float]:
    """The Ray job on `folder`: (images/s end to end, images/s after the first rows, seconds to the first rows)."""
    from loader.ray_job import RayJobOptions, extract_ray
    from loader.sources import open_source

    first: list[tuple[float, int]] = []
    opts = RayJobOptions(model=model, weights=args.weights, input_size=args.input_size,
                         batch_size=args.images_per_batch, shard_size=max(1, args.images // 4), quiet=True)
    start = time.perf_counter()
    summary = extract_ray(open_source(str(folder)), str(out), opts,
                          on_rows=lambda n: first.append((time.perf_counter(), n)) if not first else None)
    seconds = time.perf_counter() - start
    assert summary.imported == args.images, summary.line()
    done_first = first[0][0] - start
    rest = args.images - first[0][1]  # rows after the first batch (nan when it was the only one)
    steady = rest / (seconds - done_first) if rest and seconds > done_first else float("nan")
    return args.images / seconds, steady, done_first


def run_http(folder: Path, out: Path, model: str, args, tmp: Path) -> float:
    """`loader extract` through a warm extractor service: images/s."""
    from loader.extract import extract_dir

    env = {"EXTRACTOR_MODEL": model, "EXTRACTOR_WEIGHTS": args.weights, "EXTRACTOR_INPUT_SIZE": str(args.input_size)}
    service = ServiceProcess("extractor_service", env, tmp / f"extractor-{model}.log").start(timeout=300)
    try:
        start = time.perf_counter()
        summary = extract_dir(folder, out, service.url, quiet=True)
        seconds = time.perf_counter() - start
    finally:
        service.stop()
    assert summary.imported == args.images, summary.line()
    return args.images / seconds


def run_classic(paths: list[Path], model: str, args) -> float:
    """The classic per-image loop, in this process: images/s (one warm-up image first)."""
    keras_model, resolved = build_classic_model(model, args.weights, args.input_size)
    classic_loop(keras_model, paths[:1], args.input_size, resolved.backbone)
    speed, _, _ = classic_loop(keras_model, paths, args.input_size, resolved.backbone)
    return speed


def vectors(path: Path) -> dict[str, np.ndarray]:
    """name -> vector of one classic-layout file or of a Ray job's shards folder."""
    files = sorted(path.glob("shard-*.h5")) if path.is_dir() else [path]
    out = {}
    for f in files:
        with h5py.File(f, "r") as h5:
            out.update((n.decode(), v) for n, v in zip(h5["dataset_2"][:], h5["dataset_1"][:]))
    return out


def bench_model(model: str, folder: Path, paths: list[Path], args, tmp: Path) -> None:
    tag = f"extract_batch_{model.replace('-', '_')}"
    n_classic = args.classic_images or len(paths)
    classic = run_classic(paths[:n_classic], model, args)
    print(f"{model}: classic loop {classic:.2f} images/s on {n_classic} images", flush=True)
    http = run_http(folder, tmp / f"{model}.h5", model, args, tmp)
    print(f"{model}: loader extract over HTTP {http:.2f} images/s", flush=True)
    ray_rate, ray_steady, first_rows = run_ray(folder, tmp / f"{model}-ray", model, args)
    print(f"{model}: Ray job {ray_rate:.2f} images/s ({ray_steady:.2f} after the first rows at "
          f"{first_rows:.1f} s)", flush=True)
    result(f"{tag}_ray_vs_http", ray_rate, http, "img/s")
    result(f"{tag}_ray_vs_classic", ray_rate, classic, "img/s")
    result(f"{tag}_http_vs_classic", http, classic, "img/s")
    result(f"{tag}_ray_steady_vs_http", ray_steady, http, "img/s")
    value(f"{tag}_ray_first_rows_s", first_rows, "s")
    got, want = vectors(tmp / f"{model}-ray"), vectors(tmp / f"{model}.h5")
    assert set(got) == set(want), "the Ray job and the service extracted different images"
    value(f"{tag}_ray_max_abs_diff_vs_http", max(float(np.abs(got[n] - want[n]).max()) for n in got))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_run("bench/extract_batch.py", args.quick or args.tiny)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from loader.ray_cluster import ray_session

    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_batch_", dir=args.workdir))
    try:
        folder = tmp / "images"
        folder.mkdir()
        paths = []
        for i, data in enumerate(make_images(args.images)):
            paths.append(folder / f"{i:06d}.jpg")
            paths[-1].write_bytes(data)
        start = time.perf_counter()
        with ray_session():
            value("extract_batch_ray_init_s", time.perf_counter() - start, "s")
            for model in args.models.split(","):
                bench_model(model.strip(), folder, paths, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # images, vectors and logs
    return 0


if __name__ == "__main__":
    sys.exit(main())
