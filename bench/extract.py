"""Extractor throughput and latency vs the per-image Keras loop, same backbone, weights, images and machine.

    .venv/bin/python bench/extract.py [--quick] [--model vgg16] [--weights auto] [--input-size 224]

`--model` is any backbone the extractor serves (vgg16, resnet50, densenet121, efficientnet-lite0);
`--weights auto` takes what the extractor would (for vgg16 offline: hed-vgg16; same FLOPs as ImageNet).
1. numpy float32 matmul GFLOP/s: the roofline (per 224x224 image: VGG16 30.7 GFLOP, EfficientNet-Lite0 0.8).
2. The classic loop users ran (load_img, preprocess_input, model.predict, normalise), one image at a time;
   for other backbones the same loop with that backbone's resize filter and preprocessing.
3. The service (`python -m extractor_service`, gunicorn, dynamic batching) under 1, 4 and 16 concurrent
   clients, one image per request, as JPEG bytes over HTTP.
Prints RESULT lines: images/s ratios against the classic loop, p50/p99 latencies, roofline shares, and
the largest difference between the service's and the classic vectors on the same images.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import matmul_gflops, percentile, result, value  # noqa: E402
from devstack.processes import ServiceProcess  # noqa: E402



def make_images(count: int) -> list[bytes]:
    """`count` JPEGs (about 640x480, quality 90) cut from scikit-image's photographs."""
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
             "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "coins.png", "brick.png", "grass.png"]
    photos = [Image.open(data / n).convert("RGB") for n in names if (data / n).exists()]
    out = []
    for i in range(count):
        img = photos[i % len(photos)].resize((640 - 16 * (i % 7), 480 - 16 * (i % 5)), Image.BILINEAR)
        if i // len(photos) % 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def classic_loop(model, paths: list[Path], size: int, backbone) -> tuple[float, list[float], list[np.ndarray]]:
    """The users' code, one image at a time: (images/s, per-image seconds, vectors).

    VGG16: the classic tutorial verbatim (load_img with its nearest resize, vgg16.preprocess_input). Other
    backbones: the same loop with their resize filter and preprocessing (equal to Keras's preprocess_input
    for ResNet50 and DenseNet121, tested in tests/extractor/test_backbones.py).
    """
    import keras
    from keras.applications.vgg16 import preprocess_input

    from extractor_service.preprocessing import normalize

    prep = backbone.preprocessing
    latencies, vectors = [], []
    start = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        img = keras.utils.load_img(path, target_size=(size, size), interpolation=prep.resample)
        x = np.expand_dims(keras.utils.img_to_array(img), 0)
        x = preprocess_input(x) if backbone.name == "vgg16" else normalize(x, prep.normalization)
        feat = model.predict(x, verbose=0)[0]
        vectors.append(feat / np.linalg.norm(feat))
        latencies.append(time.perf_counter() - t0)
    return len(paths) / (time.perf_counter() - start), latencies, vectors


def build_classic_model(model_name: str, weights_spec: str, size: int):
    """The backbone's Keras model as users build it, with the same weights the service resolves."""
    from extractor_service.backbones import resolve_model

    resolved = resolve_model(model_name, weights_spec)
    if resolved.backbone.name == "vgg16":  # the tutorial's own constructor, weights set by layer name
        from keras.applications import VGG16

        model = VGG16(weights=None, include_top=False, pooling="max", input_shape=(size, size, 3))
        for name, (kernel, bias) in resolved.weights.arrays.items():
            model.get_layer(name).set_weights([kernel, bias])
    else:
        model = resolved.backbone.build(size, resolved.weights)
    return model, resolved


