"""The HTTP section of the GPU driver (bench/_gpu_extract.py): the gunicorn service (python -m
extractor_service, KERAS_BACKEND=jax, VGG16) on 127.0.0.1, its vectors vs this process's, and its images/s and
latencies under client threads (in client processes: the driver run with `--http-client`), 1 and 16 JPEGs per
request, binary responses, beside the in-process end-to-end figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from _common import percentile
from _gpu_models import Ctx, decode_batch, get_weights, run_in_chunks
from _gpu_run import R, emit, guarded, log, skip, slug, time_left
from _gpu_sampling import Sampler

DRIVER = Path(__file__).resolve().with_name("_gpu_extract.py")  # its --http-client runs http_client_main


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
        children.append(subprocess.Popen([sys.executable, str(DRIVER), "--http-client",
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
