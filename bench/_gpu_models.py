"""Models of the GPU driver (bench/_gpu_extract.py): the context sections share (images, weights, models, the
args), FeatureModels per backbone and variant (fp32 with matmul precision highest, bf16, fp32-tf32), compiling
several batch shapes at once, padded calls on compiled shapes, and the vectors check against TensorFlow on
CPU.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _gpu_run import R, emit, log, skip, slug
from _gpu_weights import FP32_TOLERANCE, REFERENCE_IMAGES, REFERENCE_SIZES, pixel_digest, prepare_weights


class Ctx:
    """What sections share: images, weights, models, the args."""

    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="gpu_extract_"))
        self.images: list[bytes] = []
        self.weights: dict = {}  # name -> (Weights, digest)
        self.models: dict = {}  # (name, variant) -> FeatureModel
        self.reference: dict | None = None
        self.decoder = None  # GpuDecoder once made
        self.compiled: set = set()  # (name, variant, batch, input size)
        self.decoded: dict = {}  # (name, input size) -> 64 decoded images (model-only input)


VARIANTS = {"fp32": ("fp32", None), "bf16": ("bf16", None), "fp32-tf32": ("fp32", "default")}


def get_weights(ctx: Ctx, name: str):
    if name not in ctx.weights:
        t = time.perf_counter()
        ctx.weights[name] = prepare_weights(name, ctx.workdir)
        log(f"{name} weights ready in {time.perf_counter() - t:.1f}s ({ctx.weights[name][0].layout}, "
            f"{'ImageNet' if name == 'efficientnet-lite0' else 'seeded random'})")
    return ctx.weights[name]


def get_model(ctx: Ctx, name: str, variant: str, input_size: int | None = None):
    """The FeatureModel of (backbone, variant): fp32 (matmul precision highest), bf16, fp32-tf32 (JAX default)."""
    from extractor_service.backbones import get_backbone
    from extractor_service.model import JAX_MATMUL_PRECISION_ENV, FeatureModel

    size = input_size or ctx.args.input_size
    key = (name, variant, size)
    if key not in ctx.models:
        precision, matmul = VARIANTS[variant]
        weights, _ = get_weights(ctx, name)
        previous = os.environ.get(JAX_MATMUL_PRECISION_ENV)
        if matmul:
            os.environ[JAX_MATMUL_PRECISION_ENV] = matmul
        try:
            t = time.perf_counter()
            ctx.models[key] = FeatureModel(get_backbone(name), weights, size, precision)
        finally:
            if previous is None:
                os.environ.pop(JAX_MATMUL_PRECISION_ENV, None)
            else:
                os.environ[JAX_MATMUL_PRECISION_ENV] = previous
        fm = ctx.models[key]
        log(f"built {name} {variant} at {size}px on {fm.device} in {time.perf_counter() - t:.1f}s "
            f"(matmul precision {getattr(fm, 'matmul_precision', None) or 'JAX default'})")
    return ctx.models[key]


def compile_shapes(ctx: Ctx, tasks: list[tuple[str, str, int]], input_size: int | None = None) -> None:
    """Compile (first call of) each (backbone, variant, batch) shape, several at once; times recorded."""
    size = input_size or ctx.args.input_size
    todo = [t for t in tasks if (t[0], t[1], t[2], size) not in ctx.compiled]
    if not todo:
        return
    todo.sort(key=lambda t: -t[2])  # the biggest (slowest) first
    models = {(n, v): get_model(ctx, n, v, size) for n, v, _ in todo}

    def one(task):
        name, variant, batch = task
        t = time.perf_counter()
        models[(name, variant)](np.zeros((batch, size, size, 3), np.float32))
        return task, time.perf_counter() - t

    threads = max(1, min(ctx.args.compile_threads, len(todo)))
    start = time.perf_counter()
    results = []
    with ThreadPoolExecutor(threads, thread_name_prefix="compile") as pool:
        for task, seconds in pool.map(one, todo):
            results.append((task, seconds))
            ctx.compiled.add((task[0], task[1], task[2], size))
    wall = time.perf_counter() - start
    for (name, variant, batch), seconds in sorted(results, key=lambda r: (r[0][0], r[0][1], r[0][2])):
        R["compile"].append({"backbone": name, "variant": variant, "batch": batch, "input_size": size,
                             "seconds": round(seconds, 2), "threads": threads})
    desc = ", ".join(f"{n} {v} b{b}: {s:.1f}s" for (n, v, b), s in sorted(results, key=lambda r: r[0][2]))
    log(f"compiled {len(todo)} shapes in {wall:.1f}s wall with {threads} threads ({desc})")
    R["compile"].append({"backbone": "+".join(sorted({t[0] for t in todo})),
                         "variant": "+".join(sorted({t[1] for t in todo})), "batch": "wall",
                         "input_size": size, "seconds": round(wall, 2), "threads": threads})


class PadTo:
    """A model callable that pads every batch to `size` rows: one compiled shape per measured point."""

    def __init__(self, fm, size: int):
        self.fm, self.size = fm, size

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n < self.size:
            batch = np.concatenate([batch, np.zeros((self.size - n,) + batch.shape[1:], batch.dtype)])
        return self.fm(batch)[:n]


def run_in_chunks(fm, batch: np.ndarray, chunk: int) -> np.ndarray:
    """Vectors of `batch` through shapes already compiled: chunks of `chunk` rows, the last one padded."""
    pad = PadTo(fm, chunk)
    return np.concatenate([pad(batch[i:i + chunk]) for i in range(0, len(batch), chunk)])


def decode_batch(name: str, blobs: list[bytes], size: int) -> np.ndarray:
    from extractor_service.backbones import get_backbone
    from extractor_service.preprocessing import load_image

    prep = get_backbone(name).preprocessing
    return np.stack([load_image(b, size, resample=prep.resample, normalization=prep.normalization) for b in blobs])


# ---------------------------------------------------------------------------------------------- vectors

def vector_check(ctx: Ctx, name: str, variant: str, chunk: int, input_size: int | None = None) -> None:
    """Vectors of the reference JPEGs vs TensorFlow-on-CPU's (fp32: within 1e-4); bf16 also vs fp32 here."""
    from extractor_service.backbones import get_backbone

    ref = ctx.reference
    if ref is None:
        skip(f"vectors {name} {variant}", "no reference .npz")
        return
    size = input_size or ctx.args.input_size
    if f"vec__{name}__{size}" not in ref:
        if not (ctx.args.check_224 and VARIANTS[variant][0] == "fp32"):
            skip(f"vectors {name} {variant} at {size}px", f"the reference has {name} at {REFERENCE_SIZES[name]} px only")
            return
        size, chunk = 224, REFERENCE_IMAGES  # --check-224 (--quick): a model at the reference's size for the check
    backbone = get_backbone(name)
    fm = get_model(ctx, name, variant, size)
    compile_shapes(ctx, [(name, variant, chunk)], size)
    batch = decode_batch(name, ref["blobs"], size)
    ours = run_in_chunks(fm, batch, chunk)
    diff = float(np.abs(ours - ref[f"vec__{name}__{size}"]).max())
    weights, digest = get_weights(ctx, name)
    prep = backbone.preprocessing
    pixels_same = ref["meta"]["pixels"].get(f"{prep.resample}_{size}") == \
        [pixel_digest(b, size, prep.resample) for b in ref["blobs"]]
    weights_same = ref["meta"]["weights"].get(name) == digest
    precision = VARIANTS[variant][0]
    row = {"backbone": name, "variant": variant, "input_size": size, "max_abs_diff_vs_cpu_tf": diff,
           "pixels_identical_to_reference": pixels_same, "weights_identical_to_reference": weights_same,
           "fingerprint": backbone.fingerprint(weights.digest, size, precision)}
    if precision == "fp32":
        row["ok"] = diff <= FP32_TOLERANCE
        row["tolerance"] = FP32_TOLERANCE
    else:
        fp32 = get_model(ctx, name, "fp32", size)
        compile_shapes(ctx, [(name, "fp32", chunk)], size)
        row["max_abs_diff_vs_fp32_here"] = float(np.abs(ours - run_in_chunks(fp32, batch, chunk)).max())
        row["min_cosine_vs_cpu_tf"] = float((ours * ref[f"vec__{name}__{size}"]).sum(axis=1).min())
        row["fingerprint_differs_from_fp32"] = row["fingerprint"] != backbone.fingerprint(weights.digest, size, "fp32")
    R["vectors"].append(row)
    emit(slug("gpu_vectors_max_abs_diff", name, variant, size), diff)
    extra = "" if precision == "fp32" else (f", vs fp32 here {row['max_abs_diff_vs_fp32_here']:.2e}, min cosine "
                                            f"{row['min_cosine_vs_cpu_tf']:.5f}, own fingerprint "
                                            f"{row['fingerprint_differs_from_fp32']}")
    verdict = f" -> {'OK' if row['ok'] else 'FAIL'} (<= {FP32_TOLERANCE})" if "ok" in row else ""
    log(f"vectors {name} {variant} {size}px vs TensorFlow CPU: max abs diff {diff:.2e}{verdict}{extra}; "
        f"pixels identical to the reference machine's: {pixels_same}, weights identical: {weights_same}")
