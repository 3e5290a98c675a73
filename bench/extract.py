"""Extractor throughput, latency and memory vs the users' own Keras loops (same model, images and machine).

    .venv/bin/python bench/extract.py [--quick] [--model vgg16] [--weights auto] [--input-size 224]

`--model` is any backbone the extractor serves (vgg16, resnet50, densenet121, efficientnet-lite0);
`--weights auto` takes what the extractor would (for vgg16 offline: hed-vgg16; same FLOPs as ImageNet).
1. numpy float32 matmul GFLOP/s: the roofline (per 224x224 image: VGG16 30.7 GFLOP, EfficientNet-Lite0 0.8).
2. The baselines, in this process, end to end from JPEG files (bench/_extract_classic.py): the classic loop
   (load_img, preprocess_input, model.predict, normalise) one image at a time, and the batched loop a user
   writes for a folder: stacks of 8, 16 and 32 decoded images, one model call each (the fastest of
   model.predict / predict_on_batch / model(x) on this machine).
3. The service (`python -m extractor_service`, gunicorn, dynamic batching; its default settings unless
   `--service-env`: on a machine without a GPU the model runs on OpenVINO's CPU plugin, and
   `--service-env EXTRACTOR_RUNTIME=tensorflow` measures TensorFlow instead) under 1, 4 and 16 concurrent
   clients, one JPEG per request over HTTP, and as
   `loader extract` sends a folder (4 requests of 8 images in flight); JSON answers (what extractor_client
   reads) or `--binary` (Accept: application/octet-stream). Each level prints where the time went
   (bench/_extract_clients.py): images per model call, model and decode time per image, CPU per image.
Fairness on a shared machine: the per-image loop runs in two halves, before and after the service; the
batched loops and the service's 16-client and loader levels alternate in rounds (batched then service,
then service then batched, ...), so drift and other processes' load weigh on both sides alike.
RESULT lines: 16 clients (and the loader's way) vs the best batched loop, per round too; CPU per image, the
service's and its clients' against the batched loop's (what each costs the machine, whatever share of it
other processes left); each client level vs the per-image loop; p50/p99 latencies; each batched loop's
images/s; roofline shares (the matmul peak of this run: before, between and after the measurements); the
service's resident memory after the run; the largest differences between vectors.
`--quick --image-scale 1 --input-size 64 --model efficientnet-lite0` takes seconds (the test's run).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import matmul_gflops, percentile, result, rss_mb, start_run, value  # noqa: E402
from _extract_classic import (  # noqa: E402
    VARIANTS, batched_loop, build_classic_model, classic_loop, pick_variant)
from _extract_clients import ServiceWindow, drive  # noqa: E402
from devstack.processes import ServiceProcess  # noqa: E402

# How `loader extract` calls the service by default: --concurrency 4, --images-per-request 8.
LOADER_CLIENTS, LOADER_PER_REQUEST = 4, 8


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images: under two minutes")
    parser.add_argument("--model", default=os.environ.get("EXTRACTOR_MODEL", "vgg16"),
                        help="backbone: vgg16, resnet50, densenet121, efficientnet-lite0 (default vgg16)")
    parser.add_argument("--weights", default=os.environ.get("EXTRACTOR_WEIGHTS", "auto"))
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--precision", default=os.environ.get("EXTRACTOR_PRECISION", "fp32"))
    parser.add_argument("--image-scale", type=int, default=0,
                        help="multiply every image count by this (default: by the backbone's speed, 1-16)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="rounds of batched loops vs service (default 2 with --quick, else 4)")
    parser.add_argument("--batch-sizes", default="8,16,32", help="the batched loop's batch sizes")
    parser.add_argument("--variant", choices=["auto", *VARIANTS], default="auto",
                        help="the batched loop's model call (default: the fastest here)")
    parser.add_argument("--binary", action="store_true",
                        help="clients ask for the binary answer (Accept: application/octet-stream), not JSON")
    parser.add_argument("--service-env", action="append", default=[], metavar="EXTRACTOR_X=VALUE",
                        help="a setting for the service (e.g. EXTRACTOR_MAX_BATCH_SIZE=16); repeatable")
    parser.add_argument("--workdir", default=None,
                        help="where the images and the service's log go (a temporary folder in it, removed at the end)")
    return parser.parse_args(argv)


@dataclass
class Plan:
    """How many images each measurement takes."""

    n_classic: int  # per-image loop, both halves together
    levels: dict[int, int]  # clients -> images, the 1- and 4-client levels
    rounds: int
    batched: int  # images per batch size per round (whole batches of every size)
    service: int  # images per round for the 16-client level and again for the loader's way
    batch_sizes: list[int]

    @classmethod
    def make(cls, args: argparse.Namespace, gflops_224: float) -> "Plan":
        # Faster backbones get more images, so each measurement runs for a similar, measurable time (half as
        # many with --quick, to stay under two minutes).
        speed = max(1, min(16, int(30.7 / gflops_224)))
        s = args.image_scale or (max(1, speed // 2) if args.quick else speed)
        sizes = sorted(int(b) for b in args.batch_sizes.split(","))
        rounds = args.rounds or (2 if args.quick else 4)
        if args.quick:
            batched = 32 * max(1, s // 4)
            batched = -(-batched // sizes[-1]) * sizes[-1]  # whole batches of the largest size
            return cls(8 * s, {1: 8 * s, 4: 16 * s}, rounds, batched, 32 * s, sizes)
        # Full runs: at least 8 requests per client at 16 clients (a service under sustained load, not a
        # burst of two requests each, most of it ramp-up and tail) and 3 batches of the largest size.
        batched = max(32 * max(1, s // 2), 3 * sizes[-1])
        batched = -(-batched // sizes[-1]) * sizes[-1]
        return cls(32 * s, {1: 24 * s, 4: 48 * s}, rounds, batched, max(128, 24 * s), sizes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_run("bench/extract.py", args.quick)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from extractor_service.backbones import get_backbone

    backbone = get_backbone(args.model)
    size = args.input_size
    plan = Plan.make(args, backbone.gflops_224)
    gflop_per_image = backbone.gflops_224 * (size / 224) ** 2
    gflops = matmul_gflops(seconds=1.0 if args.quick else 3.0)
    print(f"numpy float32 matmul: {gflops:.1f} GFLOP/s -> roofline {gflops / gflop_per_image:.2f} images/s; "
          f"{plan}", flush=True)

    images = make_images(max(plan.n_classic, plan.batched, plan.service, *plan.levels.values()))
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_", dir=args.workdir))
    try:
        paths = []
        for i, data in enumerate(images):
            paths.append(tmp / f"{i}.jpg")
            paths[-1].write_bytes(data)

        service_env = dict(kv.split("=", 1) for kv in args.service_env)
        env = {"EXTRACTOR_MODEL": backbone.name, "EXTRACTOR_WEIGHTS": args.weights,
               "EXTRACTOR_INPUT_SIZE": str(size), "EXTRACTOR_PRECISION": args.precision, **service_env}
        service = ServiceProcess("extractor_service", env, tmp / "extractor.log").start(wait_ready=False)
        try:
            model, _ = build_classic_model(backbone.name, args.weights, size)  # while the service loads
            service.wait_ready(timeout=300)
            info = requests.get(service.url + "/v1/info", timeout=5).json()
            print(f"service: {info}; settings {service_env or 'default'}; clients ask for "
                  f"{'binary' if args.binary else 'JSON'}", flush=True)
            m = measure(args, plan, backbone, model, service, images, paths)
            m["runtime"] = info.get("runtime", "?")
        finally:
            service.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the images and the service's log
    m["bench_rss"] = psutil.Process().memory_info().rss / 2**20
    # The roofline is the peak seen: before, between and after the measurements.
    gflops = max(gflops, m["gflops_mid"], matmul_gflops(seconds=1.0 if args.quick else 3.0))
    report(backbone, plan, m, gflops, gflop_per_image)
    return 0


def measure(args, plan: Plan, backbone, model, service: ServiceProcess, images: list[bytes],
            paths: list[Path]) -> dict:
    """Every measurement, in an order that spreads drift over both sides; returns the raw figures."""
    size, sizes, url = args.input_size, plan.batch_sizes, service.url
    variant, speeds = args.variant, {}
    if variant == "auto":
        variant, speeds = pick_variant(model, size, sizes[0], reps=1 if args.quick else 3)
        print(f"batched loop's model call, model only, images/s at batch {sizes[0]}: "
              + ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()) + f" -> {variant}", flush=True)
    # Warm-ups, as the service warms up: the per-image loop once, the batched loop once per batch shape
    # (pick_variant ran the smallest), the service once per client level (connections, batch shapes).
    classic_loop(model, paths[:1], size, backbone)
    for bs in sizes[1 if speeds else 0:]:
        batched_loop(model, paths[:bs], size, backbone, bs, variant)

    half = plan.n_classic // 2
    _, classic_lat, classic_vecs = classic_loop(model, paths[:half], size, backbone)
    ips_before = half / sum(classic_lat)
    levels, windows, service_vecs = {}, {}, {}
    for clients, total in plan.levels.items():
        drive(url, images, clients, clients, args.binary)
        windows[clients] = ServiceWindow(url, service.pids)
        with windows[clients]:
            ips, lat, service_vecs[clients] = drive(url, images, clients, total, args.binary)
        levels[clients] = (ips, lat)
        print(f"service, {clients:2d} clients: {ips:.2f} images/s, p50 {percentile(lat, 50) * 1000:.0f} ms, "
              f"p99 {percentile(lat, 99) * 1000:.0f} ms; {windows[clients].line()}", flush=True)

    # Rounds: batched loops and the service's 16-client and loader levels, mirrored every other round.
    drive(url, images, 16, 16, args.binary)  # 16 connections (the loader's requests are batches of 8: warm)
    served = {key: [0, 0.0, []] for key in (16, "loader")}  # images, seconds, latencies
    windows.update({key: ServiceWindow(url, service.pids) for key in served})
    batched = {bs: [0, 0.0, 0.0] for bs in sizes}  # images, seconds, CPU seconds
    round_ratios, batched_vecs = [], None

    def run_batched(order: list[int]) -> dict[int, float]:
        nonlocal batched_vecs
        out = {}
        for bs in order:
            out[bs], secs, vecs, cpu = batched_loop(model, paths[:plan.batched], size, backbone, bs, variant)
            batched[bs][0] += plan.batched
            batched[bs][1] += secs
            batched[bs][2] += cpu
            if batched_vecs is None and bs == sizes[0]:
                batched_vecs = vecs
        return out

    def run_service(order: list) -> dict:
        out = {}
        for key in order:
            clients, per_request = (16, 1) if key == 16 else (LOADER_CLIENTS, LOADER_PER_REQUEST)
            with windows[key]:
                out[key], lat, vecs = drive(url, images, clients, plan.service, args.binary, per_request)
            served[key][0] += plan.service
            served[key][1] += plan.service / out[key]
            served[key][2] += lat
            service_vecs.setdefault(key, vecs)
        return out

    for r in range(plan.rounds):
        if r % 2 == 0:
            b, sv = run_batched(sizes), run_service([16, "loader"])
        else:
            sv, b = run_service(["loader", 16]), run_batched(sizes[::-1])
        round_ratios.append(sv[16] / max(b.values()))
        print(f"round {r + 1}/{plan.rounds}: batched " + ", ".join(f"{bs}: {b[bs]:.2f}" for bs in sizes)
              + f"; 16 clients {sv[16]:.2f}, loader's way {sv['loader']:.2f} images/s; 16 clients / best "
              f"batched {round_ratios[-1]:.2f}x (load average {os.getloadavg()[0]:.1f})", flush=True)
    for key, (n, secs, lat) in served.items():
        levels[key] = (n / secs, lat)
        print(f"service, {'16 clients' if key == 16 else 'loader'}: {n / secs:.2f} images/s, p50 "
              f"{percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms; "
              f"{windows[key].line()}", flush=True)
    service_rss = rss_mb(service.pids)
    gflops_mid = 0.0 if args.quick else matmul_gflops(seconds=3.0)  # service idle: a third roofline sample

    _, lat_b, vecs_b = classic_loop(model, paths[half:plan.n_classic], size, backbone)
    classic_lat, classic_vecs = classic_lat + lat_b, classic_vecs + vecs_b
    classic_ips = len(classic_lat) / sum(classic_lat)
    print(f"classic loop: {classic_ips:.2f} images/s (before {ips_before:.2f}, after "
          f"{len(lat_b) / sum(lat_b):.2f}), p50 {percentile(classic_lat, 50) * 1000:.0f} ms", flush=True)
    batched_ips = {bs: n / secs for bs, (n, secs, _) in batched.items()}
    batched_cpu = {bs: 1000 * cpu / n for bs, (n, _, cpu) in batched.items()}  # CPU ms per image
    print(f"batched loop ({variant}): " + ", ".join(
        f"batch {bs}: {batched_ips[bs]:.2f} images/s, CPU {batched_cpu[bs]:.1f} ms/img, "
        f"{batched[bs][2] / batched[bs][1]:.2f} cores busy" for bs in sizes), flush=True)
    # Image i is the same JPEG in every run (images[i] holds paths[i]'s bytes): compare vectors one by one.
    diff = max(float(np.abs(v[i] - classic_vecs[i]).max())
               for v in service_vecs.values() for i in range(min(len(classic_vecs), len(v))))
    diff_batched = max(float(np.abs(batched_vecs[i] - classic_vecs[i]).max())
                       for i in range(min(len(classic_vecs), len(batched_vecs))))
    return {"levels": levels, "windows": windows, "classic_ips": classic_ips, "classic_lat": classic_lat,
            "batched_ips": batched_ips, "batched_cpu": batched_cpu, "variant": variant,
            "round_ratios": round_ratios, "service_rss": service_rss, "gflops_mid": gflops_mid,
            "diff": diff, "diff_batched": diff_batched}


def report(backbone, plan: Plan, m: dict, gflops: float, gflop_per_image: float) -> None:
    """The RESULT lines; names carry the backbone, except vgg16's (the README's history uses those)."""
    tag = "" if backbone.name == "vgg16" else "_" + backbone.name.replace("-", "_")
    levels, batched_ips, classic_ips = m["levels"], m["batched_ips"], m["classic_ips"]
    roofline = gflops / gflop_per_image
    best_bs = max(batched_ips, key=batched_ips.get)
    result(f"extract{tag}_vs_best_batched_16_clients", levels[16][0], batched_ips[best_bs], "img/s")
    value(f"extract{tag}_vs_best_batched_16_clients_median_round", float(np.median(m["round_ratios"])))
    result(f"extract{tag}_vs_best_batched_loader_style", levels["loader"][0], batched_ips[best_bs], "img/s")
    for clients in (1, 4, 16):
        result(f"extract{tag}_images_per_s_{clients}_clients", levels[clients][0], classic_ips, "img/s")
    for bs in plan.batch_sizes:
        value(f"extract{tag}_batched_{bs}_images_per_s", batched_ips[bs], "img/s")
    value(f"extract{tag}_best_batch_size", best_bs)
    result(f"extract{tag}_p50_latency_1_client", percentile(levels[1][1], 50) * 1000,
           percentile(m["classic_lat"], 50) * 1000, "ms", higher_is_better=False)
    for clients in (4, 16):
        value(f"extract{tag}_p50_latency_{clients}_clients", percentile(levels[clients][1], 50) * 1000, "ms")
        value(f"extract{tag}_p99_latency_{clients}_clients", percentile(levels[clients][1], 99) * 1000, "ms")
    value(f"extract{tag}_classic_p99_latency", percentile(m["classic_lat"], 99) * 1000, "ms")
    # CPU per image (all threads; the service's and its clients' together): what each way costs the machine,
    # whatever share of it other processes left to this run.
    b16 = m["windows"][16].breakdown
    result(f"extract{tag}_cpu_per_image_16_clients_vs_best_batched",
           b16["service_cpu_ms_per_image"] + b16["client_cpu_ms_per_image"], m["batched_cpu"][best_bs], "ms",
           higher_is_better=False)
    value(f"extract{tag}_mean_batch_16_clients", b16["mean_batch"])
    value("matmul_gflops", gflops, "GFLOP/s")
    value(f"extract{tag}_roofline_share_16_clients", 100 * levels[16][0] / roofline, "%")
    value(f"extract{tag}_batched_roofline_share", 100 * batched_ips[best_bs] / roofline, "%")
    value(f"extract{tag}_classic_roofline_share", 100 * classic_ips / roofline, "%")
    if max(levels[16][0], batched_ips[best_bs]) > roofline:
        print(f"note: above 100% of the roofline: the matmul peak ({gflops:.0f} GFLOP/s) was measured while "
              "other processes held the CPU, so the shares are not meaningful in this run", flush=True)
    value(f"extract{tag}_service_rss", m["service_rss"], "MB")
    value(f"extract{tag}_classic_process_rss", m["bench_rss"], "MB")
    value(f"extract{tag}_max_abs_diff_vs_classic", m["diff"])
    value(f"extract{tag}_batched_max_abs_diff_vs_classic", m["diff_batched"])
    print(f"{backbone.name} (service on {m['runtime']}): 16 clients / best batched loop (batch {best_bs}, "
          f"{m['variant']}): "
          f"{levels[16][0] / batched_ips[best_bs]:.2f}x (goal 1.0x; rounds "
          + ", ".join(f"{r:.2f}" for r in m["round_ratios"]) + f"); 16 clients / per-image loop: "
          f"{levels[16][0] / classic_ips:.2f}x (goal 1.3x)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