def drive(url: str, images: list[bytes], clients: int, total: int) -> tuple[float, list[float], list]:
    """`clients` threads posting one image per request until `total` are done: (images/s, latencies, vectors)."""
    local = threading.local()
    latencies: list[float] = []
    vectors: list = [None] * total

    def one(i: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        t0 = time.perf_counter()
        resp = session.post(url + "/v1/extract", files=[("image", (f"{i}.jpg", images[i % len(images)]))],
                            timeout=300)
        latencies.append(time.perf_counter() - t0)
        resp.raise_for_status()
        vectors[i] = np.asarray(resp.json()["results"][0]["vector"], dtype=np.float32)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - start), latencies, vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images: under two minutes")
    parser.add_argument("--model", default=os.environ.get("EXTRACTOR_MODEL", "vgg16"),
                        help="backbone: vgg16, resnet50, densenet121, efficientnet-lite0 (default vgg16)")
    parser.add_argument("--weights", default=os.environ.get("EXTRACTOR_WEIGHTS", "auto"))
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--precision", default=os.environ.get("EXTRACTOR_PRECISION", "fp32"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from extractor_service.backbones import get_backbone

    backbone = get_backbone(args.model)
    # Faster backbones get more images, so each level runs for a similar, measurable time.
    scale = max(1, min(16, int(30.7 / backbone.gflops_224)))
    n_classic, per_level = (8, {1: 8, 4: 16, 16: 32}) if args.quick else (32, {1: 24, 4: 48, 16: 96})
    n_classic, per_level = n_classic * scale, {c: n * scale for c, n in per_level.items()}
    size = args.input_size
    gflop_per_image = backbone.gflops_224 * (size / 224) ** 2

    gflops = matmul_gflops(seconds=1.0 if args.quick else 3.0)
    roofline = gflops / gflop_per_image
    print(f"numpy float32 matmul: {gflops:.1f} GFLOP/s -> roofline {roofline:.2f} images/s", flush=True)

    images = make_images(max(n_classic, max(per_level.values())))
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    paths = []
    for i, data in enumerate(images[:n_classic]):
        paths.append(tmp / f"{i}.jpg")
        paths[-1].write_bytes(data)

    service = ServiceProcess("extractor_service", {
        "EXTRACTOR_MODEL": backbone.name, "EXTRACTOR_WEIGHTS": args.weights, "EXTRACTOR_INPUT_SIZE": str(size),
        "EXTRACTOR_PRECISION": args.precision}, tmp / "extractor.log").start(wait_ready=False)
    try:
        model, resolved = build_classic_model(backbone.name, args.weights, size)  # while the service loads
        service.wait_ready(timeout=300)
        info = requests.get(service.url + "/v1/info", timeout=5).json()
        print(f"service: {info}", flush=True)
        classic_loop(model, paths[:1], size, backbone)  # warm-up, as the service warms up
        # The classic loop runs in two halves, before and after the service, so that load from other
        # processes on a shared machine weighs on both sides alike.
        half = len(paths) // 2
        ips_a, classic_lat, classic_vecs = classic_loop(model, paths[:half], size, backbone)
        levels = {}
        for clients, total in per_level.items():
            drive(service.url, images, clients, min(clients, total))  # connections and batch shapes warm
            ips, lat, vecs = drive(service.url, images, clients, total)
            levels[clients] = (ips, lat)
            print(f"service, {clients:2d} clients: {ips:.2f} images/s, p50 {percentile(lat, 50) * 1000:.0f} ms, "
                  f"p99 {percentile(lat, 99) * 1000:.0f} ms", flush=True)
        ips_b, lat_b, vecs_b = classic_loop(model, paths[half:], size, backbone)
        classic_lat += lat_b
        classic_vecs += vecs_b
        classic_ips = len(paths) / sum(classic_lat)
        print(f"classic loop: {classic_ips:.2f} images/s (before {ips_a:.2f}, after {ips_b:.2f}), "
              f"p50 {percentile(classic_lat, 50) * 1000:.0f} ms", flush=True)
        diff = max(float(np.abs(vecs[i] - classic_vecs[i]).max()) for i in range(min(n_classic, len(vecs))))
    finally:
        service.stop()
    gflops = max(gflops, matmul_gflops(seconds=1.0 if args.quick else 3.0))  # the roofline is the peak seen
    roofline = gflops / gflop_per_image

    # Result names carry the backbone unless it is vgg16 (whose names the README's history uses).
    tag = "" if backbone.name == "vgg16" else "_" + backbone.name.replace("-", "_")
    for clients, (ips, lat) in levels.items():
        result(f"extract{tag}_images_per_s_{clients}_clients", ips, classic_ips, "img/s")
    result(f"extract{tag}_p50_latency_1_client", percentile(levels[1][1], 50) * 1000, percentile(classic_lat, 50) * 1000,
           "ms", higher_is_better=False)
    for clients in (4, 16):
        value(f"extract{tag}_p50_latency_{clients}_clients", percentile(levels[clients][1], 50) * 1000, "ms")
        value(f"extract{tag}_p99_latency_{clients}_clients", percentile(levels[clients][1], 99) * 1000, "ms")
    value(f"extract{tag}_classic_p99_latency", percentile(classic_lat, 99) * 1000, "ms")
    value("matmul_gflops", gflops, "GFLOP/s")
    value(f"extract{tag}_roofline_share_16_clients", 100 * levels[16][0] / roofline, "%")
    value(f"extract{tag}_classic_roofline_share", 100 * classic_ips / roofline, "%")
    value(f"extract{tag}_max_abs_diff_vs_classic", diff)
    print(f"{backbone.name}: ratio (16 clients / classic loop): {levels[16][0] / classic_ips:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
