"""bench/search.py keeps working: every part on tiny sizes (a few minutes), each figure a RESULT line that
names the machine. (The figures themselves mean nothing at this size; the README's come from full runs.)"""

from __future__ import annotations

import re

import pytest

BENCH = "search"  # the script this module checks (tests/bench/conftest.py runs it)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESULT = re.compile(r"^RESULT (\S+) (?:ours=([\d.e+-]+)\S* baseline=([\d.e+-]+)\S* ratio=([\d.e+-]+|nan)|"
                    r"value=([\d.e+-]+)\S*) machine=(\S+) at=\d+s$")


def test_search_bench_runs_every_part_on_tiny_sizes(bench_runs):
    done = bench_runs["search"].finish()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    results = {m.group(1): m for m in map(RESULT.match, lines) if m}
    bad = [ln for ln in lines if ln.startswith("RESULT") and not RESULT.match(ln)]
    assert not bad, bad
    for name in ("search_p50_3k", "recall_at_10_3k", "search_exact_batched_per_query_3k", "milvus_rss_loaded_3k",
                 "search_filtered_scalar_p50_3k", "search_min_score_p50_3k", "search_service_vs_milvus_qps_16_clients_3k",
                 "search_p50_effnet_3k", "recall_at_10_gaussian_3k", "duplicates_same_groups_2k", "e2e_request_p50",
                 "service_overhead_p50", "extractor_rss", "search_service_rss", "search_batch_16_images"):
        assert name in results, f"no RESULT {name}"
    assert float(results["recall_at_10_3k"].group(5)) > 0.9
    assert results["duplicates_same_groups_2k"].group(5) == "1"
    assert lines[0].startswith("MACHINE ") and any(ln.startswith("RUN bench/search.py ") for ln in lines)
