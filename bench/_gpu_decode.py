"""Decode on the GPU for the GPU driver (bench/_gpu_extract.py): nvJPEG (torchvision, batched) + resize with
torch (VGG16: Pillow's own NEAREST indices) + normalize() on the device + DLPack to JAX, into the same
compiled model. Section gpudecode: pixels and vectors vs PIL decode, and images/s beside the CPU-decode
pipeline; skipped without torch/torchvision or CUDA (`--gpu-decode-device cpu` runs its code on a CPU).
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
import time

import numpy as np

from _gpu_measure import completions_rate
from _gpu_models import Ctx, compile_shapes, decode_batch, get_model, run_in_chunks
from _gpu_run import R, emit, guarded, log, skip, slug, time_left
from _gpu_sampling import Sampler


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
