"""The end of a GPU driver run (bench/_gpu_extract.py): the goals as RESULT lines (VGG16 224 px fp32 >= 2,500
and bf16 >= 6,000 img/s end to end; HTTP >= 70% of in-process; vectors within 1e-4 of TensorFlow on CPU) and
the summary table, printed from the results JSON (also alone: `--summary JSON`).
"""

from __future__ import annotations

import math

from _common import result
from _gpu_run import R, slug


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
