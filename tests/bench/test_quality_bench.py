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
@pytest.mark.timeout(300)
def test_quality_bench_on_tiny_sets(bench_runs):
    proc = bench_runs["quality"].finish()
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    lines = out.splitlines()
    assert lines[0].startswith("MACHINE "), lines[0]
    machine = lines[0].split()[1]
    assert re.fullmatch(rf"RUN bench/quality\.py length=\d+s mode=quick machine={re.escape(machine)}", lines[-1])
    results = {line.split()[1]: line for line in lines if line.startswith("RESULT ")}
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
