"""bench/extract_batch.py runs end to end on tiny sizes (24 images, 64 px, EfficientNet-Lite0), so a broken
benchmark fails CI: the Ray job, `loader extract` over HTTP and the classic loop, every RESULT line with a
parseable number and the machine, between a MACHINE and a RUN line, and the Ray job's vectors the service's."""

from __future__ import annotations

import re

import pytest

BENCH = "extract_batch"  # the script this module checks (tests/bench/conftest.py runs it)

TAG = "extract_batch_efficientnet_lite0"
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"
COMPARED = [f"{TAG}_ray_vs_http", f"{TAG}_ray_vs_classic", f"{TAG}_http_vs_classic", f"{TAG}_ray_steady_vs_http"]
VALUES = ["extract_batch_ray_init_s", f"{TAG}_ray_first_rows_s", f"{TAG}_ray_max_abs_diff_vs_http"]


@pytest.mark.integration
@pytest.mark.slow
def test_extract_batch_bench_on_tiny_sizes(bench_runs):
    pytest.importorskip("ray", reason="Ray is not installed: make setup-ray")
    _, results = bench_runs["extract_batch"].checked("bench/extract_batch.py")
    assert list(bench_runs["extract_batch"].workdir.iterdir()) == []  # its images, vectors and logs are gone
    for name in COMPARED:
        m = re.search(rf" ours=({NUMBER})\S* baseline=({NUMBER})\S* ratio=({NUMBER}) ", results.get(name, ""))
        assert m and all(float(x) > 0 for x in m.groups()), results.get(name, f"no RESULT {name}")
    for name in VALUES:
        m = re.search(rf" value=({NUMBER})", results.get(name, ""))
        assert m and float(m.group(1)) >= 0, results.get(name, f"no RESULT {name}")
    assert float(re.search(rf"value=({NUMBER})", results[f"{TAG}_ray_max_abs_diff_vs_http"]).group(1)) <= 1e-5
