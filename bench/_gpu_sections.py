"""The in-process sections of the GPU driver (bench/_gpu_extract.py): info (versions, devices, the JPEGs, the
reference), decode (CPU decode+resize+normalise images/s with PIL, one thread and all cores), vgg16 (fp32 +
bf16: vectors, then the batch-size sweep), tf32 (JAX's default matmul precision) and others (ResNet50,
DenseNet121, EfficientNet-Lite0). The GPU-decode and HTTP sections have their own modules.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _gpu_decode import gpu_decode_run
from _gpu_measure import measure_point, point_cost, rate
from _gpu_models import Ctx, compile_shapes, get_weights, vector_check
from _gpu_run import R, emit, guarded, log, skip, time_left
from _gpu_sampling import Sampler, gpu_info
from _gpu_weights import REFERENCE, REFERENCE_IMAGES, load_reference


def section_info(ctx: Ctx) -> None:
    import jax
    import keras
    import PIL

    devices = jax.devices()
    meta = R["meta"]
    meta.update({"python": sys.version.split()[0], "jax": jax.__version__, "keras": keras.__version__,
                 "keras_backend": keras.backend.backend(), "numpy": np.__version__, "pillow": PIL.__version__,
                 "devices": [str(d) for d in devices], "platform": devices[0].platform,
                 "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
                 "decode_threads": ctx.args.decode_threads,
                 "gpu": gpu_info(), "args": vars(ctx.args),
                 "env": {k: os.environ.get(k) for k in ("XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_COMPILATION_CACHE_DIR",
                                                        "XLA_FLAGS", "JAX_DEFAULT_MATMUL_PRECISION")}})
    with contextlib.suppress(OSError):
        meta["cgroup_cpu_max"] = Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if cache and Path(cache).is_dir():
        meta["compile_cache_entries_at_start"] = len(list(Path(cache).iterdir()))
    with contextlib.suppress(ImportError):
        import jaxlib

        meta["jaxlib"] = jaxlib.__version__
    log(f"python {meta['python']}, jax {meta['jax']}, keras {meta['keras']} ({meta['keras_backend']}), "
        f"numpy {meta['numpy']}, pillow {meta['pillow']}; devices {meta['devices']}; {meta['cpu_count']} CPUs "
        f"({meta['cpu_affinity']} usable, cgroup cpu.max {meta.get('cgroup_cpu_max', '-')}); compile cache entries "
        f"at start: {meta.get('compile_cache_entries_at_start', '-')}")
    if meta["gpu"]:
        g = meta["gpu"]
        log(f"GPU: {g['name']}, driver {g['driver']}, {g['memory_total_gib']} GiB ({g['memory_used_gib']} used)")
    from extract import make_images

    t = time.perf_counter()
    ctx.images = make_images(ctx.args.images)
    log(f"{len(ctx.images)} JPEGs from make_images ({np.mean([len(b) for b in ctx.images]) / 1024:.0f} KiB mean, "
        f"about 640x480) in {time.perf_counter() - t:.1f}s")
    if REFERENCE.is_file():
        ctx.reference = load_reference()
        m = ctx.reference["meta"]
        log(f"reference: {REFERENCE.name}, {len(ctx.reference['blobs'])} JPEGs, made {m.get('made')} with keras "
            f"{m.get('keras')} ({m.get('backend')} {m.get('tensorflow', '')}), pillow {m.get('pillow')}")
    else:
        log(f"no reference at {REFERENCE}: vector checks will be skipped")


def decode_rate(fn, images: list[bytes], seconds: float, pool: ThreadPoolExecutor | None) -> float:
    """Images/s of fn over the images, repeated for about `seconds`, in this thread or on `pool`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if pool is None:
            fn(images[n % len(images)])
            n += 1
        else:
            list(pool.map(fn, images))
            n += len(images)
    return n / (time.perf_counter() - start)


