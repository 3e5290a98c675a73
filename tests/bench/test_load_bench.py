"""bench/load.py end to end on tiny sizes (5,000 rows, one bulk pair, FLAT, one sweep point after our run):
it exits 0, prints every RESULT line with numbers and its machine stamp, the MACHINE and RUN lines, the
whole insert sweep, and leaves nothing behind. About a minute; the figures themselves mean nothing here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

BENCH = "load"  # the script this module checks (tests/bench/conftest.py runs it)

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"(-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|nan|inf)"
PAIRS = ("load_insert_vs_ceiling", "load_bulk_vs_ceiling")
VALUES = ("load_index_build_flat", "load_peak_rss_insert", "load_peak_rss_bulk", "load_insert_reimport_upserts")


def _number(text: str) -> float:
    value = float(text)
    assert math.isfinite(value) and value > 0, text
    return value


@pytest.mark.integration
@pytest.mark.slow
def test_load_bench_runs_on_tiny_sizes(bench_runs):
    bench = bench_runs["load"]  # 5,000 rows, one bulk pair, FLAT; TMPDIR is its workdir: checked empty at the end
    done, tmp_path = bench.finish(), bench.workdir
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"exit {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"

    lines = out.splitlines()
    machine = [ln for ln in lines if ln.startswith("MACHINE ")]
    assert len(machine) == 1 and "cores=" in machine[0], out
    machine_id = machine[0].split()[1]
    run = [ln for ln in lines if ln.startswith("RUN ")]
    assert len(run) == 1 and lines[-1] == run[0], out
    assert re.fullmatch(rf"RUN bench/load\.py length={NUMBER}s mode=full machine={re.escape(machine_id)}",
                        run[0]), run[0]

    results = {ln.split()[1]: ln for ln in lines if ln.startswith("RESULT ")}
    assert set(results) == {*PAIRS, *VALUES}, out
    for name in PAIRS:
        m = re.fullmatch(rf"RESULT {name} ours={NUMBER}rows/s baseline={NUMBER}rows/s ratio={NUMBER} "
                         rf"machine={re.escape(machine_id)} at={NUMBER}s", results[name])
        assert m, results[name]
        ours, baseline, ratio = (_number(g) for g in m.groups()[:3])
        assert ratio == pytest.approx(ours / baseline, rel=0.01)
    for name in VALUES:
        m = re.fullmatch(rf"RESULT {name} value={NUMBER}(s|MB|rows/s) machine={re.escape(machine_id)} at={NUMBER}s",
                         results[name])
        assert m, results[name]
        _number(m.group(1))

    # The whole sweep before our run (3 batch sizes x 3 in flight), its best point after, ours in between.
    before = [ln for ln in lines if ln.strip().startswith("before:")]
    after = [ln for ln in lines if ln.strip().startswith("after:")]
    assert len(before) == 9 and len(after) == 1, out
    points = {re.search(r"([\d,]+)-row inserts x (\d) in flight", ln).groups() for ln in before}
    assert points == {(b, k) for b in ("5,000", "10,000", "20,000") for k in "124"}
    assert out.index("before:") < out.index("ours (insert mode") < out.index("after:")
    runs = re.search(r"2 runs: ([\d,]+), ([\d,]+) rows/s \(best ([\d,]+), median", out)
    assert runs, out  # the best of our runs is what the RESULT sets against the ceiling
    first, second, top = (_number(g.replace(",", "")) for g in runs.groups())
    assert top == max(first, second)
    assert _number(re.search(rf"load_insert_vs_ceiling ours={NUMBER}", out).group(1)) == pytest.approx(top, abs=1)

    assert not list(tmp_path.iterdir()), "the benchmark left files in its temp dir"
    shm = Path("/dev/shm")  # bulk files are staged there when it has room
    assert not shm.is_dir() or not list(shm.glob(f"*/bench-load-{bench.proc.pid}")), "staged files left behind"
