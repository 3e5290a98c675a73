"""In-process measurements of the GPU driver (bench/_gpu_extract.py): calls per second, model-only images/s
(input on the device, and from a host batch), and images/s end to end from JPEG bytes to vectors through the
extractor's own pipeline (decode thread pool -> DynamicBatcher -> compiled FeatureModel), with utilisation;
one measured point (backbone, variant, batch size) as RESULT lines.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from _gpu_models import Ctx, PadTo, decode_batch, get_model
from _gpu_run import R, emit, log, slug
from _gpu_sampling import Sampler


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
