"""bench/scale.py keeps working: a float compact mode and a binary one on a tiny catalogue, each figure a
RESULT line that names the machine, and nothing left behind. (The figures mean nothing at this size; HNSW
runs the same code path as IVF_SQ8.)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devstack.processes import REPO

BENCH = "scale"  # the script this module checks (tests/bench/conftest.py runs it)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESULT = re.compile(r"^RESULT (\S+) value=([\d.e+-]+)\S* machine=(\S+) at=\d+s$")


def test_scale_bench_runs_each_mode_on_a_tiny_catalogue(bench_runs):
    run = bench_runs["scale"]
    done, tmp_path = run.finish(), run.workdir
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    results = {m.group(1): float(m.group(2)) for m in map(RESULT.match, lines) if m}
    assert not [ln for ln in lines if ln.startswith("RESULT") and not RESULT.match(ln)]
    for mode in ("ivf_sq8", "bin_itq256"):
        for figure in ("import_rows_per_s", "index_after_import_s", "milvus_rss_loaded", "milvus_anon_loaded",
                       "milvus_disk", "recall_at_10", "search_p50", "search_p99", "loader_peak_rss",
                       "milvus_peak_rss_import", "quiet_after_load_s"):
            assert f"scale_{mode}_2k_{figure}" in results, f"no RESULT scale_{mode}_2k_{figure}"
        assert results[f"scale_{mode}_2k_recall_at_10"] >= 0.9
        assert results[f"scale_{mode}_2k_milvus_peak_rss_import"] > 50  # sampled: a running Milvus, not 0
        for variant in ("nprobe8", "defaults_again"):  # --search-variants: its own figures, then the defaults
            for figure in ("recall_at_10", "search_p50", "search_p99"):
                assert f"scale_{mode}_2k_{variant}_{figure}" in results
        assert results[f"scale_{mode}_2k_defaults_again_recall_at_10"] == results[f"scale_{mode}_2k_recall_at_10"]
    assert lines[0].startswith("MACHINE ") and any(ln.startswith("RUN bench/scale.py ") for ln in lines)
    assert list(tmp_path.iterdir()) == []  # the file and Milvus's data are gone


def test_scale_bench_refuses_when_the_disk_is_too_small(tmp_path):
    done = subprocess.run([sys.executable, "bench/scale.py", "--rows", str(10**12), "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "needs about" in done.stderr and "GB is free" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["[{", '{"nprobe": 8}', "[{}]", "[1]"])
def test_scale_bench_refuses_bad_search_variants(tmp_path, bad):
    done = subprocess.run([sys.executable, "bench/scale.py", "--rows", "2000", "--search-variants", bad,
                           "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--search-variants" in done.stderr
    assert list(tmp_path.iterdir()) == []
