"""The driver of bench/gpu_extract.sh: the extractor on one GPU with Keras 3 on JAX (see that script's header).

    bench/gpu_extract.sh [options]                  # how it is meant to run (installs wheels, sets the env)
    python bench/_gpu_extract.py --help             # the options
    .venv/bin/python bench/_gpu_extract.py --make-reference   # TensorFlow on CPU: bench/data/gpu_extract_reference.npz

Sections, in order of importance, each guarded (an error is printed and the run goes on) and skipped once
the time budget is spent: info, decode (CPU), vgg16 (fp32 + bf16 sweep), tf32, gpudecode, http, others,
http2. Everything measured is printed as a RESULT line (bench/_common.py) as soon as it is known, kept in a
JSON file (rewritten after every section), and summarised in a table at the end.

The leading underscore keeps it out of `make bench` (which runs bench/[!_]*.py): it needs a GPU and JAX.

This file parses the options and runs the sections; the rest lives beside it, one job per module (leading
underscores too): _gpu_run (clock, time budget, JSON, RESULT lines, guards), _gpu_sampling (GPU/CPU
utilisation), _gpu_weights (weights, the TensorFlow CPU reference), _gpu_models (models, compiles, vector
checks), _gpu_measure (in-process measurements), _gpu_sections (info, decode, vgg16, tf32, others),
_gpu_decode (section gpudecode), _gpu_http (sections http, http2 and their client processes), _gpu_summary
(goals, summary table).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import _gpu_run as run  # noqa: E402
from _gpu_decode import section_gpudecode  # noqa: E402
from _gpu_http import http_client_main, section_http  # noqa: E402
from _gpu_models import Ctx  # noqa: E402
from _gpu_run import Deadline, R, elapsed, log, run_section, save  # noqa: E402
from _gpu_sections import (  # noqa: E402
    section_decode, section_info, section_others, section_tf32, section_vgg16)
from _gpu_summary import goals, print_summary  # noqa: E402
from _gpu_weights import make_reference  # noqa: E402


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
    run.BUDGET_S = args.budget_s
    run.OUT_JSON = Path(args.out_json) if args.out_json else None
    if run.OUT_JSON:
        run.OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    R["meta"].update({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": run.BUDGET_S})

    def on_term(signum, frame):
        raise Deadline(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    log(f"gpu_extract driver: budget {run.BUDGET_S:.0f}s from the wrapper's start, sections {args.sections}")
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
        if run.OUT_JSON:
            log(f"results: {run.OUT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
