"""bench/quality.py runs end to end on tiny sets, so a broken benchmark fails CI.

EfficientNet-Lite0 (offline ImageNet weights) and raw pixels at 64 px on a handful of images: every metric
line, the side-by-side ratios, between a MACHINE and a RUN line.
"""

from __future__ import annotations

import re

import pytest

BENCH = "quality"  # the script this module checks (tests/bench/conftest.py runs it)

NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"


@pytest.mark.integration
@pytest.mark.slow
def test_quality_bench_on_tiny_sets(bench_runs):
    _, results = bench_runs["quality"].checked("bench/quality.py")
    for model in ("efficientnet-lite0", "raw-pixels"):
        for metric in ("fmnist_p10", "neardup_r1", "neardup_mrr"):
            name = f"quality_{metric}_{model}"
            if metric == "fmnist_p10" and name not in results:
                continue  # Fashion-MNIST is a Debian package: absent, that set is skipped
            m = re.search(rf" value=({NUMBER}) machine=", results[name])
            assert m and 0.0 <= float(m.group(1)) <= 1.0, results[name]
    ratio = results["quality_neardup_r1_efficientnet_lite0_vs_raw_pixels"]
    ours, base, r = map(float, re.search(rf"ours=({NUMBER}) baseline=({NUMBER}) ratio=({NUMBER})", ratio).groups())
    assert abs(ours / base - r) < 1e-2 * r, ratio