def section_decode(ctx: Ctx) -> None:
    """CPU decode + resize (+ normalise) images/s with PIL: one thread and the decode pool's thread count."""
    from extractor_service.preprocessing import decode_image, load_image

    size, threads, secs = ctx.args.input_size, ctx.args.decode_threads, ctx.args.decode_seconds
    images = ctx.images
    for label, resample, normalization in (("nearest_caffe", "nearest", "caffe"),
                                           ("bilinear_lite", "bilinear", "lite")):
        work = functools.partial(load_image, size=size, resample=resample, normalization=normalization)
        uint8 = functools.partial(decode_image, size=size, resample=resample)
        row = {"1_thread": round(decode_rate(work, images, secs, None), 1)}
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, images[: threads * 2]))
            with Sampler() as sampler:
                row["all_cores"] = round(decode_rate(work, images, secs, pool), 1)
            row["cpu_util"] = sampler.summary()["cpu_util"]
            row["all_cores_uint8_no_normalize"] = round(decode_rate(uint8, images, secs / 2, pool), 1)
        row["threads"] = threads
        R["decode_cpu"][label] = row
        emit(f"gpu_cpu_decode_{label}_1_thread", row["1_thread"], "img/s")
        emit(f"gpu_cpu_decode_{label}_{threads}_threads", row["all_cores"], "img/s")
        log(f"CPU decode+resize+normalise ({label}, {size}px): 1 thread {row['1_thread']:.0f} img/s, {threads} threads "
            f"{row['all_cores']:.0f} img/s (CPU {row['cpu_util']}%), without normalise "
            f"{row['all_cores_uint8_no_normalize']:.0f} img/s")
    # What the batcher thread does before the model: np.stack of a batch of float32 images.
    one_img = load_image(images[0], size)
    for batch in (64, 256):
        per_s, _ = rate(functools.partial(np.stack, [one_img.copy() for _ in range(batch)]), 0.3)
        R["decode_cpu"][f"np_stack_ms_b{batch}"] = round(1000 / per_s, 2)
        log(f"np.stack of {batch} float32 {size}px images (batcher thread): {1000 / per_s:.1f} ms")


def section_vgg16(ctx: Ctx) -> None:
    """VGG16 fp32 (matmul precision highest) and bf16: vectors, then the batch-size sweep."""
    args = ctx.args
    variants = [v for v in args.precisions.split(",") if v]
    sizes = [int(s) for s in args.sizes.split(",")]
    chunk = min([s for s in sizes if s >= REFERENCE_IMAGES] or [max(sizes)])
    compile_shapes(ctx, [("vgg16", v, s) for v in variants for s in sizes])
    for v in variants:
        guarded(f"vectors vgg16 {v}", vector_check, ctx, "vgg16", v, chunk)
    for v in variants:
        for b in sizes:
            if time_left() < point_cost(ctx) + args.reserve_s:
                skip(f"vgg16 {v} b{b}")
                continue
            guarded(f"vgg16 {v} b{b}", measure_point, ctx, "vgg16", v, b)


def section_tf32(ctx: Ctx) -> None:
    """VGG16 fp32 with JAX's default matmul precision (TF32 on recent GPUs): vectors and images/s."""
    sizes = [int(s) for s in ctx.args.tf32_sizes.split(",") if s]
    chunk = min([s for s in sizes if s >= REFERENCE_IMAGES] or [max(sizes)])
    compile_shapes(ctx, [("vgg16", "fp32-tf32", s) for s in sizes])
    guarded("vectors vgg16 fp32-tf32", vector_check, ctx, "vgg16", "fp32-tf32", chunk)
    for b in sizes:
        if time_left() < point_cost(ctx) + ctx.args.reserve_s:
            skip(f"vgg16 fp32-tf32 b{b}")
            continue
        guarded(f"vgg16 fp32-tf32 b{b}", measure_point, ctx, "vgg16", "fp32-tf32", b)


def section_others(ctx: Ctx) -> None:
    """ResNet50, DenseNet121, EfficientNet-Lite0: fp32 and bf16 at a few batch sizes; vectors; GPU decode."""
    args = ctx.args
    sizes = [int(s) for s in args.other_sizes.split(",") if s]
    variants = [v for v in args.precisions.split(",") if v]
    chunk = min([s for s in sizes if s >= REFERENCE_IMAGES] or [max(sizes)])
    for name in [n for n in args.other_backbones.split(",") if n]:
        if time_left() < 2 * point_cost(ctx) + 15 + args.reserve_s:
            skip(f"{name}")
            continue
        guarded(f"{name} weights", get_weights, ctx, name)
        if name not in ctx.weights:
            continue
        guarded(f"{name} compile", compile_shapes, ctx, [(name, v, s) for v in variants for s in sizes])
        if not any((name, v, s, args.input_size) in ctx.compiled for v in variants for s in sizes):
            continue
        for v in variants:
            guarded(f"vectors {name} {v}", vector_check, ctx, name, v, chunk)
        for v in variants:
            for b in sizes:
                if time_left() < point_cost(ctx) + args.reserve_s:
                    skip(f"{name} {v} b{b}")
                    continue
                guarded(f"{name} {v} b{b}", measure_point, ctx, name, v, b)
        if ctx.decoder is not None and "bf16" in variants and time_left() > 10 + args.reserve_s:
            guarded(f"gpu decode {name}", gpu_decode_run, ctx, name, "bf16", max(sizes), 2)
